"""SymPy -> NumPy source: the printer every elementwise emission goes through.

Functions that vectorize differently print themselves through a
``_numpycode(printer)`` method on their SymPy class (see `elementwise.py`);
this printer only maps SymPy's own functions and powers.  Python scalar
literals stay weakly typed in NumPy, so float32 code stays float32.
"""
from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

_NUMPY_FUNCS = {
    "exp": "np.exp", "log": "np.log", "tanh": "np.tanh", "sin": "np.sin", "cos": "np.cos",
    "Abs": "np.abs", "sign": "np.sign", "log1p": "np.log1p", "expm1": "np.expm1", "sinh": "np.sinh",
    "cosh": "np.cosh", "atan": "np.arctan",
}


class NumPyEmitter(StrPrinter):
    """Prints a SymPy expression as a NumPy expression; ``names`` maps symbol names to source text."""

    printmethod = "_numpycode"

    def __init__(self, names=None, float_type="F"):
        super().__init__({"full_prec": False})
        self.names = names or {}
        self.float_type = float_type

    def _print_Symbol(self, s):
        return self.names.get(s.name, s.name)

    def _print_Function(self, e):
        name = type(e).__name__
        if name not in _NUMPY_FUNCS:
            raise NotImplementedError(f"no NumPy emission for SymPy function {name}")
        return f"{_NUMPY_FUNCS[name]}({', '.join(self._print(a) for a in e.args)})"

    def _print_Exp1(self, e):
        return "np.e"

    def _print_Pi(self, e):
        return "np.pi"

    def _print_Float(self, e):
        return repr(float(e))

    def _print_Rational(self, e):
        return repr(e.p / e.q)

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        b = self.parenthesize(base, PRECEDENCE["Pow"], strict=True)
        if exp == sympy.S.Half:
            return f"np.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"(1 / np.sqrt({self._print(base)}))"
        if exp.is_Integer and exp < 0:
            return f"(1 / {b}**{-int(exp)})" if exp != -1 else f"(1 / {b})"
        if exp.is_Number:
            return f"{b}**{self._print(exp)}"
        return f"{b}**{self.parenthesize(exp, PRECEDENCE['Pow'], strict=True)}"

    def scalar(self, e) -> str:
        """A literal typed as the compute float, for calls where a Python scalar would upcast (np.where)."""
        return f"{self.float_type}({self._print(e)})" if e.is_Number else self._print(e)


def emit_expr(expr, names, float_type="F") -> str:
    return NumPyEmitter(names, float_type).doprint(expr)
