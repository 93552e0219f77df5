"""graphgrad: a symbolic computation-graph compiler for seeing and compiling backpropagation.

The pipeline, one module per stage: declare (`ir`, `ops`, `functional`) ->
derive (`autodiff`, `symbolic`) -> optimise (`passes`) -> generate
(`codegen`) -> execute (`runtime`); `render` draws any stage.
"""
from .errors import GraphError
from .ir import Graph, Tensor
from .ops import ops
from .functional import (
    abs, binary_cross_entropy, concat, elu, exp, gelu, l1, l2, leaky_relu, log, log1p, log_softmax, maximum,
    minimum, mse, relu, sigmoid, silu, softmax, softmax_cross_entropy, softplus, sqrt, stack, tanh, where,
)
from .autodiff import grad
from .runtime import Compiled, compile
from .checking import check_grad
from .train import fit, load_params, save_params
from .render import render
from .explain import explain, summary
from . import demos, models, nn, optim

__all__ = [
    "GraphError", "Graph", "Tensor", "ops", "grad", "derivative", "formula", "compile", "Compiled", "check_grad",
    "nn", "optim", "demos", "models", "fit", "save_params", "load_params", "render", "explain", "summary",
    "abs", "binary_cross_entropy", "concat", "elu", "exp", "gelu", "l1", "l2", "leaky_relu", "log", "log1p",
    "log_softmax", "maximum", "minimum", "mse", "relu", "sigmoid", "silu", "softmax", "softmax_cross_entropy",
    "softplus", "sqrt", "stack", "tanh", "where",
]


def __getattr__(name):
    # derivative and formula are SymPy views: `symbolic` imports SymPy (half a second), so on first use
    if name in ("derivative", "formula"):
        from . import symbolic

        return getattr(symbolic, name)
    raise AttributeError(f"module 'graphgrad' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
