"""Layers built from graph ops, so the chain rule, passes, code generation and rendering apply unchanged."""
from .activations import Maxout, PReLU
from .blocks import Bottleneck, Residual, UNet
from .conv import AvgPool2D, Conv1D, Conv2D, ConvTranspose2D, Flatten, MaxPool2D, TDNN, Upsample2D
from .layers import Dense, Layer
from .recurrent import GRU, LSTM, RNN, Recurrent, gradient_norms_over_time
from .regularization import BatchNorm, Dropout

__all__ = [
    "Layer", "Dense", "PReLU", "Maxout", "Conv1D", "Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D",
    "Upsample2D", "BatchNorm", "Dropout", "Flatten", "Residual", "Bottleneck", "UNet", "TDNN",
    "RNN", "LSTM", "GRU", "Recurrent", "gradient_norms_over_time",
]
