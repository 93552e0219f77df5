"""Ops for regularization layers: the dropout mask, the element count of a batch, and batch
normalization.

Batch normalization is a primitive (``batch_norm``: x̂ from batch statistics) with a closed-form
vjp, dx = inv_std · (g − mean(g) − x̂ · mean(g · x̂)), written with graph ops: differentiating
through mean, centring, variance and the division op by op took about fifteen full passes.
``batch_norm_stats`` gives the (mean, variance) rows the running statistics and the vjp read.
"""
from __future__ import annotations

from . import nn_kernels
from .registry import Op, register, same_dtype_as_first


def _scalar_shape(shapes, attrs):
    (s,) = shapes
    if any(not 0 <= a < len(s) for a in attrs["axis"]):
        raise ValueError(f"axis {tuple(attrs['axis'])} out of range")
    return ()


def _rate_shape(shapes, attrs):
    if not 0 <= attrs["rate"] < 1:
        raise ValueError(f"dropout rate {attrs['rate']} must lie in [0, 1)")
    return shapes[0]


register(Op(
    name="dropout_mask", arity=1, shape=_rate_shape, dtype=same_dtype_as_first, stateful=True,
    kernels=(nn_kernels.dropout_mask,),
    # `state` is the generated step's own state dict, which keeps the generator between calls
    emit=lambda args, a: f"dropout_mask({args[0]}, {float(a['rate'])!r}, {int(a['seed'])}, state)", vjps=(None,),
    test_attrs={"rate": 0.5, "seed": 0},
    doc="a fresh inverted-dropout mask shaped like x (0, or 1 / (1 − rate)) on every call, seeded",
))
register(Op(
    name="axis_size", arity=1, shape=_scalar_shape, dtype=same_dtype_as_first, vjps=(None,),
    # a Python float, weakly typed, so float32 code stays float32
    emit=lambda args, a: "float(" + " * ".join(f"{args[0]}.shape[{i}]" for i in a["axis"]) + ")",
    test_attrs={"axis": (0, 1)},
    doc="the number of elements along the given axes, known only at call time when the batch is among them",
))


# -- batch normalization --------------------------------------------------------------
def _channels(x):
    """The axes a batch norm reduces over (all but 1) and the shape that broadcasts a (C,) row."""
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _batch_norm_stats_shape(shapes, attrs):
    (s,) = shapes
    if len(s) < 2 or s[1] is None:
        raise ValueError(f"batch norm needs (N, C, ...) input with known C, got {s}")
    return (2, s[1])


def _batch_norm_shape(shapes, attrs):
    _batch_norm_stats_shape(shapes, attrs)
    return shapes[0]


def _batch_norm_stats_vjp(g, args, out, attrs):
    # mean = Σx / m, var = Σ(x − mean)² / m: d/dx = (g_mean + 2 (x − mean) g_var) / m
    (x,) = args
    axes, row = _channels(x)
    m = x.graph.apply("axis_size", [x], {"axis": axes})
    g_mean, g_var, mean = g[0].reshape(row), g[1].reshape(row), out[0].reshape(row)
    return (g_mean + 2.0 * (x - mean) * g_var) / m


def _batch_norm_vjp(g, args, out, attrs):
    # closed form with x̂ = out: dx = inv_std · (g − mean(g) − x̂ · mean(g · x̂)) over the reduced axes
    (x,) = args
    axes, row = _channels(x)
    stats = x.graph.apply("batch_norm_stats", [x])  # merged with the layer's own node
    inv_std = 1.0 / x.graph.apply("sqrt", [stats[1] + float(attrs["eps"])]).reshape(row)
    return inv_std * (g - g.mean(axis=axes, keepdims=True) - out * (g * out).mean(axis=axes, keepdims=True))


register(Op(
    name="batch_norm_stats", arity=1, shape=_batch_norm_stats_shape, dtype=same_dtype_as_first,
    kernels=(nn_kernels.batch_norm_stats,), emit=lambda args, a: f"batch_norm_stats({args[0]})",
    vjps=(_batch_norm_stats_vjp,), test_shapes=((4, 3, 2, 2),),
    doc="rows (mean, biased variance) per channel (axis 1), over every other axis",
))
register(Op(
    name="batch_norm", arity=1, shape=_batch_norm_shape, dtype=same_dtype_as_first,
    kernels=(nn_kernels.batch_norm_normalize,),
    emit=lambda args, a: f"batch_norm_normalize({args[0]}, {float(a['eps'])!r})",
    vjps=(_batch_norm_vjp,), test_shapes=((4, 3, 2, 2),), test_attrs={"eps": 1e-5},
    doc="(x − mean) / √(var + eps) per channel (axis 1) with batch statistics; closed-form vjp",
))
