"""Ops for regularization layers: the dropout mask, the element count of a batch, and batch
normalization.

Batch normalization is two primitives: ``batch_norm_stats`` (per-channel mean and variance, which
the running statistics also read) and ``batch_norm`` (γ (x − mean) / √(var + eps) + β given those
statistics, one scale-and-shift pass).  Their vjps are written per channel where they can be: the
full-size work of the x gradient is g·k + x·a + c, four passes, where differentiating through
mean, centring, variance, division and the affine op by op took about fifteen.
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
    x, stats, gamma, beta = shapes
    c = _batch_norm_stats_shape([x], attrs)[1]
    if tuple(stats) != (2, c) or tuple(gamma) != (c,) or tuple(beta) != (c,):
        raise ValueError(f"batch norm of {x} needs stats (2, {c}) and gamma, beta ({c},), "
                         f"got {stats}, {gamma}, {beta}")
    return x


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


def _bn_terms(x, stats, gamma, g, eps):
    """Per channel: inv_std, k = γ·inv_std, Σg and Σg·x (merged by CSE across the vjps)."""
    axes, _ = _channels(x)
    inv_std = 1.0 / x.graph.apply("sqrt", [stats[1] + float(eps)])
    return inv_std, gamma * inv_std, g.sum(axis=axes), (g * x).sum(axis=axes)


def _bn_x_vjp(g, args, out, attrs):
    x, stats, gamma, _ = args
    _, k, _, _ = _bn_terms(x, stats, gamma, g, attrs["eps"])
    return g * k.reshape(_channels(x)[1])


def _bn_stats_vjp(g, args, out, attrs):
    # y = γ (x − mean) s + β with s = (var + eps)^−½: ∂/∂mean = −Σ g k, ∂/∂var = −½ k s² Σ g (x − mean)
    x, stats, gamma, _ = args
    inv_std, k, g_sum, gx_sum = _bn_terms(x, stats, gamma, g, attrs["eps"])
    centered_sum = gx_sum - stats[0] * g_sum
    return x.graph.apply("stack", [-k * g_sum, -0.5 * k * inv_std * inv_std * centered_sum], {"axis": 0})


def _bn_gamma_vjp(g, args, out, attrs):
    x, stats, gamma, _ = args
    inv_std, _, g_sum, gx_sum = _bn_terms(x, stats, gamma, g, attrs["eps"])
    return inv_std * (gx_sum - stats[0] * g_sum)


def _bn_beta_vjp(g, args, out, attrs):
    return g.sum(axis=_channels(args[0])[0])


register(Op(
    name="batch_norm_stats", arity=1, shape=_batch_norm_stats_shape, dtype=same_dtype_as_first,
    kernels=(nn_kernels.batch_norm_stats,), emit=lambda args, a: f"batch_norm_stats({args[0]}, state)",
    vjps=(_batch_norm_stats_vjp,), test_shapes=((4, 3, 2, 2),),
    doc="rows (mean, biased variance) per channel (axis 1), over every other axis",
))
register(Op(
    name="batch_norm", arity=4, shape=_batch_norm_shape, dtype=same_dtype_as_first,
    kernels=(nn_kernels.batch_norm_affine,),
    emit=lambda args, a: f"batch_norm_affine({', '.join(args)}, {float(a['eps'])!r})",
    vjps=(_bn_x_vjp, _bn_stats_vjp, _bn_gamma_vjp, _bn_beta_vjp), fresh=True,
    domain=("real", "positive", "real", "real"), test_attrs={"eps": 1e-5},
    test_shapes=((4, 3, 2, 2), (2, 3), (3,), (3,)),
    doc="γ (x − mean) / √(var + eps) + β per channel (axis 1), (mean, var) = stats: one scale and shift pass",
))
