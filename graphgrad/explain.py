"""Explain: the chain rule written out, and a per-layer summary with shape formulas and costs.

``explain(loss, w)`` enumerates the graph paths from ``w`` to ``loss``
(networkx edge paths, so ``x * x`` counts twice) and writes ∂loss/∂w as the
sum over paths of the product of local derivatives, each factor with its
known bound (σ′ ≤ ¼, tanh′ ≤ 1, ReLU′ ∈ {0, 1}): a product of many factors
bounded by ¼ is why a deep sigmoid net's first layers barely learn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from . import lazy
from .errors import GraphError
from .ir import Tensor, shape_text
from .ops import get_op

symbolic = lazy.module("graphgrad.symbolic")  # SymPy, imported when something is explained


@dataclass(frozen=True)
class Factor:
    """One local derivative ∂v/∂u on a path: the edge u -> v entering ``v`` at argument ``index``."""

    u: str
    v: str
    index: int
    text: str  # the local derivative, Unicode
    latex: str
    bound_text: str | None
    bound: float | None
    repeated: bool = False  # v reads u more than once (x * x): the factor names its argument

    @property
    def symbol(self) -> str:
        """∂v/∂u, with ``[arg k]`` when v reads u at several arguments, so each path reads differently."""
        return _d(self.v, self.u) + (f"[arg {self.index + 1}]" if self.repeated else "")


class Explanation:
    """∂loss/∂wrt as a sum over paths of products of `Factor`s; prints as the chain-rule line."""

    def __init__(self, loss: str, wrt: str, paths: list):
        self.loss, self.wrt, self.paths = loss, wrt, paths

    def path_bound(self, path) -> float | None:
        """The product of the factors' known bounds, or ``None`` when some factor is unbounded or unknown."""
        bounds = [f.bound for f in path if f.bound_text is not None]
        if any(b is None for b in bounds) or not bounds:
            return None
        return math.prod(bounds)

    @property
    def unicode(self) -> str:
        head = f"{_d(self.loss, self.wrt)} = "
        if not self.paths:
            return head + "0   (no path: the loss does not depend on it)"
        terms = [" · ".join(f.symbol for f in path) for path in self.paths]
        lines = [head + "\n  + ".join(terms), "", "where"]
        seen = set()
        for path in self.paths:
            for f in path:
                if (f.u, f.v, f.index) in seen:
                    continue
                seen.add((f.u, f.v, f.index))
                note = f"   [{f.bound_text}]" if f.bound_text and not f.bound_text.startswith("=") else ""
                lines.append(f"  {f.symbol} = {f.text}{note}")
        for k, path in enumerate(self.paths):
            b = self.path_bound(path)
            limited = [f.bound_text for f in path if f.bound is not None and f.bound < 1]
            if b is not None and limited:
                lines.append(f"path {k + 1}: the bounded factors multiply to at most {b:.3g} "
                             f"({len(limited)} factors below 1: {', '.join(dict.fromkeys(limited))})")
        return "\n".join(lines)

    @property
    def latex(self) -> str:
        def d(a, b):
            return rf"\frac{{\partial\,\mathrm{{{_tex(a)}}}}}{{\partial\,\mathrm{{{_tex(b)}}}}}"

        terms = [r" \cdot ".join(d(f.v, f.u) for f in path) for path in self.paths] or ["0"]
        return d(self.loss, self.wrt) + " = " + " + ".join(terms)

    def __str__(self):
        return self.unicode

    def __repr__(self):
        return f"<Explanation ∂{self.loss}/∂{self.wrt}: {len(self.paths)} paths>"

    def _repr_markdown_(self):
        return f"$${self.latex}$$\n\n```\n{self.unicode}\n```"


def _d(top: str, bottom: str) -> str:
    """∂top/∂bottom, parenthesising scoped names so the slashes do not read as divisions."""
    wrap = lambda n: f"({n})" if "/" in n else n  # noqa: E731
    return f"∂{wrap(top)}/∂{wrap(bottom)}"


def _tex(name: str) -> str:
    return name.replace("_", r"\_")


def _factor(graph, u, v, index) -> Factor:
    """The factor of edge u -> v: its text is the backward edge label `render` draws (the op's registry entry)."""
    data = graph.nx.nodes[v]
    n = len(graph.args(v))
    bound_text, bound = symbolic.bound(data["op"], n, data["attrs"], index)
    names = symbolic.operand_names(graph, v)
    return Factor(u, v, index, symbolic.local_text(data["op"], n, data["attrs"], index, names=names),
                  symbolic.local_text(data["op"], n, data["attrs"], index, "latex", names), bound_text, bound,
                  graph.args(v).count(u) > 1)


def explain(loss: Tensor, wrt, max_paths: int = 64) -> Explanation:
    """∂loss/∂wrt written as the sum over graph paths of products of local derivatives.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (3,)); w = g.param("w", (3,))
    >>> e = gg.explain(gg.sigmoid(x * w).sum(), w)
    >>> "σ(x)(1 − σ(x))" in e.unicode and "σ′ ≤ ¼" in e.unicode
    True
    """
    graph = loss.graph
    start = wrt.node if isinstance(wrt, Tensor) else str(wrt)
    if start not in graph.nx:
        raise GraphError(f"explain: graph {graph.name!r} has no node {start!r}")
    paths = []
    if start != loss.node:
        for edge_path in nx.all_simple_edge_paths(graph.nx, start, loss.node):
            if len(paths) == max_paths:
                raise GraphError(f"explain: more than {max_paths} paths from {start!r} to {loss.node!r}; "
                                 "explain a node closer to the loss")
            paths.append([_factor(graph, u, v, graph.nx.edges[u, v, k]["index"]) for u, v, k in edge_path])
    return Explanation(loss.node, start, paths)


# -- summary: layers, shapes, parameters, FLOPs -------------------------------------
def _numel(shape, batch=1) -> int:
    return math.prod(batch if d is None else d for d in shape)


def flops(graph, node) -> int:
    """Floating-point operations of one node for one example (a multiply-add counts 2)."""
    data = graph.nx.nodes[node]
    args = [graph.nx.nodes[a] for a in graph.args(node)]
    op = data["op"]
    if op == "matmul":
        return 2 * _numel(data["shape"]) * args[0]["shape"][-1]
    if op in ("conv2d", "conv1d"):  # each output: in_channels · kh · kw multiply-adds
        weight = args[1]["shape"]
        return 2 * _numel(data["shape"]) * math.prod(weight[1:])
    if op == "conv_transpose2d":  # each input pixel is scattered through out_channels · kh · kw weights
        weight = args[1]["shape"]
        return 2 * _numel(args[0]["shape"]) * math.prod(weight[1:])
    if get_op(op).source or op in ("reshape", "transpose", "output", "assign"):
        return 0
    return _numel(data["shape"])


class Summary:
    """Per-layer rows (name, ops, output shape, params, FLOPs, shape formula); prints as a table."""

    COLUMNS = ("layer", "ops", "output", "params", "FLOPs", "output size")

    def __init__(self, rows):
        self.rows = rows

    @property
    def total_params(self) -> int:
        return sum(r["params"] for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r["FLOPs"] for r in self.rows)

    def _cells(self):
        for r in self.rows:
            yield [r["layer"], r["ops"], r["output"], f"{r['params']:,}", f"{r['FLOPs']:,}", r["output size"]]
        yield ["total", "", "", f"{self.total_params:,}", f"{self.total_flops:,}", ""]

    def __str__(self):
        cells = [list(self.COLUMNS), *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_markdown_(self):
        rows = [list(self.COLUMNS), ["---"] * len(self.COLUMNS), *self._cells()]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)


def _layer_of(graph, node) -> str:
    if graph.nx.nodes[node]["op"] == "param":
        return node.split(".")[0]
    return node.split("/")[0] if "/" in node else "(loss)"


def _size_formula(graph, node) -> str:
    """The textbook output-size formula of a convolution or pool, with this node's numbers put in."""
    data = graph.nx.nodes[node]
    if data["op"] not in symbolic.SHAPE_FORMULAS:
        return ""
    args = graph.args(node)
    size = graph.nx.nodes[args[0]]["shape"][-1]
    kernel = graph.nx.nodes[args[1]]["shape"][-1] if len(args) > 1 else None
    value = symbolic.shape_formula(data["op"], data["attrs"], size=size, kernel=kernel)
    return f"{symbolic.SHAPE_FORMULAS[data['op']][1]} = {value} (H = {size})"


def summary(loss: Tensor) -> Summary:
    """A table of the layers feeding ``loss``: ops, output shape, parameter and FLOP counts
    (per example), and the output-size formula of convolutions and pools.

    >>> import graphgrad as gg
    >>> g, loss, _ = gg.models.mlp(features=64, hidden=32)
    >>> gg.summary(loss).total_params
    2410
    """
    from .autodiff import topological_order

    graph = loss.graph
    nodes = topological_order(graph, nx.ancestors(graph.nx, loss.node) | {loss.node})
    rows: dict = {}
    for n in nodes:
        data = graph.nx.nodes[n]
        if data["op"] == "input":
            continue
        row = rows.setdefault(_layer_of(graph, n), {"layer": _layer_of(graph, n), "ops": [], "output": "",
                                                    "params": 0, "FLOPs": 0, "output size": ""})
        if data["op"] == "param":
            row["params"] += _numel(data["shape"])
            continue
        if data["op"] != "const" and data["op"] not in row["ops"]:
            row["ops"].append(data["op"])
        row["output"] = shape_text(data["shape"])
        row["FLOPs"] += flops(graph, n)
        row["output size"] = _size_formula(graph, n) or row["output size"]
    for row in rows.values():
        row["ops"] = ", ".join(row["ops"])
    return Summary(list(rows.values()))
