"""Elementwise ops: each is a SymPy formula, and everything else is derived from it.

The shape rule is broadcasting, the NumPy emission is the printed formula, and
the local derivative is ``sympy.diff`` of the formula with the op's own output
substituted back (so σ' = y(1 − y) reuses the forward value).  Derivatives are
derived once per op type and attrs, then cached.

Activations are SymPy functions of their own: each carries its derivative
(``fdiff``), a stable NumPy emission (``_numpycode``) and its textbook form.
"""
from __future__ import annotations

import functools

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.codegen.cfunctions import expm1, log1p

from . import special_kernels
from .registry import Op, register
from .shapes import broadcast_shapes, unbroadcast

X, A, B, C = sympy.symbols("x a b c", real=True)
Y, G = sympy.symbols("y g", real=True)  # the op's output and the incoming cotangent


def expr_symbols(n):
    """The argument symbols a0, a1, ... of a fused ``expr`` node."""
    return sympy.symbols(f"a0:{n}", real=True)


# -- activations as SymPy functions -------------------------------------------
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
            return f"{value} * ({p._print(c)} > 0)"
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
    kernels = (special_kernels.positive_part,)  # np.maximum against the scalar 0 is 5x slower

    def fdiff(self, argindex=1):
        return select(self.args[0], 1, 0)

    def _numpycode(self, p):
        return f"positive_part({p._print(self.args[0])})"


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
        return p._print(x / 2 * (1 + sympy.tanh(self.inner(tanh_clipped(x)))))


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
        return p._print(self.formula(tanh_clipped(self.args[0])))


def _gelu(x, approximate="none"):
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


# -- the registry entries -------------------------------------------------------
def _broadcast_shape(shapes, attrs):
    return broadcast_shapes(*shapes)


def _symbols_for(params, n):
    return expr_symbols(n) if params is None else params


@functools.lru_cache(maxsize=None)
def _formula(name, n, attrs_key):
    from .registry import get_op

    op = get_op(name)
    params = _PARAMS[name]
    return op.formula(*_symbols_for(params, n), **dict(attrs_key)), _symbols_for(params, n)


def attrs_key(attrs) -> tuple:
    return tuple(sorted(attrs.items()))


def node_formula(name, n, attrs):
    """``(expr, symbols)``: the op's formula over its argument symbols."""
    return _formula(name, n, attrs_key(attrs))


@functools.lru_cache(maxsize=None)
def _local_derivative(name, n, akey, index):
    expr, syms = _formula(name, n, akey)
    d = sympy.diff(expr, syms[index])
    if not expr.is_Symbol and d.has(expr):
        d = d.subs(expr, Y)  # reuse the forward value
    if getattr(expr, "output_has_sign_of_input", False):
        x = expr.args[0]
        d = d.replace(lambda e: isinstance(e, select) and e.args[0] == x, lambda e: select(Y, *e.args[1:]))
    return d


def node_kernels(op, n, attrs) -> tuple:
    """The helpers a node's emission calls: its op's kernels and, for an elementwise node, those of the
    SymPy functions in its formula (erf in the exact GELU and its derivative, fused or not)."""
    if not op.elementwise:
        return op.kernels
    expr, _ = node_formula(op.name, n, attrs)
    return op.kernels + tuple(k for f in expr.atoms(sympy.Function) for k in getattr(f, "kernels", ()))


def local_derivative(name, n, attrs, index):
    """∂ op / ∂ argument ``index`` as a SymPy expression of the argument symbols and ``y``."""
    return _local_derivative(name, n, attrs_key(attrs), index)


def _make_vjp(name, index):
    def vjp(g, args, out, attrs):
        d = local_derivative(name, len(args), attrs, index)
        if d == 0:
            return None
        _, syms = node_formula(name, len(args), attrs)
        sources = [(s, t) for s, t in zip(syms, args) if d.has(s)] + ([(Y, out)] if d.has(Y) else [])
        if d == 1:
            local = g
        else:
            a = expr_symbols(1 + len(sources))
            expr = a[0] * d.xreplace({s: a[k + 1] for k, (s, _) in enumerate(sources)})
            local = g.graph.apply("expr", [g, *[t for _, t in sources]], {"expr": expr}, name=f"d_{name}")
        return unbroadcast(local, args[index].shape)

    return vjp


def _emit(name):
    def emit(args, attrs):
        from .printer import emit_expr

        expr, syms = node_formula(name, len(args), attrs)
        return emit_expr(expr, {s.name: a for s, a in zip(syms, args)})

    return emit


_PARAMS: dict = {}


def elementwise(name, params, formula, domain=("real",), doc="", test_attrs=None, dtype=None):
    """Register an elementwise op from its SymPy formula; ``params=None`` means variadic (a0, a1, ...)."""
    _PARAMS[name] = params
    arity = None if params is None else len(params)
    extra = {"dtype": dtype} if dtype else {}
    return register(Op(
        name=name, shape=_broadcast_shape, emit=_emit(name), formula=formula, arity=arity,
        vjps=functools.partial(_make_vjp, name), domain=domain, doc=doc,
        test_attrs=test_attrs or {}, **extra,
    ))


def _expr_formula(*syms, expr):
    return expr.xreplace(dict(zip(expr_symbols(len(syms)), syms)))


elementwise("add", (A, B), lambda a, b: a + b, doc="a + b")
elementwise("sub", (A, B), lambda a, b: a - b, doc="a − b")
elementwise("mul", (A, B), lambda a, b: a * b, doc="a · b")
elementwise("div", (A, B), lambda a, b: a / b, domain=("real", "nonzero"), doc="a / b")
elementwise("pow", (A, B), power, domain=("positive", "real"), doc="a ** b")
elementwise("neg", (X,), lambda x: -x, doc="−x")
elementwise("exp", (X,), sympy.exp, doc="e^x")
elementwise("log", (X,), sympy.log, domain=("positive",), doc="natural logarithm")
elementwise("log1p", (X,), log1p, domain=("positive",), doc="log(1 + x), accurate near 0")
elementwise("expm1", (X,), expm1, doc="e^x − 1, accurate near 0")
elementwise("sqrt", (X,), sympy.sqrt, domain=("positive",), doc="√x")
elementwise("abs", (X,), sympy.Abs, domain=("nonzero",), doc="|x|")
elementwise("tanh", (X,), sympy.tanh, doc="hyperbolic tangent")
elementwise("sigmoid", (X,), sigmoid, doc="σ(x) = 1 / (1 + e^−x)")
elementwise("relu", (X,), relu, domain=("nonzero",), doc="max(x, 0)")
elementwise("softplus", (X,), softplus, doc="log(1 + e^x), computed without overflow")
elementwise("leaky_relu", (X,), lambda x, alpha=0.01: select(x, x, alpha * x), domain=("nonzero",),
            doc="x for x > 0, else αx", test_attrs={"alpha": 0.1})
elementwise("elu", (X,), lambda x, alpha=1.0: elu(x, alpha), domain=("nonzero",), doc="x for x > 0, else α(e^x − 1)")
elementwise("gelu", (X,), _gelu, doc="GELU x·Φ(x), exact (erf) or approximate='tanh', as PyTorch's")
elementwise("silu", (X,), lambda x: x * sigmoid(x), doc="x · σ(x)")
elementwise("maximum", (A, B), maximum, domain=("real", "real"), doc="elementwise max")
elementwise("minimum", (A, B), minimum, domain=("real", "real"), doc="elementwise min")
elementwise("where", (C, A, B), select, domain=("nonzero", "real", "real"),
            doc="a where c > 0 (or True), else b", dtype=lambda dtypes, attrs: _float_of(dtypes[1:]))
_A0, _A1 = expr_symbols(2)
elementwise("expr", None, _expr_formula, doc="a fused elementwise SymPy expression over a0, a1, ...",
            test_attrs={"expr": _A0 * sympy.tanh(_A1) + _A0 ** 2})


def _float_of(dtypes):
    return "float64" if "float64" in dtypes else "float32"
