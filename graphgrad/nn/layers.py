"""Layers: callables that add their params and ops to the graph of their input, under a name scope."""
from __future__ import annotations

from .. import functional as F
from ..errors import GraphError
from ..ir import Tensor

ACTIVATIONS = {
    None: lambda x: x, "linear": lambda x: x, "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh,
    "leaky_relu": F.leaky_relu, "elu": F.elu, "gelu": F.gelu, "softplus": F.softplus, "silu": F.silu,
    "softmax": F.softmax,
}


def activation_fn(activation):
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise GraphError(f"unknown activation {activation!r}; choose from {sorted(k for k in ACTIVATIONS if k)}")
    return ACTIVATIONS[activation]


class Layer:
    """Base class: a layer gets a unique name on first call and keeps its params for reuse.

    Subclasses implement ``build(x)`` (create params) and ``forward(x)``.
    """

    def __init__(self, name=None):
        self.name = name
        self.graph = None

    def __call__(self, x: Tensor, *args, **kwargs) -> Tensor:
        if self.graph is None:
            self.graph = x.graph
            self.name = self.name or x.graph.unique_name(type(self).__name__.lower())
            with self.graph.scope(self.name):
                self.build(x, *args, **kwargs)
        elif x.graph is not self.graph:
            raise GraphError(f"layer {self.name!r} belongs to graph {self.graph.name!r}, not {x.graph.name!r}")
        with self.graph.scope(self.name):
            return self.forward(x, *args, **kwargs)

    def param(self, suffix, shape, init="glorot_uniform", trainable=True) -> Tensor:
        return self.graph.param(f"{self.name}.{suffix}", shape, init=init, dtype=self.graph.float_dtype,
                                trainable=trainable)

    def build(self, x, *args, **kwargs):
        pass

    def forward(self, x, *args, **kwargs):
        raise NotImplementedError


class Dense(Layer):
    """``activation(x @ W + b)`` with W of shape (in, out), as in PyTorch's Linear transposed.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 4))
    >>> gg.nn.Dense(3, activation="relu", name="fc")(x).shape
    (None, 3)
    """

    def __init__(self, units: int, activation=None, bias: bool = True, name=None):
        super().__init__(name)
        self.units, self.bias, self.activation = units, bias, activation_fn(activation)

    def build(self, x):
        if x.ndim < 1 or x.shape[-1] is None:
            raise GraphError(f"Dense {self.name!r} needs a known feature size, got input shape {x.shape}")
        self.W = self.param("W", (x.shape[-1], self.units))
        self.b = self.param("b", (self.units,), init="zeros") if self.bias else None

    def forward(self, x):
        if x.shape[-1] != self.W.shape[0]:
            raise GraphError(f"Dense {self.name!r} expects {self.W.shape[0]} input features, got shape {x.shape}")
        y = x @ self.W
        return self.activation(y + self.b if self.b is not None else y)
