"""The op registry: every op is one `Op` entry, defined beside its rules.

An op carries its shape rule, its dtype rule, its NumPy emission and its
vector-Jacobian rules (one per argument).  Elementwise ops instead carry a
SymPy formula from which emission and derivatives are derived
(see `elementwise.py`).  No other module branches on op names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

_REGISTRY: dict[str, "Op"] = {}


def _float_dtype(dtypes, attrs):
    floats = [d for d in dtypes if d.startswith("float")]
    return "float64" if "float64" in floats else "float32"


def promoted_dtype(dtypes, attrs):
    """The dtype of an op closed over the integers (add, mul, relu, maximum, ...), as PyTorch promotes: integer
    and bool operands give their common type, so int64 + int64 stays int64; any float operand gives the float
    type.  Ops whose values are not integers (exp, div, sigmoid) keep the default rule: float."""
    if any(d.startswith("float") for d in dtypes):
        return _float_dtype(dtypes, attrs)
    return np.result_type(*dtypes).name


def same_dtype_as_first(dtypes, attrs):
    return dtypes[0]


@dataclass(frozen=True)
class Op:
    """One operation.

    - ``shape(in_shapes, attrs) -> shape``: raises ``ValueError`` on a mismatch.
    - ``emit(args, attrs) -> str``: a NumPy expression over the argument names.
    - ``vjps[i](g, args, out, attrs) -> Tensor``: the cotangent of argument *i*
      built as graph nodes from the output cotangent ``g``; ``None`` marks an
      argument with no derivative (labels, masks, shape references).
    - ``formula(symbols, attrs) -> sympy.Expr`` for elementwise ops.
    - ``local_derivative``: per argument, the vjp in closed form as a textbook prints it, applied
      to the output's cotangent ḡ, the arguments being a, b, ... (``None``: no derivative; the
      last entry serves any further arguments).  Elementwise ops derive theirs from ``formula``.
    - ``domain``: per argument, where tests sample it ("real", "positive", "nonzero", "distinct", "labels");
      ``test_attrs`` and ``test_shapes`` complete the test case of the op.
    - ``stateful``: the op has an effect or randomness; never merged or folded.
    - ``kernels``: NumPy helper functions the emission calls; those a generated
      module calls are pasted into it (with what they call), as it imports numpy only.
    - ``source``: a value from outside (input, param, const); ``effect``: the
      emission is a statement that writes state (an optimizer or running-mean update).
    - ``expand(graph, node) -> Tensor``: the node's value rebuilt from ops differentiable to any
      order, for an op whose own derivative is a kernel that is not (the loop lowering of a
      recurrent layer): a derivative of its derivative differentiates the expansion instead.
      ``reverse_of(graph, node) -> (forward node, cotangent)``: for such a derivative kernel, the
      node it differentiates and the cotangent it pulls back, rebuilt from its arguments.
    - Memory, for code generation: ``fresh``: the value is a new array the step
      owns (never a view), so a dead one may be overwritten; ``view``: the value
      may be a view of its first argument; ``emit_into(args, attrs, out)``: the
      emission writing into a reusable buffer ``out``.
    """

    name: str
    shape: Callable
    emit: Callable
    vjps: tuple = ()
    local_derivative: tuple = ()
    dtype: Callable = _float_dtype
    formula: Optional[Callable] = None
    arity: Optional[int] = None
    domain: tuple = ("real",)
    stateful: bool = False
    kernels: tuple = ()
    source: bool = False
    effect: bool = False
    fresh: bool = False
    view: bool = False
    emit_into: Optional[Callable] = None
    expand: Optional[Callable] = None
    reverse_of: Optional[Callable] = None
    doc: str = ""
    test_attrs: dict = field(default_factory=dict)
    test_shapes: Optional[tuple] = None  # argument shapes for the registry-driven tests

    @property
    def elementwise(self) -> bool:
        return self.formula is not None

    def vjp(self, index):
        """The vjp rule of argument ``index``, or ``None``; ``vjps`` may be a function of the index."""
        if callable(self.vjps):
            return self.vjps(index)
        return self.vjps[index] if index < len(self.vjps) else None


def register(op: Op) -> Op:
    if op.name in _REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> Op:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered ops: {', '.join(sorted(_REGISTRY))}") from None


def ops() -> list[str]:
    """The names of all registered ops, sorted."""
    return sorted(_REGISTRY)
