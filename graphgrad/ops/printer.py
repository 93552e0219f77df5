"""SymPy -> NumPy source: the printer every elementwise emission goes through.

Functions that vectorize differently print themselves through a
``_numpycode(printer)`` method on their SymPy class (see `functions.py`);
this printer only maps SymPy's own functions and powers.  Python scalar
literals stay weakly typed in NumPy, so float32 code stays float32; integer
arguments of a float value are cast to it (`operand_sources`).
"""
from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .functions import masked_product_ok, select, sigmoid

_NUMPY_FUNCS = {
    "exp": "np.exp", "log": "np.log", "tanh": "np.tanh", "sin": "np.sin", "cos": "np.cos",
    "Abs": "np.abs", "sign": "np.sign", "log1p": "np.log1p", "expm1": "np.expm1", "sinh": "np.sinh",
    "cosh": "np.cosh", "atan": "np.arctan",
}


class NumPyEmitter(StrPrinter):
    """Prints a SymPy expression as a NumPy expression; ``names`` maps symbol names to source text."""

    printmethod = "_numpycode"

    def __init__(self, names=None, value_type="F"):
        super().__init__({"full_prec": False})
        self.names = names or {}
        self.value_type = value_type  # `type_source` of the value: F, or an integer type for an integer op

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
        b = self.parenthesize(base, PRECEDENCE["Pow"])  # ** is right-associative: (x**3)**1.5 keeps its parentheses
        if exp == sympy.S.Half:
            return f"np.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"(1 / np.sqrt({self._print(base)}))"
        if exp.is_Integer and exp < 0 and self.value_type == "F":  # integers raise, as in PyTorch
            return f"(1 / {b}**{-int(exp)})" if exp != -1 else f"(1 / {b})"
        if exp.is_Number:
            return f"{b}**{self._print(exp)}"
        return f"{b}**{self.parenthesize(exp, PRECEDENCE['Pow'], strict=True)}"

    def scalar(self, e) -> str:
        """A literal typed as the value, for calls where a Python scalar would upcast (np.where)."""
        return f"{self.value_type}({self._print(e)})" if e.is_Number else self._print(e)


def emit_expr(expr, names, value_type="F") -> str:
    return NumPyEmitter(names, value_type).doprint(expr)


def type_source(dtype, xp="np") -> str:
    """How generated code names a value's type: ``F``, the compute float, for any float; else ``np.int64``..."""
    return "F" if dtype.startswith("float") else f"{xp}.{dtype}"


def operand_sources(expr, syms, args, dtype, arg_dtypes, xp="np") -> dict:
    """Symbol name -> source text of its argument, for printing an elementwise node of ``dtype``.

    A float value computes in F: its integer (and bool) arguments are cast first, as PyTorch computes
    exp(int64) in its default float (NumPy would compute in float64, so float32 code would not stay
    float32).  An argument only a select tests (a where's mask) is compared, never cast.
    """
    cast = _value_symbols(expr) if dtype.startswith("float") else set()
    return {s.name: f"{xp}.asarray({a}, dtype=F)" if s in cast and not d.startswith("float") else a
            for s, a, d in zip(syms, args, arg_dtypes)}


def _value_symbols(e) -> set:
    """The symbols ``e``'s value is computed from: all but those that are only a select's condition."""
    if isinstance(e, select):
        return _value_symbols(e.args[1]) | _value_symbols(e.args[2])
    return {e} if e.is_Symbol else set().union(*map(_value_symbols, e.args))


class Target:
    """An array a chain of ufunc calls writes into: bound to ``name`` by the first call, which
    writes into ``alloc`` (a ``buffer(...)`` call or a dying argument)."""

    def __init__(self, name, alloc):
        self.name, self.alloc, self.bound = name, alloc, False

    def out(self) -> str:
        return self.name if self.bound else self.alloc


class UfuncChain:
    """Prints a fused elementwise expression as NumPy calls that accumulate into one array.

    Evaluating ``a*g + x + b`` by operators allocates an array per intermediate; writing
    every step into the destination (and a scratch array for a second compound term)
    allocates nothing and measured 1.7x faster on 1 MB float32 arrays.  Operands smaller
    than the destination (per-channel scales, scalars) are combined by plain operators
    first, as they are cheap.  ``full(expr)`` says whether an operand has the
    destination's shape, ``scratch()`` returns a new `Target`.  ``steps`` holds
    ``(source, symbols read)`` so the caller can check a destination that aliases an input
    is not read after its first write.
    """

    _UNARY = {2: "np.square", -1: "np.reciprocal", sympy.S.Half: "np.sqrt"}

    def __init__(self, printer, full, scratch, out_ufuncs):
        self.p, self.full, self.scratch, self.out_ufuncs = printer, full, scratch, out_ufuncs
        self.steps: list[tuple[str, set]] = []

    def into(self, e, dest: Target):
        if e.is_Add:
            return self._fold(e, dest, [(1, t) if t.as_coeff_Mul()[0] >= 0 else (-1, -t) for t in e.args],
                              ("np.add", "np.subtract"))
        if e.is_Mul:
            return self._fold(e, dest, [(-1, f.base) if f.is_Pow and f.exp == -1 else (1, f) for f in e.args],
                              ("np.multiply", "np.divide"))
        if e.is_Pow and e.exp in self._UNARY and self.full(e.base):
            return self._call(self._UNARY[e.exp], self._operand(e.base, dest), dest)
        if (e.is_Function and type(e).__name__ == "select" and e.args[2] == 0 and self.full(e.args[1])
                and self._maskable(e.args[1])):
            c, a, _ = e.args
            text, reads = self._operand(a, dest)
            return self._call("np.multiply", (f"{text}, {self.p.doprint(c)} > 0", reads | c.free_symbols), dest)
        if isinstance(e, sigmoid) and self.full(e):  # σ(x) = ½ tanh(x/2) + ½ (SymPy's exp has the rewrite too)
            return self.into(e._eval_rewrite_as_tanh(*e.args), dest)
        if e.is_Function and len(e.args) == 1 and self.full(e.args[0]):
            text, reads = self._operand(e.args[0], dest)
            call = self.p.doprint(e.func(sympy.Symbol(text)))
            if call.startswith(self.out_ufuncs) and call.endswith(")") and call.count("(") == 1:
                return self._call(call[:call.index("(")], (call[call.index("(") + 1:-1], reads), dest)
            return self._put(call, dest, reads)
        return self._whole(e, dest)

    def _maskable(self, a) -> bool:
        """Whether select(c, a, 0) may be a ⊙ (c > 0): no full-size division, log or power in ``a``
        that could put an inf (0 · inf = NaN) where the select takes 0.  Dividing by a smaller
        value (a batch size, a per-channel scale) is allowed: where it is 0, every element of
        that slice is non-finite either way."""
        if masked_product_ok(a) or not self.full(a):
            return True
        return (a.is_Mul or a.is_Add) and all(self._maskable(t) for t in a.args)

    def _fold(self, e, dest, operands, ops):
        """``e`` as a left fold: a compound full operand first, the full symbols, then the small rest as one."""
        big = [(s, t) for s, t in operands if self.full(t) and not t.is_Symbol]
        atoms = [(s, t) for s, t in operands if self.full(t) and t.is_Symbol]
        rest = [t if s > 0 else (-t if ops[0] == "np.add" else 1 / t) for s, t in operands
                if (s, t) not in big and (s, t) not in atoms]
        ordered = big + atoms + ([(1, e.func(*rest))] if rest else [])
        positive = [o for o in ordered if o[0] > 0]
        if not positive and e.is_Add:  # −a − b·c: the sum, then one negation
            self.into(-e, dest)
            return self._call("np.negative", (dest.name, set()), dest)
        if not positive or (not big and len(ordered) < 2):
            return self._whole(e, dest)
        if big:
            (sign, first), *others = ordered
            self.into(first, dest)
            if sign < 0:  # pos - dest (pos / dest): the inverse op with the operands swapped
                pos = positive[0]
                others.remove(pos)
                self._apply(ops[1], pos[1], dest, swapped=True)
        else:
            (_, first), (sign, second), *others = [positive[0]] + [o for o in ordered if o is not positive[0]]
            self._call(ops[sign < 0], (f"{self.p.doprint(first)}, {self.p.doprint(second)}",
                                       first.free_symbols | second.free_symbols), dest)
        for sign, term in others:
            self._apply(ops[sign < 0], term, dest)

    def _apply(self, op, term, dest, swapped=False):
        """dest = op(dest, term) (``swapped``: op(term, dest)), a compound full term in a scratch array."""
        if self.full(term) and not term.is_Symbol:
            tmp = self.scratch()
            self.into(term, tmp)
            operand, reads = tmp.name, set()
        else:
            operand, reads = self.p.doprint(term), term.free_symbols
        args = f"{operand}, {dest.name}" if swapped else f"{dest.name}, {operand}"
        self._call(op, (args, reads), dest)

    def _operand(self, e, dest):
        """(source, symbols read) of an argument: a symbol or small value as it is, else computed into ``dest``."""
        if e.is_Symbol or not self.full(e):
            return self.p.doprint(e), e.free_symbols
        self.into(e, dest)
        return dest.name, set()

    def _whole(self, e, dest):
        """Fallback: NumPy evaluates ``e`` by operators; the result lands in ``dest``."""
        return self._put(self.p.doprint(e), dest, e.free_symbols)

    def _put(self, text, dest, reads):
        if not dest.bound:
            self.steps.append((f"{dest.name} = {dest.alloc}", None))  # binds, writes nothing
            dest.bound = True
        self.steps.append((f"{dest.name}[...] = {text}", reads))

    def _call(self, fn, operands, dest):
        """dest = fn(operands..., out=dest); ``operands`` is (source of the arguments, symbols read)."""
        args, reads = operands
        call = f"{fn}({args}, out={dest.out()})"
        self.steps.append((call if dest.bound else f"{dest.name} = {call}", reads))
        dest.bound = True
