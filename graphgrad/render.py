"""Render: Graphviz drawings of the forward graph, the chain rule and the compiled step.

Forward nodes are boxes labelled by name, op and shape (the batch as N); layers
(name scopes such as ``fc1/…``) are clusters, or single boxes with
``collapse=True``.  With ``backward=True`` the gradient nodes that autodiff
added (tagged ``grad_of``) are drawn in red with dashed edges; the edge that
carries ∂L/∂v to the gradient of v's argument u is labelled by the local
derivative ∂v/∂u, as SymPy prints it.  Backward edges are laid out reversed
(``dir=back``), so the gradient flows up beside the forward graph it mirrors.
"""
from __future__ import annotations

import math
import re

import graphviz
import networkx as nx
import numpy as np

from . import symbolic
from .autodiff import grad, topological_order
from .errors import GraphError
from .ir import Graph, Tensor
from .ops import get_op

FILL = {"input": "#deebf7", "param": "#e5f5e0", "const": "#f0f0f0", "state": "#fff7bc", "assign": "#fee6ce",
        "output": "#f0f0f0"}
GRAD_FILL, GRAD_LINE = "#fde0dd", "#cb181d"
HIGHLIGHT = "#ff7f00"
# light to dark, for gradient magnitudes (ColorBrewer YlOrRd)
MAGNITUDE = ["#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026"]


def _shape(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def render(target, backward: bool = False, grads=None, rankdir: str = "TB", *, unroll: bool = False,
           collapse=False, formulas: bool = False, notation: str = "unicode", highlight=None, check=None,
           optimized: bool = False, **options) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of the graph ending at ``target``: a Tensor, a Graph or a Compiled step.

    - ``backward=True`` adds the chain-rule nodes of ∂target/∂params, each
      backward edge labelled by its local derivative (``notation="latex"`` for
      LaTeX text instead of Unicode).
    - ``grads`` (name -> array, e.g. the grads a compiled step returns) colours
      those nodes and the backward edges into their gradients by magnitude.
    - ``collapse=True`` draws each layer as one box (``collapse=2``: nested layers too).
    - ``formulas=True`` adds the SymPy formula of elementwise and fused nodes.
    - ``highlight="fc1.W"`` marks the path from that param to the target.
    - ``check={**feeds, **params}`` compares every node's compiled gradient
      with finite differences and colours nodes by relative error.
    - ``unroll=True`` draws a recurrent net through time (`render_bptt`).
    - a Compiled draws its graph before the passes (forward, backward and the
      optimizer's update rule); ``optimized=True`` draws it after them.

    ``.source`` gives the DOT text without the ``dot`` binary.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 3)); w = g.param("w", (3,))
    >>> dot = gg.render(gg.sigmoid(x * w).sum(), backward=True)
    >>> "σ(x)(1 − σ(x))" in dot.source
    True
    """
    if unroll:
        from .render_bptt import render_unrolled

        return render_unrolled(target, backward=backward, grads=grads, rankdir=rankdir, **options)
    graph, nodes, final = _resolve(target, backward, optimized)
    errors = gradient_errors(target, check) if check is not None else {}
    drawing = _Drawing(graph, nodes, final, collapse=int(collapse), formulas=formulas, notation=notation)
    drawing.mark_path(graph, target, highlight, backward)
    drawing.magnitudes(grads or {})
    drawing.errors = errors
    return drawing.to_dot(rankdir, **options)


def svg(target) -> str | None:
    """The SVG text of ``render(target)``, or ``None`` without the ``dot`` binary (for notebooks)."""
    try:
        return render(target)._repr_image_svg_xml()
    except graphviz.ExecutableNotFound:
        return None


# -- what to draw ---------------------------------------------------------------
def _resolve(target, backward, optimized):
    """``(graph, nodes, final_grads)``: the graph to draw, its nodes, and param -> its gradient node."""
    if isinstance(target, Graph):
        return target, set(target.nx.nodes), {}
    if hasattr(target, "derived_graph"):  # a Compiled step
        graph = target.optimized_graph if optimized else target.derived_graph
        return graph, set(graph.nx.nodes), {}
    if not isinstance(target, Tensor):
        raise GraphError(f"render draws a Tensor, a Graph or a Compiled, not {type(target).__name__}")
    graph = target.graph
    nodes = nx.ancestors(graph.nx, target.node) | {target.node}
    final = {}
    if backward:
        graph = graph.copy()  # the user's graph stays as it was
        wrt = [t for t in graph.params if t.node in nodes] or [t for t in graph.inputs if t.node in nodes
                                                                and t.dtype.startswith("float")]
        grads = grad(Tensor(graph, target.node), wrt)
        final = {w.node: g.node for w, g in zip(wrt, grads)}
        nodes |= {n for n, d in graph.nx.nodes(data=True) if d.get("grad_of") is not None}
    return graph, nodes, final


class _Drawing:
    """Groups, clusters, labels and styles of one drawing; ``to_dot`` writes it out."""

    def __init__(self, graph, nodes, final, collapse=0, formulas=False, notation="unicode"):
        self.graph, self.nx = graph, graph.nx
        self.order = topological_order(graph, nodes)
        self.final = {g: p for p, g in final.items()}  # gradient node -> its param
        self.collapse, self.formulas, self.notation = collapse, formulas, notation
        self.path, self.errors, self.colour, self.labelled = set(), {}, {}, set()
        self.scopes = {}
        for n in self.order:
            self.scopes[n] = self._scope(n)

    # -- structure ----------------------------------------------------------
    def is_grad(self, n) -> bool:
        return self.nx.nodes[n].get("grad_of") is not None

    def _scope(self, n) -> tuple:
        """The layer path of a node: its name scopes; a param sits in the layer that uses it."""
        data = self.nx.nodes[n]
        if data.get("grad_of") is not None and data["grad_of"] in self.nx:
            owner = data["grad_of"]
            return self.scopes.get(owner) or self._scope(owner)
        if get_op(data["op"]).source and data["op"] != "input":
            users = [self._forward_scope(v) for v in self.nx.successors(n) if not self.is_grad(v)]
            return _common_prefix(users) if users else ()
        return self._forward_scope(n)

    def _forward_scope(self, n) -> tuple:
        parts = n.split("/")[:-1]
        return tuple(parts)

    def group(self, n) -> str:
        """The drawn node standing for ``n``: itself, or its layer's box when collapsed."""
        scope = self.scopes[n]
        if self.collapse and scope:
            layer = "/".join(scope[: self.collapse])
            return f"∂{layer}" if self.is_grad(n) else layer
        return n

    # -- options ------------------------------------------------------------
    def mark_path(self, graph, target, highlight, backward):
        if highlight is None:
            return
        start = highlight.node if isinstance(highlight, Tensor) else highlight
        if start not in self.nx or not isinstance(target, Tensor):
            raise GraphError(f"cannot highlight {start!r}: it is not a node of graph {graph.name!r}")
        path = (nx.descendants(self.nx, start) | {start}) & (nx.ancestors(self.nx, target.node) | {target.node})
        self.path = {n for n in self.order if n in path or self.nx.nodes[n].get("grad_of") in path}

    def magnitudes(self, grads):
        """Colour each named node, and the gradient nodes made for it, by mean |gradient| on a log scale."""
        logs = {n: math.log10(float(np.abs(v).mean()) + 1e-30) for n, v in grads.items() if n in self.nx}
        if not logs:
            return
        lo, hi = min(logs.values()), max(logs.values())
        for n, value in logs.items():
            step = 0 if hi - lo < 1e-9 else (value - lo) / (hi - lo)
            self.colour[n] = (MAGNITUDE[round(step * (len(MAGNITUDE) - 1))], 10 ** value)
        for g, p in self.final.items():
            if p in self.colour:
                self.colour[g] = self.colour[p]

    # -- labels -------------------------------------------------------------
    def label(self, n) -> str:
        data = self.nx.nodes[n]
        prefix = "/".join(self.scopes[n]) + "/"
        name = n.split("/")[-1] if self.is_grad(n) else n.removeprefix(prefix) if self.scopes[n] else n
        if n in self.final:
            name = f"∂L/∂{self.final[n]}"
        elif self.is_grad(n) and data["op"] == "const" and data["grad_of"] not in self.graph.args(n):
            name = f"∂L/∂{data['grad_of'].split('/')[-1]} = 1"  # the seed of the chain rule
        head = data["op"] if re.sub(r"_\d+$", "", name) == data["op"] else f"{name}\n{data['op']}"
        lines = [f"{head} {_shape(data['shape'])}"]
        if self.formulas and get_op(data["op"]).elementwise and data["op"] != "const":
            lines.append("= " + _short(symbolic.unicode(self._formula(n)), 60))
        if n in self.colour:
            lines.append(f"|ḡ| = {self.colour[n][1]:.2e}")
        if n in self.errors:
            lines.append(f"rel. error {self.errors[n]:.1e}")
        return "\n".join(lines)

    def _formula(self, n):
        import sympy
        from .ops.elementwise import node_formula

        args = self.graph.args(n)
        expr, syms = node_formula(self.nx.nodes[n]["op"], len(args), self.nx.nodes[n]["attrs"])
        return expr.xreplace({s: sympy.Symbol(a.split("/")[-1]) for s, a in zip(syms, args)})

    def edge_label(self, u, v) -> str | None:
        """∂w/∂x on the edge that carries ∂L/∂w (made by w's vjp) into the gradient of x, an argument of w."""
        w, x = self.nx.nodes[u].get("grad_of"), self.nx.nodes[v].get("grad_of")
        if w is None or x is None or w == x or w not in self.nx or (w, x) in self.labelled:
            return None
        self.labelled.add((w, x))  # once per chain-rule step, though several nodes may read ∂L/∂w
        args = self.graph.args(w)
        if x not in args:
            return None
        data = self.nx.nodes[w]
        # binary ops read better with their arguments' names: ∂(a·b)/∂b = one_hot, not "a"
        names = [a.split("/")[-1] for a in args] if len(args) > 1 else None
        texts = [symbolic.local_text(data["op"], len(args), data["attrs"], i, self.notation, names)
                 for i, a in enumerate(args) if a == x]
        return _short(" + ".join(dict.fromkeys(texts)), 48)

    # -- styles -------------------------------------------------------------
    def node_style(self, n) -> dict:
        data = self.nx.nodes[n]
        style = {"fillcolor": FILL.get(data["op"], "#ffffff"), "color": "#404040"}
        if self.is_grad(n):
            style = {"fillcolor": GRAD_FILL, "color": GRAD_LINE, "fontcolor": "#67000d"}
        if n in self.final:
            style["penwidth"] = "2"
        if n in self.colour:
            style["fillcolor"] = self.colour[n][0]
        if n in self.errors:
            e = self.errors[n]
            style["fillcolor"] = "#a1d99b" if e < 1e-6 else "#fee391" if e < 1e-3 else "#fb6a4a"
        if n in self.path:
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    def edge_style(self, u, v) -> dict:
        if self.is_grad(v) and not self.is_grad(u):  # a saved forward value read by the backward pass
            return {"style": "dotted", "color": "#bdbdbd", "arrowsize": "0.5", "constraint": "false"}
        style = {}
        if self.is_grad(v):
            # laid out reversed: the gradient flows up the picture, mirroring the forward graph
            style = {"style": "dashed", "color": GRAD_LINE, "fontcolor": GRAD_LINE, "dir": "back"}
            label = self.edge_label(u, v)
            if label:
                style["label"] = label
            if v in self.colour:
                style.update(color=self.colour[v][0], penwidth="3")
        if u in self.path and v in self.path:
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    # -- output -------------------------------------------------------------
    def to_dot(self, rankdir="TB", **options) -> graphviz.Digraph:
        dot = graphviz.Digraph(
            self.graph.name,
            graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "newrank": "true", **options},
            node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
            edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#525252"})
        self._nodes(dot)
        self._edges(dot)
        return dot

    def _nodes(self, dot):
        tree: dict = {}  # scope tuple -> drawn nodes, in topological order
        drawn = {}
        for n in self.order:
            group = self.group(n)
            if group in drawn:
                drawn[group].append(n)
                continue
            drawn[group] = [n]
            scope = self.scopes[n][: self.collapse - 1 if self.collapse else None] if self.collapse else self.scopes[n]
            tree.setdefault(scope, []).append(group)
        self.drawn = drawn
        for scope in sorted(tree, key=len):
            for group in tree[scope]:
                members = drawn[group]
                attrs = self.node_style(members[-1]) if group == members[0] else self._group_style(group, members)
                label = self.label(group) if group == members[0] else self._group_label(group, members)
                self._cluster(dot, scope).node(group, label, **attrs)
        self._flush(dot)

    def _cluster(self, dot, scope):
        """The (nested) cluster subgraph for a layer scope; built lazily, attached by `_flush`."""
        if not hasattr(self, "_clusters"):
            self._clusters = {(): dot}
        if scope not in self._clusters:
            sub = graphviz.Digraph(name="cluster_" + "/".join(scope), graph_attr={
                "label": scope[-1], "style": "rounded,dashed", "color": "#969696", "fontcolor": "#525252",
                "fontsize": "11", "labeljust": "l"})
            self._cluster(dot, scope[:-1])
            self._clusters[scope] = sub
        return self._clusters[scope]

    def _flush(self, dot):
        # innermost first: graphviz copies a subgraph's body when it is attached
        for scope in sorted(self._clusters, key=len, reverse=True):
            if scope:
                self._clusters[scope[:-1]].subgraph(self._clusters[scope])

    def _group_label(self, group, members) -> str:
        ops = [self.nx.nodes[m]["op"] for m in members if not get_op(self.nx.nodes[m]["op"]).source]
        params = [m for m in members if self.nx.nodes[m]["op"] == "param"]
        count = sum(math.prod(self.nx.nodes[p]["shape"]) for p in params)
        kinds = ", ".join(dict.fromkeys(o for o in ops if o not in ("add", "reshape", "expr")))
        last = [m for m in members if not get_op(self.nx.nodes[m]["op"]).source][-1:] or members[-1:]
        lines = [group.split("/")[-1] if not group.startswith("∂") else "∂L/∂" + group[1:].split("/")[-1],
                 _short(kinds, 40), _shape(self.nx.nodes[last[0]]["shape"])]
        if count:
            lines.append(f"{count:,} params")
        return "\n".join(line for line in lines if line)

    def _group_style(self, group, members) -> dict:
        if group.startswith("∂"):
            return {"fillcolor": GRAD_FILL, "color": GRAD_LINE, "fontcolor": "#67000d"}
        style = {"fillcolor": "#f7fbff", "color": "#2171b5", "penwidth": "1.5"}
        if any(m in self.path for m in members):
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    def _edges(self, dot):
        seen = {}
        for v in self.order:
            for u, _, _ in sorted(self.nx.in_edges(v, data="index"), key=lambda e: e[2]):
                if u not in self.scopes:
                    continue
                a, b = self.group(u), self.group(v)
                if a == b:
                    continue
                style = self.edge_style(u, v)
                key = (a, b)
                if key in seen:  # one drawn edge per pair of boxes; collect the derivatives it carries
                    if "label" in style and style["label"] not in seen[key].get("label", ""):
                        seen[key]["label"] = _short(seen[key].get("label", "") + "\n" + style["label"], 120).strip()
                    continue
                seen[key] = style
        for (a, b), style in seen.items():
            if style.get("dir") == "back":
                dot.edge(b, a, **style)
            else:
                dot.edge(a, b, **style)


def _common_prefix(scopes) -> tuple:
    first = scopes[0]
    k = 0
    while k < len(first) and all(len(s) > k and s[k] == first[k] for s in scopes):
        k += 1
    return first[:k]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- gradient checking you can see ----------------------------------------------
def gradient_errors(loss, values: dict, entries: int = 6, eps: float = 1e-6, seed: int = 0) -> dict:
    """Relative error between the compiled gradient of ``loss`` and central differences, per node.

    ``values`` holds the feeds and the params.  Every float node between the
    params and the loss gets a zero perturbation input δ (v → v + δ), so one
    compiled function gives ∂loss/∂v for all of them; each is then probed at
    a few random entries by finite differences in float64.
    """
    from .runtime import compile

    if not isinstance(loss, Tensor):
        raise GraphError("check= needs a loss Tensor to differentiate")
    work = loss.graph.copy()
    values = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
              for k, v in values.items()}
    nodes = [n for n in topological_order(work, nx.ancestors(work.nx, loss.node) | {loss.node})
             if work.nx.nodes[n]["dtype"].startswith("float") and work.nx.nodes[n]["op"] not in ("const", "input")]
    shapes = _values_of(work, nodes, values)
    wrt = {}
    for n in nodes:
        wrt[n] = n if work.nx.nodes[n]["op"] == "param" else _perturbable(work, n, shapes[n]).node
    params = {k: v for k, v in values.items() if work.nx.nodes.get(k, {}).get("op") == "param"}
    feeds = {k: v for k, v in values.items() if k not in params}
    feeds |= {d: np.zeros(shapes[n]) for n, d in wrt.items() if d != n}
    f = compile(work.tensor(loss.node), wrt=list(wrt.values()), dtype="float64")
    value = compile(work.tensor(loss.node), dtype="float64")
    _, analytic = f(params, **feeds)
    rng = np.random.default_rng(seed)
    errors = {}
    for n, d in wrt.items():
        x = params[d] if d in params else feeds[d]
        worst = 0.0
        for i in rng.choice(x.size, min(entries, x.size), replace=False):
            idx = np.unravel_index(i, x.shape)
            old = x[idx]
            x[idx] = old + eps
            up = float(value(params, **feeds))
            x[idx] = old - eps
            down = float(value(params, **feeds))
            x[idx] = old
            numeric, exact = (up - down) / (2 * eps), float(np.asarray(analytic[d])[idx])
            worst = max(worst, abs(numeric - exact) / max(abs(numeric), abs(exact), 1e-8))
        errors[n] = worst
    return errors


def _values_of(graph, nodes, values):
    """The concrete shape of each node for these feeds (the batch size is known only now)."""
    from .runtime import compile

    params = {k: v for k, v in values.items() if graph.nx.nodes.get(k, {}).get("op") == "param"}
    feeds = {k: v for k, v in values.items() if k not in params}
    outs = compile([graph.tensor(n) for n in nodes], dtype="float64")(params, **feeds)
    return {n: np.shape(o) for n, o in zip(nodes, outs)}


def _perturbable(graph, n, shape) -> Tensor:
    """Add an input δ and route every use of ``n`` through ``n + δ``; ∂loss/∂δ is ∂loss/∂n."""
    data = graph.nx.nodes[n]
    users = list(graph.nx.out_edges(n, keys=True, data="index"))
    delta = graph.input(graph.unique_name(f"delta/{n}"), tuple(None if d is None else s
                                                                for d, s in zip(data["shape"], shape)), data["dtype"])
    shifted = graph.apply("add", [graph.tensor(n), delta], name=f"{n}+delta")
    for _, v, key, index in users:
        graph.nx.remove_edge(n, v, key)
        graph.nx.add_edge(shifted.node, v, index=index)
    return delta
