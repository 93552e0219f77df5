"""Learnable activations: PReLU (a learned negative slope) and Maxout (the max of k linear pieces)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..errors import GraphError
from .layers import Layer


class PReLU(Layer):
    """max(x, 0) + α·min(x, 0) with a learned slope α (`<layer>.W`, PyTorch's ``weight``, initially 0.25).

    ``num_parameters=1`` shares one slope; otherwise one slope per channel (axis 1).
    """

    def __init__(self, num_parameters=1, init=0.25, name=None):
        super().__init__(name)
        self.num_parameters, self.init = num_parameters, init

    def build(self, x):
        if self.num_parameters != 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise GraphError(f"PReLU {self.name!r} has {self.num_parameters} slopes but input shape {x.shape} "
                             f"has {x.shape[1] if x.ndim > 1 else 'no'} channels")
        self.alpha = self.param("W", (self.num_parameters,), init=np.full(self.num_parameters, self.init))

    def forward(self, x):
        alpha = self.alpha
        if self.num_parameters != 1:
            alpha = alpha.reshape((1, self.num_parameters) + (1,) * (x.ndim - 2))
        return F.where(x, x, alpha * x)  # at x = 0 the slope is α, as torch's prelu (not relu's 0 + minimum's)


class Maxout(Layer):
    """max over ``pieces`` affine maps: W (in, units·pieces), b (units·pieces,) (Goodfellow et al. 2013)."""

    def __init__(self, units, pieces=2, name=None):
        super().__init__(name)
        self.units, self.pieces = units, pieces

    def build(self, x):
        if x.ndim < 1 or x.shape[-1] is None:
            raise GraphError(f"Maxout {self.name!r} needs a known feature size, got input shape {x.shape}")
        self.W = self.param("W", (x.shape[-1], self.units * self.pieces))
        self.b = self.param("b", (self.units * self.pieces,), init="zeros")

    def forward(self, x):
        z = x @ self.W + self.b
        return z.reshape(x.shape[:-1] + (self.units, self.pieces)).max(axis=-1)
