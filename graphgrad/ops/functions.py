"""The SymPy functions of the elementwise formulas (`elementwise.py`), imported on first use: each
activation carries its derivative (``fdiff``), a stable NumPy emission (``_numpycode``) and its
textbook form.
"""
from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.codegen.cfunctions import expm1, log1p  # noqa: F401  (the formulas of the ops of those names)

from . import special_kernels


def masked_product_ok(a) -> bool:
    """Whether ``select(c, a, 0)`` may be printed as ``a * (c > 0)``: ``a`` is built from symbols and
    numbers by sums and products only (no division, log or power that could hold an inf)."""
    return a.is_Symbol or a.is_Number or ((a.is_Mul or a.is_Add) and all(masked_product_ok(t) for t in a.args))


class select(sympy.Function):
    """``select(c, a, b)`` is ``a`` where ``c > 0`` else ``b``: the one branch primitive."""

    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        # a Float 0.0 branch becomes the Integer 0, so that every "select(c, a, 0)" test sees it
        if any(t.is_zero and t is not sympy.S.Zero for t in (a, b)):
            return cls(c, sympy.S.Zero if a.is_zero else a, sympy.S.Zero if b.is_zero else b)
        return None

    def fdiff(self, argindex=1):
        c = self.args[0]
        return {1: sympy.S.Zero, 2: select(c, 1, 0), 3: select(c, 0, 1)}[argindex]

    def _numpycode(self, p):
        c, a, b = self.args
        if b == 0 and masked_product_ok(a):
            # a branch-free mask product (np.where mispredicts on random signs, ~7x slower); only for sums
            # and products of arguments and constants, so no 0 * inf from a computed untaken branch (a
            # division, a log) can leak a NaN
            value = p.scalar(a) if a.is_Number else p.parenthesize(a, PRECEDENCE["Mul"])
            return f"({value} * ({p._print(c)} > 0))"  # enclosed: SymPy prints a function as an atom
        return f"np.where({p._print(c)} > 0, {p.scalar(a)}, {p.scalar(b)})"

    def _latex(self, p):
        c, a, b = (p._print(t) for t in self.args)
        return rf"\begin{{cases}} {a} & {c} > 0 \\ {b} & \text{{otherwise}} \end{{cases}}"


class sigmoid(sympy.Function):
    """σ(x) = 1 / (1 + e^{-x})."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _numpycode(self, p):
        # one tanh, no exp that can overflow for large |x|
        return f"(0.5 * np.tanh(0.5 * {p.parenthesize(self.args[0], 50)}) + 0.5)"

    def _eval_rewrite_as_tanh(self, x, **kwargs):
        return sympy.tanh(x / 2) / 2 + sympy.S.Half

    def _latex(self, p):
        return rf"\sigma\left({p._print(self.args[0])}\right)"

    def _pretty(self, p):
        from sympy.printing.pretty.stringpict import prettyForm

        return prettyForm(f"σ({sympy.pretty(self.args[0], use_unicode=True)})")


class relu(sympy.Function):
    """relu(x) = max(x, 0)."""

    nargs = 1

    # relu(x) > 0 exactly where x > 0: the derivative may test the output, so the input dies at the forward
    output_has_sign_of_input = True

    def fdiff(self, argindex=1):
        return select(self.args[0], 1, 0)

    def _numpycode(self, p):
        # not np.maximum(x, 0): against a scalar NumPy's maximum runs an unvectorized loop (AVX2, NumPy 2.4:
        # 0.25 ms on 1 MB of float32), clip with an infinite bound the vectorized one (0.05 ms); integers would
        # become float64 against np.inf, so they take the maximum against a zero of their own type
        if p.value_type != "F":
            return f"np.maximum({p._print(self.args[0])}, {p.scalar(sympy.S.Zero)})"
        return f"np.clip({p._print(self.args[0])}, 0, np.inf)"


class softplus(sympy.Function):
    """softplus(x) = log(1 + e^x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _numpycode(self, p):
        return f"np.logaddexp(0, {p._print(self.args[0])})"


# constants as Floats, not sqrt(2) and pi: printed as np.sqrt(2) they would be float64 scalars, and a float32
# array times a float64 NumPy scalar is float64
SQRT_HALF, SQRT_2_OVER_PI, TWO_OVER_SQRT_PI = (sympy.Float(v, 17) for v in (0.5 ** 0.5, (2 / 3.141592653589793) ** 0.5,
                                                                        2 / 3.141592653589793 ** 0.5))


class erf(sympy.Function):
    """The error function, emitted as a call to a float64-accurate NumPy kernel (no SciPy)."""

    nargs = 1
    kernels = (special_kernels.erf,)  # pasted into generated code wherever the function appears

    def fdiff(self, argindex=1):
        return TWO_OVER_SQRT_PI * gaussian(self.args[0])

    def _eval_rewrite_as_erf(self, x, **kwargs):
        return sympy.erf(x)

    def _numpycode(self, p):
        return f"erf({p._print(self.args[0])})"

    def _latex(self, p):
        return rf"\operatorname{{erf}}\left({p._print(self.args[0])}\right)"


class gaussian(sympy.Function):
    """e^(−x²), emitted with x clipped to ±40 (where it is 0 in float64 anyway) so that x² cannot overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        return -2 * self.args[0] * self

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.exp(-x ** 2)

    def _numpycode(self, p):
        return f"np.exp(-np.square(np.clip({p._print(self.args[0])}, -40, 40)))"


class tanh_clipped(sympy.Function):
    """x clipped to ±10 for printing only: beyond, tanh(√(2/π)(x + 0.044715x³)) is ±1 in float64, and the
    clip keeps x³ from overflowing to inf (and inf · 0 = NaN in a derivative) at |x| = 1e30 in float32."""

    nargs = 1

    def _numpycode(self, p):
        return f"np.clip({p._print(self.args[0])}, -10, 10)"


class gelu_tanh(sympy.Function):
    """GELU's tanh approximation x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), PyTorch's approximate='tanh'."""

    nargs = 1

    @staticmethod
    def inner(x):
        return SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)

    def fdiff(self, argindex=1):
        return gelu_tanh_grad(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):  # the textbook form (not "as_tanh": the printer expands that)
        return x / 2 * (1 + sympy.tanh(self.inner(x)))

    def _numpycode(self, p):
        x = self.args[0]
        return f"({p._print(x / 2 * (1 + sympy.tanh(self.inner(tanh_clipped(x)))))})"  # an atom to its context


class gelu_tanh_grad(sympy.Function):
    """d/dx of `gelu_tanh`: (1 + t)/2 + x/2 · (1 − t²) · √(2/π)(1 + 3·0.044715x²), t = tanh(inner(x)),
    printed with x clipped to ±10 (beyond, the derivative is 0 or 1 to float64 rounding)."""

    nargs = 1

    @staticmethod
    def formula(x):
        t = sympy.tanh(gelu_tanh.inner(x))
        return (1 + t) / 2 + x / 2 * (1 - t ** 2) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)

    def fdiff(self, argindex=1):
        return sympy.diff(self.formula(self.args[0]), self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return self.formula(x)

    def _numpycode(self, p):
        return f"({p._print(self.formula(tanh_clipped(self.args[0])))})"  # a sum, printed where an atom goes


def gelu(x, approximate="none"):
    if approximate == "tanh":
        return gelu_tanh(x)
    if approximate != "none":
        raise ValueError(f"gelu approximate must be 'none' (exact, erf) or 'tanh', got {approximate!r}")
    return x / 2 * (1 + erf(x * SQRT_HALF))


class elu(sympy.Function):
    """elu(x, α) = x for x > 0, else α(e^x − 1)."""

    nargs = 2

    def fdiff(self, argindex=1):
        x, alpha = self.args
        if argindex == 1:
            return select(x, 1, self + alpha)
        return select(x, 0, expm1(x))

    def _numpycode(self, p):
        x, alpha = (p._print(a) for a in self.args)
        # expm1 of min(x, 0): the branch np.where discards must not overflow either
        return f"np.where({x} > 0, {x}, {alpha} * np.expm1(np.minimum({x}, 0)))"


class maximum(sympy.Function):
    """maximum(a, b); the derivative goes to ``a`` where a > b, else to ``b``."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return select(a - b, 1, 0) if argindex == 1 else select(a - b, 0, 1)

    def _numpycode(self, p):
        return f"np.maximum({p._print(self.args[0])}, {p._print(self.args[1])})"


class minimum(sympy.Function):
    """minimum(a, b); the derivative goes to ``a`` where a < b, else to ``b``."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return select(b - a, 1, 0) if argindex == 1 else select(b - a, 0, 1)

    def _numpycode(self, p):
        return f"np.minimum({p._print(self.args[0])}, {p._print(self.args[1])})"


class power(sympy.Function):
    """a ** b, differentiated as b·a^(b−1) so that 0 ** 2 has derivative 0, not 0/0."""

    nargs = 2
    precedence = PRECEDENCE["Pow"]  # printed a**b, so a power of it is parenthesized ((a**b)**2, not a**b**2)

    @classmethod
    def eval(cls, a, b):
        if b.is_Number:
            return a ** b

    def fdiff(self, argindex=1):
        a, b = self.args
        return b * power(a, b - 1) if argindex == 1 else self * sympy.log(a)

    def _numpycode(self, p):
        return f"{p.parenthesize(self.args[0], 60)}**{p.parenthesize(self.args[1], 60)}"

    def _sympystr(self, p):
        return f"{p.parenthesize(self.args[0], 60)}**{p.parenthesize(self.args[1], 60)}"
