"""Ops for regularization layers: the dropout mask, the element count of a batch, and batch
normalization.

Batch normalization's statistics are one primitive, ``batch_norm_stats`` (per-channel mean and
variance, which the running statistics also read), whose vjp is written per channel: x·a + c.
The layer applies them as x·scale + shift with per-channel scale = γ/√(var + eps) and
shift = β − mean·scale, plain elementwise ops that fuse with the ReLU or residual add after them;
the full-size work of the x gradient is then g·scale + x·a + c, where differentiating through
mean, centring, variance and division op by op took about fifteen passes.
"""
from __future__ import annotations

from . import helpers, nn_kernels
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


def _batch_norm_stats_vjp(g, args, out, attrs):
    # mean = Σx / m, var = Σ(x − mean)² / m: dx = (g_mean + 2 (x − mean) g_var) / m, written as
    # x·a + c with per-channel a, c so that the full-size work is one product and one sum
    (x,) = args
    axes, row = _channels(x)
    m = x.graph.apply("axis_size", [x], {"axis": axes})
    g_mean, g_var, mean = g[0], g[1], out[0]
    a = (2.0 * g_var / m).reshape(row)
    c = ((g_mean - 2.0 * mean * g_var) / m).reshape(row)
    return x * a + c


register(Op(
    name="batch_norm_stats", arity=1, shape=_batch_norm_stats_shape, dtype=same_dtype_as_first,
    local_derivative=("(ḡ_μ + 2(x − μ)·ḡ_σ²)/m",),
    kernels=(nn_kernels.batch_norm_stats, helpers.work_array), emit=lambda args, a: f"batch_norm_stats({args[0]}, state)",
    vjps=(_batch_norm_stats_vjp,), test_shapes=((4, 3, 2, 2),), fresh=True,
    doc="rows (mean, biased variance) per channel (axis 1), over every other axis",
))
