"""Convolutional layers (NCHW images, NCL sequences): convolutions, pooling, up-sampling, flattening.

Every layer adds conv/pool ops of `graphgrad.ops.conv`, whose vjps are graph
ops too, so gradients, passes, code generation and rendering apply unchanged.
Weights use PyTorch's layouts: Conv W (out, in, kh, kw), ConvTranspose W (in, out, kh, kw).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import GraphError
from ..kernels import as_pair as pair
from .layers import Layer, activation_fn


def checked_apply(layer, op, args, attrs):
    """``graph.apply`` whose shape errors name the layer as well as the node and the shapes."""
    try:
        return layer.graph.apply(op, args, attrs)
    except GraphError as e:
        raise GraphError(f"{type(layer).__name__} {layer.name!r}: {e}") from None


def ints(layer, argument, value, n=2):
    """An int, or a tuple of ``n`` ints, as a tuple of ``n`` ints (2.5 is an error, not 2); their ranges
    are checked by the op's shape rule, which names the node and the shapes."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        expected = "an int" + (f" or a tuple of {n} ints" if n > 1 else " (or a 1-tuple)")
        raise GraphError(f"{type(layer).__name__}{f' {layer.name!r}' if layer.name else ''}: {argument} must be "
                         f"{expected}, got {value!r}")
    return tuple(int(v) for v in values)


def padding_of(layer, padding, kernel, dilation, stride, n=2):
    """PyTorch's paddings, ints, "valid" (none) or "same" (the size kept at stride 1), as a symmetric
    padding per axis and the leading outputs to drop per axis."""
    if padding == "valid":
        return (0,) * n, (0,) * n
    if padding == "same":
        return same_padding(layer, kernel, dilation, stride)
    if isinstance(padding, str):
        raise GraphError(f"{type(layer).__name__} {layer.name!r}: padding must be ints, 'valid' or 'same', "
                         f"got {padding!r}")
    return ints(layer, "padding", padding, n), (0,) * n


def expect_rank(layer, x, rank, layout):
    if x.ndim != rank or any(d is None for d in x.shape[1:]):
        raise GraphError(f"{type(layer).__name__} {layer.name!r} expects {layout} input with known sizes after "
                         f"the batch, got shape {x.shape}")


def add_channel_bias(y, b):
    """y + b with b broadcast along axis 1 (the channels)."""
    return y + b.reshape((1, b.shape[0]) + (1,) * (y.ndim - 2))


def same_padding(layer, kernel, dilation, stride):
    """PyTorch's padding="same" (stride 1): the kernel's span d·(k − 1) split over both sides, the odd
    one out on the far side.  The conv op pads symmetrically, so an odd span is padded by its larger
    half on both sides and the one extra leading output dropped."""
    if any(s != 1 for s in stride):
        raise GraphError(f"{type(layer).__name__} {layer.name!r}: padding='same' needs stride 1, got {stride}")
    span = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((s + 1) // 2 for s in span), tuple(s % 2 for s in span)


class Conv2D(Layer):
    """``activation(conv2d(x, W) + b)`` on NCHW images; ``padding`` is an int, a pair, ``"valid"`` or ``"same"``.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 3, 8, 8))
    >>> gg.nn.Conv2D(4, 3, stride=2, padding=1, name="c")(x).shape, g["c.W"].shape
    ((None, 4, 4, 4), (4, 3, 3, 3))
    """

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True, activation=None,
                 name=None):
        super().__init__(name)
        self.out_channels, self.kernel = out_channels, ints(self, "kernel_size", kernel_size)
        self.stride, self.dilation = ints(self, "stride", stride), ints(self, "dilation", dilation)
        self.padding, self.bias, self.activation = padding, bias, activation_fn(activation)

    def build(self, x):
        expect_rank(self, x, 4, "NCHW")
        self.padding, self.crop = padding_of(self, self.padding, self.kernel, self.dilation, self.stride)
        self.W = self.param("W", (self.out_channels, x.shape[1]) + self.kernel, init="he_uniform")
        self.b = self.param("b", (self.out_channels,), init="zeros") if self.bias else None

    def forward(self, x):
        attrs = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        y = checked_apply(self, "conv2d", [x, self.W], attrs)
        if any(self.crop):
            y = y[:, :, self.crop[0]:, self.crop[1]:]
        return self.activation(add_channel_bias(y, self.b) if self.b is not None else y)


class ConvTranspose2D(Layer):
    """Transposed convolution (the input-gradient of Conv2D), W of shape (in, out, kh, kw) as PyTorch.

    Output size per axis: (H − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.
    """

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0, dilation=1, bias=True,
                 activation=None, name=None):
        super().__init__(name)
        self.out_channels, self.kernel = out_channels, ints(self, "kernel_size", kernel_size)
        self.attrs = {k: ints(self, k, v) for k, v in (("stride", stride), ("padding", padding),
                                                       ("output_padding", output_padding), ("dilation", dilation))}
        self.bias, self.activation = bias, activation_fn(activation)

    def build(self, x):
        expect_rank(self, x, 4, "NCHW")
        self.W = self.param("W", (x.shape[1], self.out_channels) + self.kernel, init="he_uniform")
        self.b = self.param("b", (self.out_channels,), init="zeros") if self.bias else None

    def forward(self, x):
        y = checked_apply(self, "conv_transpose2d", [x, self.W], self.attrs)
        return self.activation(add_channel_bias(y, self.b) if self.b is not None else y)


class Conv1D(Layer):
    """``activation(conv1d(x, W) + b)`` on (N, C, L) sequences, W of shape (out, in, k) as PyTorch.

    Computed as a Conv2D over a height-1 image, so it shares conv2d's op and vjps.
    """

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True, activation=None,
                 name=None):
        super().__init__(name)
        (self.kernel_size,), (self.stride,), (self.dilation,) = (ints(self, k, v, 1) for k, v in (
            ("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)))
        self.out_channels, self.padding = out_channels, padding
        self.bias, self.activation = bias, activation_fn(activation)

    def build(self, x):
        expect_rank(self, x, 3, "(N, C, L)")
        (self.padding,), (self.crop,) = padding_of(self, self.padding, (self.kernel_size,), (self.dilation,),
                                                   (self.stride,), 1)
        self.W = self.param("W", (self.out_channels, x.shape[1], self.kernel_size), init="he_uniform")
        self.b = self.param("b", (self.out_channels,), init="zeros") if self.bias else None

    def forward(self, x):
        n, c, length = x.shape
        w = self.W.reshape((self.out_channels, self.W.shape[1], 1, self.kernel_size))
        attrs = {"stride": (1, self.stride), "padding": (0, self.padding), "dilation": (1, self.dilation)}
        y = checked_apply(self, "conv2d", [x.reshape((n, c, 1, length)), w], attrs)
        y = y.reshape((n, self.out_channels, y.shape[3]))
        if self.crop:
            y = y[:, :, self.crop:]
        return self.activation(add_channel_bias(y, self.b) if self.b is not None else y)


class TDNN(Layer):
    """A time-delay layer on (N, T, features): each output frame sees ``context_size`` input frames
    ``dilation`` apart (frames t, t + d, ..., t + (k − 1)d), through one shared weight.

    The classic TDNN (Waibel et al. 1989; the x-vector frame layers) is a Conv1D over time;
    W is (units, features, context_size) and T shrinks by dilation·(context_size − 1).
    """

    def __init__(self, units, context_size=3, dilation=1, activation="relu", name=None):
        super().__init__(name)
        self.units, self.context_size, self.dilation, self.activation = units, context_size, dilation, activation

    def build(self, x):
        expect_rank(self, x, 3, "(N, T, features)")
        self.conv = Conv1D(self.units, self.context_size, dilation=self.dilation, activation=self.activation,
                           name=self.name)

    def forward(self, x):
        return self.conv(x.transpose(0, 2, 1)).transpose(0, 2, 1)


class _Pool(Layer):
    op = ""

    def __init__(self, kernel_size, stride=None, padding=0, name=None):
        super().__init__(name)
        self.attrs = {"kernel": ints(self, "kernel_size", kernel_size),
                      "stride": ints(self, "stride", kernel_size if stride is None else stride),
                      "padding": ints(self, "padding", padding)}

    def forward(self, x):
        expect_rank(self, x, 4, "NCHW")
        return checked_apply(self, self.op, [x], self.attrs)


class MaxPool2D(_Pool):
    """Max over kh×kw windows (stride defaults to the kernel); the gradient goes to each window's arg-max."""

    op = "maxpool2d"


class AvgPool2D(_Pool):
    """Mean over kh×kw windows (stride defaults to the kernel; padding counts as zeros, as PyTorch)."""

    op = "avgpool2d"


class Upsample2D(Layer):
    """Up-sampling by an integer ``scale_factor``: ``"nearest"`` or ``"bilinear"`` (PyTorch's align_corners=False)."""

    MODES = {"nearest": "upsample_nearest2d", "bilinear": "upsample_bilinear2d"}

    def __init__(self, scale_factor=2, mode="nearest", name=None):
        super().__init__(name)
        if mode not in self.MODES:
            raise GraphError(f"Upsample2D mode must be one of {sorted(self.MODES)}, got {mode!r}")
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,)
        if any(f != int(f) or f < 1 for f in factors):
            raise GraphError(f"Upsample2D supports positive integer scale factors, got {scale_factor}")
        self.scale, self.mode = pair(scale_factor), mode

    def forward(self, x):
        expect_rank(self, x, 4, "NCHW")
        return checked_apply(self, self.MODES[self.mode], [x], {"scale": self.scale})


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def forward(self, x):
        if any(d is None for d in x.shape[1:]):
            raise GraphError(f"Flatten {self.name!r} needs known sizes after the batch, got shape {x.shape}")
        return x.reshape((x.shape[0], int(np.prod(x.shape[1:]))))
