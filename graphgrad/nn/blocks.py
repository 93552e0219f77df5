"""Blocks of layers: Residual (with identity or projection shortcut), the ResNet Bottleneck, and UNet."""
from __future__ import annotations

from .. import functional as F
from ..errors import GraphError
from .conv import Conv2D, ConvTranspose2D, MaxPool2D, expect_rank
from .layers import Dense, Layer, activation_fn
from .regularization import BatchNorm


def sequential(layers, x):
    for layer in layers:
        x = layer(x)
    return x


class Residual(Layer):
    """``activation(body(x) + shortcut(x))``; ``body`` is the given layers applied in order.

    With ``shortcut=None`` the shortcut is the identity when shapes agree, else a
    projection: a 1×1 Conv2D (strided to the body's output size) for images, a
    Dense layer otherwise (He et al. 2016, option B).  Any layer or callable may be given instead.
    """

    def __init__(self, *layers, shortcut=None, activation=None, name=None):
        super().__init__(name)
        self.layers, self.shortcut, self.activation = list(layers), shortcut, activation_fn(activation)

    def forward(self, x):
        y = sequential(self.layers, x)
        if self.shortcut is None and y.shape != x.shape:
            self.shortcut = self.projection(x, y)
        skip = x if self.shortcut is None else self.shortcut(x)
        if skip.shape != y.shape:
            raise GraphError(f"Residual {self.name!r}: the body gives shape {y.shape}, the shortcut {skip.shape}")
        return self.activation(y + skip)

    def projection(self, x, y):
        if x.ndim == 4 and y.ndim == 4:
            if x.shape[2] % y.shape[2] or x.shape[3] % y.shape[3]:
                raise GraphError(f"Residual {self.name!r}: no strided 1×1 projection maps {x.shape} to {y.shape}")
            stride = (x.shape[2] // y.shape[2], x.shape[3] // y.shape[3])
            return Conv2D(y.shape[1], 1, stride=stride, bias=False, name=f"{self.name}.shortcut")
        return Dense(y.shape[-1], name=f"{self.name}.shortcut")


class Bottleneck(Residual):
    """The ResNet bottleneck: 1×1 reduce → 3×3 (``stride``) → 1×1 expand, each conv followed by BatchNorm,
    ReLU between, and ReLU after adding the shortcut (a strided 1×1 conv + BatchNorm when shapes change).

    ``bottleneck_channels`` defaults to out_channels // 4, as in ResNet-50.
    """

    def __init__(self, out_channels, bottleneck_channels=None, stride=1, name=None):
        super().__init__(activation="relu", name=name)
        self.out_channels, self.stride = out_channels, stride
        self.mid = bottleneck_channels or max(1, out_channels // 4)

    def build(self, x):
        expect_rank(self, x, 4, "NCHW")
        n = self.name
        self.layers = [
            Conv2D(self.mid, 1, bias=False, name=f"{n}.reduce"), BatchNorm(name=f"{n}.bn1"), F.relu,
            Conv2D(self.mid, 3, stride=self.stride, padding=1, bias=False, name=f"{n}.conv"),
            BatchNorm(name=f"{n}.bn2"), F.relu,
            Conv2D(self.out_channels, 1, bias=False, name=f"{n}.expand"), BatchNorm(name=f"{n}.bn3"),
        ]
        if x.shape[1] != self.out_channels or self.stride != 1:
            projection = Conv2D(self.out_channels, 1, stride=self.stride, bias=False, name=f"{n}.shortcut")
            norm = BatchNorm(name=f"{n}.shortcut_bn")
            self.shortcut = lambda t: norm(projection(t))


class UNet(Layer):
    """U-Net (Ronneberger et al. 2015): ``depth`` down-sampling levels of two 3×3 convs and a 2×2
    max-pool, channels doubling from ``base_channels``; up-sampling by 2×2 transposed convolutions,
    each followed by concatenation with the encoder's map of that size (the skip) and two 3×3 convs;
    a final 1×1 conv gives ``out_channels`` logits per pixel.  Height and width must be divisible
    by 2**depth.
    """

    def __init__(self, depth=2, base_channels=8, out_channels=1, batch_norm=False, name=None):
        super().__init__(name)
        self.depth, self.base, self.out_channels, self.batch_norm = depth, base_channels, out_channels, batch_norm

    def double_conv(self, channels, tag):
        layers = []
        for k in (1, 2):
            layers.append(Conv2D(channels, 3, padding=1, bias=not self.batch_norm, name=f"{self.name}.{tag}_{k}"))
            if self.batch_norm:
                layers.append(BatchNorm(name=f"{self.name}.{tag}_bn{k}"))
            layers.append(F.relu)
        return layers

    def build(self, x):
        expect_rank(self, x, 4, "NCHW")
        factor = 2 ** self.depth
        if x.shape[2] % factor or x.shape[3] % factor:
            raise GraphError(f"UNet {self.name!r} of depth {self.depth} needs height and width divisible by "
                             f"{factor}, got input shape {x.shape}")
        channels = [self.base * 2 ** level for level in range(self.depth + 1)]
        self.down = [self.double_conv(c, f"down{i}") for i, c in enumerate(channels[:-1])]
        self.bottom = self.double_conv(channels[-1], "bottom")
        self.up = [ConvTranspose2D(c, 2, stride=2, name=f"{self.name}.up{i}") for i, c in enumerate(channels[:-1])]
        self.merge = [self.double_conv(c, f"merge{i}") for i, c in enumerate(channels[:-1])]
        self.head = Conv2D(self.out_channels, 1, name=f"{self.name}.head")

    def forward(self, x):
        skips = []
        for level in self.down:
            x = sequential(level, x)
            skips.append(x)
            x = MaxPool2D(2, name=f"{self.name}.pool{len(skips) - 1}")(x)
        x = sequential(self.bottom, x)
        for i in reversed(range(self.depth)):
            x = F.concat([self.up[i](x), skips[i]], axis=1)
            x = sequential(self.merge[i], x)
        return self.head(x)
