"""Built-in models by name, for the command line and the docs: each returns ``(graph, loss, logits)``."""
from __future__ import annotations

from . import functional as F
from . import nn
from .ir import Graph


def mlp(features: int = 64, classes: int = 10, hidden: int = 64):
    """The MLP of the API reference's first example (docs/api.md) at digits size: Dense-ReLU-Dense, softmax
    cross-entropy."""
    g = Graph("mlp")
    x = g.input("x", (None, features))
    y = g.input("y", (None,), dtype="int64")
    h = nn.Dense(hidden, activation="relu", name="fc1")(x)
    logits = nn.Dense(classes, name="fc2")(h)
    return g, F.softmax_cross_entropy(logits, y), logits


def cnn(channels: int = 1, size: int = 8, classes: int = 10, filters: int = 16):
    """A small CNN for 8×8 digits: two 3×3 conv-ReLU layers, a 2×2 max-pool, dropout and a dense classifier."""
    g = Graph("cnn")
    x = g.input("x", (None, channels, size, size))
    y = g.input("y", (None,), dtype="int64")
    h = nn.Conv2D(filters, 3, padding=1, activation="relu", name="conv1")(x)
    h = nn.Conv2D(2 * filters, 3, padding=1, activation="relu", name="conv2")(h)
    h = nn.Flatten(name="flatten")(nn.MaxPool2D(2, name="pool")(h))
    h = nn.Dense(64, activation="relu", name="fc1")(nn.Dropout(0.25, name="drop")(h))
    logits = nn.Dense(classes, name="fc2")(h)
    return g, F.softmax_cross_entropy(logits, y), logits


def resnet(channels: int = 1, size: int = 8, classes: int = 10, width: int = 16, blocks: int = 2):
    """A small ResNet: a 3×3 stem, ``blocks`` bottleneck blocks (the second strided), global average pool."""
    g = Graph("resnet")
    x = g.input("x", (None, channels, size, size))
    y = g.input("y", (None,), dtype="int64")
    h = nn.BatchNorm(name="stem_bn")(nn.Conv2D(width, 3, padding=1, bias=False, name="stem")(x))
    h = F.relu(h)
    for i in range(blocks):
        h = nn.Bottleneck(width * 2 ** (i // 2 + 1), stride=2 if i == 1 else 1, name=f"block{i + 1}")(h)
    h = nn.Flatten(name="flatten")(nn.AvgPool2D(h.shape[2], name="gap")(h))
    logits = nn.Dense(classes, name="fc")(h)
    return g, F.softmax_cross_entropy(logits, y), logits


def unet(channels: int = 1, size: int = 32, depth: int = 2, base_channels: int = 8):
    """A U-Net for binary segmentation: per-pixel logits, binary cross-entropy against a 0/1 mask."""
    g = Graph("unet")
    x = g.input("x", (None, channels, size, size))
    mask = g.input("mask", (None, 1, size, size))
    logits = nn.UNet(depth, base_channels, out_channels=1, name="unet")(x)
    return g, F.binary_cross_entropy(logits, mask), logits


def _recurrent(layer_class, name, steps, features, classes, hidden, lowering):
    g = Graph(name)
    x = g.input("x", (None, steps, features))
    y = g.input("y", (None,), dtype="int64")
    h = layer_class(hidden, lowering=lowering, name=name)(x)
    logits = nn.Dense(classes, name="fc")(h)
    return g, F.softmax_cross_entropy(logits, y), logits


def rnn(steps: int = 8, features: int = 8, classes: int = 10, hidden: int = 64, lowering: str = "auto"):
    """An Elman RNN over (batch, steps, features), its last hidden state into a Dense classifier."""
    return _recurrent(nn.RNN, "rnn", steps, features, classes, hidden, lowering)


def lstm(steps: int = 8, features: int = 8, classes: int = 10, hidden: int = 64, lowering: str = "auto"):
    """An LSTM over (batch, steps, features) (digits: 8 rows of 8 pixels), last hidden state -> Dense."""
    return _recurrent(nn.LSTM, "lstm", steps, features, classes, hidden, lowering)


def gru(steps: int = 8, features: int = 8, classes: int = 10, hidden: int = 64, lowering: str = "auto"):
    """A GRU over (batch, steps, features), its last hidden state into a Dense classifier."""
    return _recurrent(nn.GRU, "gru", steps, features, classes, hidden, lowering)


MODELS = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "unet": unet, "rnn": rnn, "lstm": lstm, "gru": gru}
