"""Elementwise ops: each is a SymPy formula, and everything else is derived from it.

The shape rule is broadcasting, the NumPy emission is the printed formula, and
the local derivative is ``sympy.diff`` of the formula with the op's own output
substituted back (so σ' = y(1 − y) reuses the forward value).  Derivatives are
derived once per op type and attrs, then cached.

SymPy is imported on first use (it is half a second of ``import graphgrad``
otherwise): an entry names its parameters and gives its formula as a function of
their symbols; the activations' SymPy functions live in `functions.py`.
"""
from __future__ import annotations

import collections.abc
import functools
import inspect

from .. import lazy
from .registry import Op, get_op, promoted_dtype, register
from .shapes import broadcast_shapes, unbroadcast

sympy = lazy.module("sympy")
fn = lazy.module("graphgrad.ops.functions")


def expr_symbols(n):
    """The argument symbols a0, a1, ... of a fused ``expr`` node."""
    return sympy.symbols(f"a0:{n}", real=True)


def output_symbol():
    """``y``, the op's output, in a local derivative that reuses the forward value."""
    return sympy.Symbol("y", real=True)


# -- the registry entries -------------------------------------------------------
def _broadcast_shape(shapes, attrs):
    return broadcast_shapes(*shapes)


def _symbols_for(params, n):
    return expr_symbols(n) if params is None else tuple(sympy.Symbol(p, real=True) for p in params.split())


@functools.lru_cache(maxsize=None)
def _formula(name, n, attrs_key):
    symbols = _symbols_for(_PARAMS[name], n)
    return get_op(name).formula(*symbols, **dict(attrs_key)), symbols


def attrs_key(attrs) -> tuple:
    return tuple(sorted(attrs.items()))


def node_formula(name, n, attrs):
    """``(expr, symbols)``: the op's formula over its argument symbols."""
    return _formula(name, n, attrs_key(attrs))


def check_attrs(name, n, attrs):
    """Raise ``TypeError`` for attrs the op's formula does not take (or lacks), by its signature, so that
    declaring a graph needs no SymPy (a compile served from the cache never imports it).  Their values
    are checked by the public op functions (`functional.py`)."""
    inspect.signature(get_op(name).formula).bind(*range(n), **attrs)


@functools.lru_cache(maxsize=None)
def _local_derivative(name, n, akey, index):
    expr, syms = _formula(name, n, akey)
    # sign (|x|'s derivative) is flat wherever it is differentiable: 0, as in PyTorch, for SymPy's DiracDelta,
    # which has no NumPy value
    d = sympy.diff(expr, syms[index]).replace(sympy.DiracDelta, lambda *args: sympy.S.Zero)
    if not expr.is_Symbol and d.has(expr):
        d = d.subs(expr, output_symbol())  # reuse the forward value
    if getattr(expr, "output_has_sign_of_input", False):
        x = expr.args[0]
        d = d.replace(lambda e: isinstance(e, fn.select) and e.args[0] == x,
                      lambda e: fn.select(output_symbol(), *e.args[1:]))
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
        y = output_symbol()
        sources = [(s, t) for s, t in zip(syms, args) if d.has(s)] + ([(y, out)] if d.has(y) else [])
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
    """Register an elementwise op from its SymPy formula, a function of the symbols named in ``params``
    (``"a b"``); ``params=None`` means variadic (a0, a1, ...)."""
    _PARAMS[name] = params
    arity = None if params is None else len(params.split())
    extra = {"dtype": dtype} if dtype else {}
    return register(Op(
        name=name, shape=_broadcast_shape, emit=_emit(name), formula=formula, arity=arity,
        vjps=functools.partial(_make_vjp, name), domain=domain, doc=doc,
        test_attrs={} if test_attrs is None else test_attrs, **extra,
    ))


def _expr_formula(*syms, expr):
    return expr.xreplace(dict(zip(expr_symbols(len(syms)), syms)))


class _ExprTestAttrs(collections.abc.Mapping):
    """The ``expr`` op's test attrs, a SymPy expression: built when a test first reads them."""

    @functools.cached_property
    def _attrs(self):
        a0, a1 = expr_symbols(2)
        return {"expr": a0 * sympy.tanh(a1) + a0 ** 2}

    def __getitem__(self, key):
        return self._attrs[key]

    def __iter__(self):
        return iter(self._attrs)

    def __len__(self):
        return len(self._attrs)


# formulas call SymPy through ``sympy`` and ``fn`` (functions.py) when first derived, never here; an op closed over
# the integers (its value is an integer wherever its arguments are) has dtype=promoted_dtype, as in PyTorch
elementwise("add", "a b", lambda a, b: a + b, doc="a + b", dtype=promoted_dtype)
elementwise("sub", "a b", lambda a, b: a - b, doc="a − b", dtype=promoted_dtype)
elementwise("mul", "a b", lambda a, b: a * b, doc="a · b", dtype=promoted_dtype)
elementwise("div", "a b", lambda a, b: a / b, domain=("real", "nonzero"), doc="a / b")
elementwise("pow", "a b", lambda a, b: fn.power(a, b), domain=("positive", "real"), doc="a ** b", dtype=promoted_dtype)
elementwise("neg", "x", lambda x: -x, doc="−x", dtype=promoted_dtype)
elementwise("exp", "x", lambda x: sympy.exp(x), doc="e^x")
elementwise("log", "x", lambda x: sympy.log(x), domain=("positive",), doc="natural logarithm")
elementwise("log1p", "x", lambda x: fn.log1p(x), domain=("positive",), doc="log(1 + x), accurate near 0")
elementwise("expm1", "x", lambda x: fn.expm1(x), doc="e^x − 1, accurate near 0")
elementwise("sqrt", "x", lambda x: sympy.sqrt(x), domain=("positive",), doc="√x")
elementwise("abs", "x", lambda x: sympy.Abs(x), domain=("nonzero",), doc="|x|", dtype=promoted_dtype)
elementwise("tanh", "x", lambda x: sympy.tanh(x), doc="hyperbolic tangent")
elementwise("sigmoid", "x", lambda x: fn.sigmoid(x), doc="σ(x) = 1 / (1 + e^−x)")
elementwise("relu", "x", lambda x: fn.relu(x), domain=("nonzero",), doc="max(x, 0)", dtype=promoted_dtype)
elementwise("softplus", "x", lambda x: fn.softplus(x), doc="log(1 + e^x), computed without overflow")
elementwise("leaky_relu", "x", lambda x, alpha=0.01: fn.select(x, x, alpha * x), domain=("nonzero",),
            doc="x for x > 0, else αx", test_attrs={"alpha": 0.1})
elementwise("elu", "x", lambda x, alpha=1.0: fn.elu(x, alpha), domain=("nonzero",),
            doc="x for x > 0, else α(e^x − 1)")
elementwise("gelu", "x", lambda x, approximate="none": fn.gelu(x, approximate),
            doc="GELU x·Φ(x), exact (erf) or approximate='tanh', as PyTorch's")
elementwise("silu", "x", lambda x: x * fn.sigmoid(x), doc="x · σ(x)")
elementwise("maximum", "a b", lambda a, b: fn.maximum(a, b), domain=("real", "real"), doc="elementwise max",
            dtype=promoted_dtype)
elementwise("minimum", "a b", lambda a, b: fn.minimum(a, b), domain=("real", "real"), doc="elementwise min",
            dtype=promoted_dtype)
elementwise("where", "c a b", lambda c, a, b: fn.select(c, a, b), domain=("nonzero", "real", "real"),
            doc="a where c > 0 (or True), else b", dtype=lambda dtypes, attrs: promoted_dtype(dtypes[1:], attrs))
elementwise("expr", None, _expr_formula, doc="a fused elementwise SymPy expression over a0, a1, ...",
            test_attrs=_ExprTestAttrs())
