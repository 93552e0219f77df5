"""Derive: SymPy views of the graph, for display and explanation."""
from __future__ import annotations

import re

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .errors import GraphError
from .ir import Tensor
from .ops import get_op
from .ops.elementwise import node_formula


def _op_name(op) -> str:
    return op if isinstance(op, str) else getattr(op, "op", getattr(op, "__name__", str(op)))


def derivative(op, wrt: int = 0, **attrs) -> sympy.Expr:
    """The local derivative of an elementwise op as a SymPy expression.

    >>> import graphgrad as gg
    >>> gg.derivative(gg.sigmoid)
    (1 - sigmoid(x))*sigmoid(x)
    """
    name = _op_name(op)
    spec = get_op(name)
    if not spec.elementwise:
        raise GraphError(f"{name} is a structural op: its derivative is a vjp rule, not a formula")
    expr, syms = node_formula(name, spec.arity or 1, attrs)
    return sympy.diff(expr, syms[wrt])


def symbol_for(node: str) -> sympy.Symbol:
    """The SymPy symbol that stands for a node's value: its name made an identifier."""
    return sympy.Symbol(re.sub(r"\W", "_", node), real=True)


def formula(t: Tensor) -> sympy.Expr:
    """The SymPy expression of the elementwise subgraph ending at ``t``.

    Non-elementwise nodes (inputs, params, matmuls, ...) appear as symbols
    named after their nodes; scalar constants appear as numbers.
    """
    graph = t.graph
    memo: dict = {}

    def build(node):
        if node in memo:
            return memo[node]
        data = graph.nx.nodes[node]
        op = get_op(data["op"])
        if data["op"] == "const" and data["shape"] == ():
            result = sympy.sympify(data["attrs"]["value"])
        elif op.elementwise:
            args = graph.args(node)
            expr, syms = node_formula(data["op"], len(args), data["attrs"])
            result = expr.xreplace({s: build(a) for s, a in zip(syms, args)})
        else:
            result = symbol_for(node)
        memo[node] = result
        return result

    return build(t.node)


# -- printing: the textbook notation ------------------------------------------
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class UnicodePrinter(StrPrinter):
    """One-line Unicode: σ(x)(1 − σ(x)), 1 − tanh(x)², [x > 0] for a branch (Iverson bracket)."""

    printmethod = "_unicode"  # not "_sympystr": our ops' plain-text methods print ``**``

    def _print_sigmoid(self, e):
        return f"σ({self._print(e.args[0])})"

    def _print_select(self, e):
        c, a, b = e.args
        if (a, b) == (1, 0):
            return f"[{self._print(c)} > 0]"
        return f"({self._print(a)} if {self._print(c)} > 0 else {self._print(b)})"

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        b = self.parenthesize(base, PRECEDENCE["Pow"])  # (x³)^1.5, not x³^1.5
        if exp == sympy.S.Half:
            return f"√{b}"
        if exp.is_Integer and exp < 0:
            return f"1/{b}" if exp == -1 else f"1/{b}{str(-exp).translate(_SUPERSCRIPT)}"
        if exp.is_Integer:
            return f"{b}{str(exp).translate(_SUPERSCRIPT)}"
        return f"{b}^{self.parenthesize(exp, PRECEDENCE['Pow'], strict=True)}"

    def _print_power(self, e):
        return self._print_Pow(sympy.Pow(*e.args, evaluate=False))

    def _print_floor(self, e):
        return f"⌊{self._print(e.args[0])}⌋"

    def _print_Mul(self, e):
        # textbook order and juxtaposition: σ(x)(1 − σ(x)), not (1 − σ(x))*σ(x)
        c, factors = e.as_coeff_mul()
        if c < 0:
            return "-" + self.parenthesize(-e, PRECEDENCE["Add"])
        if any(f.is_Pow and f.exp.is_negative for f in factors):
            return super()._print_Mul(e)
        parts = ([self._print(c)] if c != 1 else []) + [
            self.parenthesize(f, PRECEDENCE["Mul"]) for f in sorted(factors, key=lambda f: f.is_Add)]
        text = parts[0]
        for part in parts[1:]:
            text += part if part.startswith("(") and text.endswith(")") else "*" + part
        return text

    def _print_Float(self, e):
        return f"{float(e):g}"

    def _print_Exp1(self, e):
        return "e"

    def _print_Pi(self, e):
        return "π"

    def _print_Function(self, e):
        if type(e).__name__ == "exp":
            return f"e^{self.parenthesize(e.args[0], PRECEDENCE['Pow'], strict=True)}"
        return super()._print_Function(e)

    def doprint(self, expr):
        # the only "*" and "-" left are products and minus signs: print them as · and −
        return super().doprint(expr).replace("*", "·").replace("-", "−")


def unicode(expr) -> str:
    """``expr`` in one line of Unicode math, e.g. ``σ(x)·(1 − σ(x))``."""
    return UnicodePrinter().doprint(sympy.sympify(expr))


def latex(expr) -> str:
    """``expr`` as LaTeX; σ and branches print as in textbooks (see `ops.functions.sigmoid`)."""
    return sympy.latex(sympy.sympify(expr))


LATEX_SYMBOLS = {"ḡ": r"\bar{g}", "ᵀ": r"^{\top}", "·": r" \cdot ", "Σ": r"\sum ", "δ": r"\delta ", "σ": r"\sigma ",
                 "μ": r"\mu ", "²": "^{2}", "−": "-", "÷": r"\div ", "×": r"\times "}


def latex_text(text: str) -> str:
    r"""A structural op's local derivative, written in Unicode (``Σ_t δ_tᵀ·h_t−1 per step``), as LaTeX
    (``\sum_{t} \delta_{t}^{\top} \cdot h_{t-1}\ \text{per step}``): function names and prose upright,
    subscripts braced, symbols spelled."""
    def subscript(m):
        inner = m.group(2).replace("−", "-")
        return m.group(1) + "_{" + re.sub(r"_(\w+)", r"_{\1}", inner) + "}"

    text = re.sub(r"([A-Za-z][A-Za-z_]*)\(", lambda m: r"\mathrm{" + m.group(1).replace("_", r"\_") + "}(", text)
    # prose: runs of words of two letters or more (x_t and W_hh are symbols with subscripts)
    text = re.sub(r"(?<![\\{A-Za-z0-9_])[A-Za-z]{2,}[A-Za-z'_-]*(?:\s+[A-Za-z]{2,}[A-Za-z'_-]*)*(?![A-Za-z0-9_(])",
                  lambda m: r"\text{" + m.group().replace("_", r"\_") + "}", text)
    text = re.sub(r"\s+(?=\\text)|(?<=\})\s+(?=[^\s])", r"\\ ", text)
    text = re.sub(r"([A-Za-zḡδμσΣ])_([A-Za-z0-9μσ_]+(?:[−+]1)?)", subscript, text)
    return "".join(LATEX_SYMBOLS.get(c, c) for c in text).strip()


def local_formula(op_name: str, n_args: int, attrs: dict, index: int) -> sympy.Expr:
    """∂op/∂argument ``index`` written in the op's own symbols (x, or a, b, ...), for display.

    Unlike the derivative the vjp uses, the forward output is not replaced by
    ``y``, so sigmoid's reads σ(x)(1 − σ(x)) as in textbooks.
    """
    expr, syms = node_formula(op_name, n_args, attrs)
    return merge_selects(sympy.diff(expr, syms[index]))


def merge_selects(expr):
    """``c·select(x, 0, 1) + select(x, 1, 0)`` -> ``select(x, 1, c)``: one branch, as a textbook writes it."""
    from .ops.functions import select

    terms = sympy.Add.make_args(expr)
    parts = [t.as_independent(select) for t in terms]
    conds = {s.args[0] for _, s in parts if isinstance(s, select)}
    if len(terms) < 2 or len(conds) != 1 or not all(isinstance(s, select) for _, s in parts):
        return expr
    return select(conds.pop(), sum(c * s.args[1] for c, s in parts), sum(c * s.args[2] for c, s in parts))


def operand_names(graph, v) -> list | None:
    """How a local derivative of ``v`` names its arguments: a layer's output by its layer (``fc1``, as
    ∂L/∂fc2.W = fc1ᵀ·ḡ), another node by the last part of its name; None for one argument (x)."""
    def name(a):
        layer, _, last = a.rpartition("/")
        forward = [s for s in graph.nx.successors(a) if graph.nx.nodes[s].get("grad_of") is None]
        return layer.replace("/", ".") if layer and not any(s.startswith(layer + "/") for s in forward) else last

    args = graph.args(v)
    return [name(a) for a in args] if len(args) > 1 else None


def local_text(op_name: str, n_args: int, attrs: dict, index: int, notation: str = "unicode",
               names=None) -> str:
    """The label of a backward edge: the local derivative ∂op/∂arg ``index`` as text, from the op's
    registry entry (SymPy's derivative of its formula, or its ``local_derivative``).

    ``names`` renames the op's argument symbols (a, b, ...) after the argument nodes.
    """
    spec = get_op(op_name)
    if spec.elementwise:
        d = local_formula(op_name, n_args, attrs, index)
        if names:
            _, syms = node_formula(op_name, n_args, attrs)
            d = d.xreplace({s: sympy.Symbol(name) for s, name in zip(syms, names)})
        return latex(d) if notation == "latex" else unicode(d)
    texts = spec.local_derivative
    text = texts[min(index, len(texts) - 1)] if texts else None
    if text is None:
        raise GraphError(f"op {op_name} has no local derivative for argument {index}")
    if names:  # "ḡ·bᵀ" -> "ḡ·Wᵀ"
        text = re.sub(r"(?<![A-Za-z_])[ab](?![A-Za-z_])", lambda m: names["ab".index(m.group())], text)
    return latex_text(text) if notation == "latex" else text


# Known bounds of |f′| for activations: the reason a deep chain vanishes or not.
BOUNDS = {
    "sigmoid": ("σ′ ≤ ¼", 0.25), "tanh": ("tanh′ ≤ 1", 1.0), "relu": ("ReLU′ ∈ {0, 1}", 1.0),
    "leaky_relu": ("leaky ReLU′ ∈ {α, 1}", 1.0), "softplus": ("softplus′ < 1", 1.0),
    "elu": ("ELU′ ∈ (0, 1] for α ≤ 1", 1.0), "silu": ("SiLU′ < 1.1", 1.1), "gelu": ("GELU′ < 1.13", 1.13),
    "exp": ("exp′ = eˣ, unbounded", None), "log": ("log′ = 1/x, unbounded near 0", None),
}


def bound(op_name: str, n_args: int, attrs: dict, index: int):
    """``(text, value)``: a known upper bound of |∂op/∂arg|, or ``(None, None)``.

    Constant derivatives (add, sub, neg, scaling by a number) bound themselves.
    """
    if op_name in BOUNDS:
        return BOUNDS[op_name]
    if get_op(op_name).elementwise:
        d = local_formula(op_name, n_args, attrs, index)
        if d.is_Number:
            return f"= {unicode(d)}", abs(float(d))
    return None, None


# -- layer shape formulas -------------------------------------------------------
H, P, D, K, S, OP = sympy.symbols("H p d k s output_padding", integer=True)
_WINDOW = (sympy.floor((H + 2 * P - D * (K - 1) - 1) / S) + 1,
           "⌊(H + 2p − d(k−1) − 1)/s⌋ + 1", r"\left\lfloor \frac{H + 2p - d(k-1) - 1}{s} \right\rfloor + 1")
_TRANSPOSED = ((H - 1) * S - 2 * P + D * (K - 1) + OP + 1,
               "(H − 1)s − 2p + d(k−1) + output_padding + 1", r"(H - 1)s - 2p + d(k-1) + \mathrm{output\_padding} + 1")
# op -> (SymPy expression, Unicode text, LaTeX text) of one spatial output size, as in PyTorch's docs
SHAPE_FORMULAS = {"conv1d": _WINDOW, "conv2d": _WINDOW, "maxpool2d": _WINDOW, "avgpool2d": _WINDOW,
                  "conv_transpose2d": _TRANSPOSED}


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def shape_formula(op_name: str, attrs: dict = None, size=None, kernel=None):
    """The output-size formula of a windowed op (convolution, pooling) as a SymPy expression.

    With ``attrs`` (stride, padding, dilation, output_padding) those symbols are
    substituted; with ``size`` and ``kernel`` too, the result is a number.
    `SHAPE_FORMULAS` also holds the textbook text.

    >>> import graphgrad.symbolic as s
    >>> s.shape_formula("conv2d", {"stride": 2, "padding": 1}, size=28, kernel=3)
    14
    >>> formula, text, *_ = s.SHAPE_FORMULAS["conv2d"]
    >>> text
    '⌊(H + 2p − d(k−1) − 1)/s⌋ + 1'
    """
    if op_name not in SHAPE_FORMULAS:
        raise GraphError(f"{op_name} has no output-size formula; known: {sorted(SHAPE_FORMULAS)}")
    expr = SHAPE_FORMULAS[op_name][0]
    subs = {}
    if attrs is not None:
        stride = attrs.get("stride") or attrs.get("kernel_size") or 1
        subs = {S: _first(stride), P: _first(attrs.get("padding", 0)),
                D: _first(attrs.get("dilation", 1)), OP: _first(attrs.get("output_padding", 0))}
    if size is not None:
        subs[H] = size
    if kernel is None and attrs and "kernel" in attrs:  # pools carry their window; convs read it off W
        kernel = _first(attrs["kernel"])
    if kernel is not None:
        subs[K] = kernel
    return expr.subs(subs)
