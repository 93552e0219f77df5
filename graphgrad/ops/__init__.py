"""Every op, one registry entry each: elementwise ops from SymPy formulas, structural ops with vjp rules."""
from .registry import Op, get_op, ops, register
from . import elementwise, structural  # noqa: F401  (registers the ops)
from . import recurrent  # noqa: F401
from . import conv, nn_ops  # noqa: F401  (layer ops)

__all__ = ["Op", "get_op", "ops", "register"]
