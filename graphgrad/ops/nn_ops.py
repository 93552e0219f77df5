"""Ops for regularization layers: the dropout mask and the element count of a batch.

Batch normalization needs no op of its own: it is composed of mean, sub, mul and
sqrt nodes, so the gradient through the batch statistics comes from the chain rule.
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
