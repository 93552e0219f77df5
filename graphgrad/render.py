"""Render: Graphviz drawings of the forward graph, the chain rule and the compiled step.

Forward nodes are boxes labelled by name, op and shape (the batch as N); layers
(name scopes such as ``fc1/…``) are clusters, or single boxes with ``collapse=True``
(an encoder-decoder by levels, drawn as a U).  With ``backward=True`` the chain rule
is drawn beside the graph it mirrors: a red node ∂L/∂v for every node v the gradient
flows through, and for each argument u of v a dashed edge ∂L/∂v → ∂L/∂u labelled by
the local derivative ∂v/∂u in closed form, from v's registry entry (its SymPy formula,
or its ``local_derivative``), the text `explain` prints.  Backward edges are laid out
reversed (``dir=back``), so the gradient flows up the picture.  A compiled step is
drawn as built: the gradient ops autodiff added (the edge by which ∂L/∂v enters v's vjp
labelled by the same local derivative, and the node it makes named for the gradient it
holds, ∂L/∂fc1.W), and the optimizer's update with its hyper-parameters (lr = 0.01) and
state (momentum of fc1.W) named.  `Drawing.save` writes .svg, .png, .pdf or .dot, as the
file name says.
"""
from __future__ import annotations

import math
import pathlib
import re
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from . import lazy
from .autodiff import grad, topological_order
from .errors import GraphError
from .ir import Graph, Tensor, shape_text
from .ops import get_op

if TYPE_CHECKING:
    from .drawing import Drawing

# imported when something is drawn, not by ``import graphgrad``
graphviz = lazy.module("graphviz")
symbolic = lazy.module("graphgrad.symbolic")

FILL = {"input": "#deebf7", "param": "#e5f5e0", "const": "#f0f0f0", "state": "#fff7bc", "assign": "#fee6ce",
        "output": "#f0f0f0"}
GRAD_FILL, GRAD_LINE = "#fde0dd", "#cb181d"
DOWNSAMPLING = {"maxpool2d", "avgpool2d"}
UPSAMPLING = {"conv_transpose2d", "upsample_nearest2d", "upsample_bilinear2d"}
HIGHLIGHT = "#ff7f00"
# light to dark, for gradient magnitudes (ColorBrewer YlOrRd)
MAGNITUDE = ["#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026"]  # YlOrRd from its 3rd shade: the lighter ones vanish on white as edges


def render(target, backward: bool = False, grads=None, rankdir: str = "TB", *, unroll: bool = False,
           collapse=False, formulas: bool = False, notation: str = "unicode", highlight=None, check=None,
           optimized: bool = False, **options) -> Drawing:
    """A `Drawing` (a ``graphviz.Digraph`` with ``save(path)``) of the graph ending at ``target``:
    a Tensor, a Graph or a Compiled step.

    - ``backward=True`` adds the chain rule of ∂target/∂params: one red node ∂L/∂v beside
      every node v the gradient flows through, and for every argument u of v an edge
      ∂L/∂v → ∂L/∂u labelled by the local derivative ∂v/∂u from v's op (``notation="latex"``
      for LaTeX text instead of Unicode).
    - ``grads`` colours the gradients and the backward edges into them by magnitude (mean |ḡ|, on a
      log scale, light to dark; the pen widens with it), given either of:

      * the values to evaluate at, ``{**params, **feeds}`` (as ``check=`` takes them; told apart by
        naming the graph's inputs): the gradient of ``target`` at every node the chain rule draws is
        computed, so a vanishing gradient shows along the whole chain (through time too, in an
        unrolled RNN); in a compiled step's drawing, every node of its backward pass that carries
        (a part of) some ∂L/∂x out of a vjp is evaluated and coloured (seeded by 1, as ∂L/∂L is);
      * gradients by node name, e.g. the grads dict ``gg.compile(loss, wrt=g.params)(params, **feeds)``
        returns: those nodes are coloured.
    - ``collapse=True`` draws each layer as one box (``collapse=2``: nested layers too);
      boxes keep the annotations of what they hold (largest |ḡ|, worst error, highlight).
    - ``formulas=True`` adds the SymPy formula of elementwise and fused nodes, and in a compiled
      step the textbook form of what a structural op's vjp makes (∂L/∂fc1.W = xᵀ·ḡ).
    - ``highlight="fc1.W"`` marks the path from that param to the target.
    - ``check={**feeds, **params}`` compares every node's compiled gradient
      with finite differences and colours nodes by relative error.
    - ``unroll=True`` draws a recurrent net through time as a textbook does (`render_bptt`),
      ``expand=True`` opens one LSTM cell; ``grads`` there gives the norms ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖)
      of every step: ``{**params, **feeds}`` to compute them at, or the norms themselves
      (`gradient_norms_over_time`'s array, or ``{"h": ..., "c": ...}``); a compiled step's grads
      alone name the shared weights' gradients only.
    - a Compiled draws its graph before the passes (forward, the gradient ops autodiff
      added, and the optimizer's update rule); ``optimized=True`` draws it after them.

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
    graph, nodes = _resolve(target, optimized)
    errors = gradient_errors(target, check) if check is not None else {}
    drawing = _Drawing(graph, nodes, collapse=int(collapse), formulas=formulas, notation=notation)
    drawing.hyper = _hyper_parameters(getattr(target, "optimizer", None))
    if backward and isinstance(target, Tensor):
        drawing.chain_rule(target.node)
    drawing.mark_path(graph, target, highlight)
    if grads is not None and holds_feeds(graph, grads):
        grads = drawing.gradients_at(target, grads)
    drawing.magnitudes(grads or {})
    drawing.errors = errors
    return drawing.to_dot(rankdir, **options)


def save(target, path, **options) -> str:
    """``render(target, **options).save(path)``: the format from the extension (.svg .png .pdf .dot)."""
    from .drawing import Drawing

    drawing = target if isinstance(target, Drawing) else render(target, **options)
    if pathlib.Path(path).suffix.lstrip(".").lower() not in Drawing.FORMATS:
        raise GraphError(f"cannot tell the format of {str(path)!r}: its extension must be one of "
                         + ", ".join("." + f for f in Drawing.FORMATS))
    return drawing.save(path)


def svg(target) -> str | None:
    """The SVG text of ``render(target)``, or ``None`` without the ``dot`` binary (for notebooks)."""
    try:
        return render(target)._repr_image_svg_xml()
    except graphviz.ExecutableNotFound:
        return None


# -- what to draw ---------------------------------------------------------------
def _resolve(target, optimized=False):
    """``(graph, nodes)``: the graph to draw and its nodes."""
    if isinstance(target, Graph):
        return target, set(target.nx.nodes)
    if hasattr(target, "derived_graph"):  # a Compiled step
        graph = target.optimized_graph if optimized else target.derived_graph
        return graph, set(graph.nx.nodes)
    if not isinstance(target, Tensor):
        raise GraphError(f"render draws a Tensor, a Graph or a Compiled, not {type(target).__name__}")
    return target.graph, nx.ancestors(target.graph.nx, target.node) | {target.node}


def chain_rule_edges(graph, target: str, nodes) -> list:
    """``(v, u, index)`` for every step of the chain rule from ``target`` back to its params:
    u is argument ``index`` of v, and ∂L/∂v flows to ∂L/∂u through v's vjp.

    With no params, the float inputs are differentiated instead.
    """
    G = graph.nx
    wrt = [n for n in nodes if G.nodes[n]["op"] == "param" and G.nodes[n]["attrs"].get("trainable", True)] or [
        n for n in nodes if G.nodes[n]["op"] == "input" and G.nodes[n]["dtype"].startswith("float")]
    reach = set().union(*(nx.descendants(G, w) | {w} for w in wrt)) if wrt else set()
    on_path = (nx.ancestors(G, target) | {target}) & reach
    edges = []
    for v in reversed(topological_order(graph, on_path)):
        op = get_op(G.nodes[v]["op"])
        for u, _, index in sorted(G.in_edges(v, data="index"), key=lambda e: e[2]):
            if u in on_path and op.vjp(index) is not None:
                edges.append((v, u, index))
    return edges


def holds_feeds(graph, values) -> bool:
    """Whether ``values`` (a mapping) names an input of ``graph``: values to evaluate at, not gradients."""
    return isinstance(values, dict) and any(graph.nx.nodes.get(k, {}).get("op") == "input" for k in values)


def gradients_at(target: Tensor, nodes, values: dict, graph=None) -> dict:
    """{node: ∂target/∂node} at ``values`` (``{**params, **feeds}``), for nodes of ``graph`` (target's graph
    unless given: a drawing's copy of it, e.g. a recurrent net unrolled), each the total derivative."""
    if not isinstance(target, Tensor):
        raise GraphError("grads={**params, **feeds} needs a loss Tensor to differentiate")
    work = (graph or target.graph).copy()
    grads = grad(work.tensor(target.node), [work.tensor(n) for n in nodes])
    return dict(zip(nodes, evaluate(work, grads, values)))


def evaluate(graph, tensors, values: dict, **options) -> list:
    """The values of ``tensors`` (of ``graph``) at ``values`` (``{**params, **feeds}``). The params are
    copies: a training graph's call updates running statistics in place, and drawing must not."""
    from .runtime import compile

    kind = {k: graph.nx.nodes.get(k, {}).get("op") for k in values}
    params = {k: np.array(v) for k, v in values.items() if kind[k] == "param"}
    feeds = {k: v for k, v in values.items() if kind[k] == "input"}
    return compile(tensors, **options)(params, **feeds)


def _grad_id(v: str) -> str:
    """The drawn node of ∂L/∂v (forward names start with a letter, so this never clashes)."""
    return "∂" + v


class _Drawing:
    """Groups, clusters, labels and styles of one drawing; ``to_dot`` writes it out.

    Gradient nodes are either the chain rule's ∂L/∂v (``chain_rule``) or, in a compiled
    step's graph, the nodes autodiff added (tagged ``grad_of``).
    """

    def __init__(self, graph, nodes, collapse=0, formulas=False, notation="unicode"):
        self.graph, self.nx = graph, graph.nx
        self.order = topological_order(graph, nodes)
        self.collapse, self.formulas, self.notation = collapse, formulas, notation
        self.path, self.errors, self.colour, self.labelled = set(), {}, {}, set()
        self._exits = {}  # a node -> the nodes its vjp made that carry gradients out (`_vjp_exits`)
        self.grad_of = {n: self.nx.nodes[n]["grad_of"] for n in self.order
                        if self.nx.nodes[n].get("grad_of") is not None}
        self.chain, self.seed, self.final = [], None, {}  # chain-rule edges, ∂L/∂L, ∂L/∂param -> param
        self.hyper = {}  # a value -> the optimizer hyper-parameter it is (lr, momentum, ...)
        self.levels, self.split = {}, set()  # collapsed: node -> its encoder-decoder level; nodes drawn alone
        self.scopes = {}
        for n in self.order:
            self.scopes[n] = self._scope(n)

    def chain_rule(self, target):
        """Add ∂L/∂v for every node the gradient flows through, and the edges between them."""
        self.chain = chain_rule_edges(self.graph, target, self.order)
        mirrored = [target] + [u for _, u, _ in self.chain]
        for v in dict.fromkeys(mirrored):
            d = _grad_id(v)
            self.order.append(d)
            self.grad_of[d] = v
            self.scopes[d] = self.scopes[v]
            if self.nx.nodes[v]["op"] == "param":
                self.final[d] = v
        self.seed = _grad_id(target)

    # -- structure ----------------------------------------------------------
    def is_grad(self, n) -> bool:
        return n in self.grad_of

    def data(self, n) -> dict:
        """The node data of ``n``; ∂L/∂v has the op, shape and dtype of v."""
        return self.nx.nodes[n] if n in self.nx else self.nx.nodes[self.grad_of[n]]

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
        """The drawn node standing for ``n``: itself, or its layer's (or level's) box when collapsed."""
        scope = self.scopes[n]
        if self.collapse and scope and n not in self.split:
            layer = self.levels.get(self.grad_of.get(n, n)) or "/".join(scope[: self.collapse])
            return f"∂{layer}" if self.is_grad(n) else layer
        return n

    def _levels(self) -> dict:
        """An encoder-decoder (a layer that both down- and up-samples: a U-Net) by levels: node -> its box,
        ``<layer>/down 32×32``, ``<layer>/bottom 8×8`` or ``<layer>/up 32×32``, to be drawn as a U."""
        levels = {}
        for layer in {s[:1] for s in self.scopes.values() if s}:
            members = [n for n in self.order if n in self.nx and self.scopes[n][:1] == layer and not self.is_grad(n)]
            ups = [n for n in members if self.nx.nodes[n]["op"] in UPSAMPLING]
            if not ups or not any(self.nx.nodes[n]["op"] in DOWNSAMPLING for n in members):
                continue
            decoder = set().union(*(nx.descendants(self.nx, u) | {u} for u in ups))
            sizes = {n: self.nx.nodes[n]["shape"][2:] for n in members if len(self.nx.nodes[n]["shape"]) == 4
                     and self.nx.nodes[n]["shape"][0] is None}  # the maps, not a bias reshaped to broadcast
            lowest = min(math.prod(size) for size in sizes.values())
            for n, (h, w) in sizes.items():
                side = "bottom" if h * w == lowest else "up" if n in decoder else "down"
                levels[n] = f"{layer[0]}/{side} {h}×{w}"
            for n in reversed(members):  # a param (or its reshape) sits in the level of the op that reads it
                users = [levels[v] for v in self.nx.successors(n) if v in levels]
                if n not in levels and users:
                    levels[n] = users[0]
        return levels

    def _level_edge(self, a, b) -> dict:
        """The drawn edge a -> b between levels of a U: the skip (same size) is labelled; the way up leaves
        the rows to `_u_shape`."""
        boxes = set(self.levels.values())
        if a.lstrip("∂") not in boxes or b.lstrip("∂") not in boxes:
            return {}
        (side_a, size_a), (side_b, size_b) = (x.rsplit("/", 1)[-1].split(" ") for x in (a, b))
        if size_a == size_b and side_a == "down" and side_b == "up" and not a.startswith("∂"):
            return {"label": "skip", "fontcolor": "#2171b5", "color": "#2171b5", "penwidth": "2"}
        area = lambda size: math.prod(int(d) for d in size.split("×"))  # noqa: E731
        return {"constraint": "false"} if area(size_b) > area(size_a) else {}

    def _flows_down(self, a, b) -> bool:
        """Whether the gradient flowing from box ``a`` to box ``b`` of a U runs down its mirror image (∂up 32×32
        -> ∂up 16×16) or along a row (the skip's gradient, ∂up -> ∂down, left to right as `_u_shape` orders
        the row): such an edge is drawn the way it flows, not reversed."""
        boxes = set(self.levels.values())
        if not (a.startswith("∂") and b.startswith("∂") and a[1:] in boxes and b[1:] in boxes):
            return False
        area = lambda box: math.prod(int(d) for d in box.rsplit(" ", 1)[-1].split("×"))  # noqa: E731
        return area(b) <= area(a)

    def _u_shape(self, dot, boxes):
        """Each level of an encoder-decoder on one row, in the order the pipeline runs: the encoder's box,
        the decoder's, then the mirror image drawn by their gradients (∂up beside up, ∂down at the far
        right), so the gradient of the loss enters next to the output and leaves at the far side."""
        rows: dict = {}
        for box in boxes:
            side, size = box.rsplit("/", 1)[-1].split(" ")
            rows.setdefault((box.lstrip("∂").rsplit("/", 1)[0], size), {})[("∂" if box[0] == "∂" else "") + side] = box
        for row in rows.values():
            ordered = [row[k] for k in ("down", "bottom", "up", "∂up", "∂bottom", "∂down") if k in row]
            with dot.subgraph() as same:
                same.attr(rank="same")
                for a, b in zip(ordered, ordered[1:]):
                    same.edge(a, b, style="invis")

    # -- options ------------------------------------------------------------
    def mark_path(self, graph, target, highlight):
        if highlight is None:
            return
        start = highlight.node if isinstance(highlight, Tensor) else highlight
        if start not in self.nx or not isinstance(target, Tensor):
            raise GraphError(f"cannot highlight {start!r}: it is not a node of graph {graph.name!r}")
        path = (nx.descendants(self.nx, start) | {start}) & (nx.ancestors(self.nx, target.node) | {target.node})
        self.path = {n for n in self.order if n in path or self.grad_of.get(n) in path}

    def gradients_at(self, target, values) -> dict:
        """The gradient at ``values`` of every node the chain rule draws, by its drawn ∂L/∂v (and of each
        param by its name as well, as a compiled step's grads name them); without the chain rule, of the
        params drawn. In a compiled step's graph: the value of every node that carries a gradient out of
        a vjp (`carried_at`)."""
        if not isinstance(target, Tensor):
            return self.carried_at(values)
        mirrored = {d: v for d, v in self.grad_of.items() if d not in self.nx}
        params = [n for n in self.order if n in self.nx and self.nx.nodes[n]["op"] == "param"
                  and self.nx.nodes[n]["attrs"].get("trainable", True) and (not mirrored or _grad_id(n) in mirrored)]
        at = gradients_at(target, list(dict.fromkeys([*mirrored.values(), *params])), values)
        return {d: at[v] for d, v in mirrored.items()} | {p: at[p] for p in params}

    def carried_at(self, values) -> dict:
        """{n: value at ``values``} for the nodes of a compiled step's backward pass that carry (a part of)
        some ∂L/∂x out of a vjp, with the chain rule seeded by 1 (plain SGD seeds it with lr), so that
        they read as gradients."""
        work = self.graph.copy()
        for n in self.grad_of:
            if self._is_seed(n):
                work.nx.nodes[n]["attrs"] = {**work.nx.nodes[n]["attrs"], "value": 1.0}
        carriers = sorted({n for w in set(self.grad_of.values()) if w in self.nx for n in self._vjp_exits(w)})
        return dict(zip(carriers, evaluate(work, [work.tensor(n) for n in carriers], values)))

    def magnitudes(self, grads):
        """Colour each named node (a drawn ∂L/∂v too), and the gradient nodes made for it, by mean
        |gradient| on a log scale."""
        means = {n: float(np.abs(v).mean()) for n, v in grads.items() if n in self.nx or n in self.grad_of}
        logs = [math.log10(m) for m in means.values() if m > 0]  # an exact zero (a branch not taken) is
        lo, hi = min(logs, default=0), max(logs, default=0)      # the lightest, and stretches no scale
        for n, mean in means.items():
            step = 0 if hi - lo < 1e-9 or mean == 0 else (math.log10(mean) - lo) / (hi - lo)
            self.colour[n] = (MAGNITUDE[round(step * (len(MAGNITUDE) - 1))], mean)
        for g, p in self.final.items():
            if p in self.colour:
                self.colour[g] = self.colour[p]
        for g, p in self.grad_of.items():  # a compiled step's final gradient nodes
            if self.nx.nodes.get(g, {}).get("op") == "output" and p in self.colour:
                self.colour[g] = self.colour[p]

    # -- labels -------------------------------------------------------------
    def short(self, n) -> str:
        """``n`` without its layer's prefix (the cluster shows the layer)."""
        prefix = "/".join(self.scopes[n]) + "/"
        return n.removeprefix(prefix) if self.scopes[n] else n

    def label(self, n) -> str:
        data = self.data(n)
        if n in self.nx and self.is_grad(n):
            name = self._carries(n) or n.split("/")[-1]
        elif self.is_grad(n):
            name = f"∂L/∂{self.short(self.grad_of[n])}" + (" = 1" if n == self.seed else "")
        else:
            name = self.short(n)
        if n in self.final:
            name = f"∂L/∂{self.final[n]}"
        elif self._is_seed(n):
            # the seed of the chain rule: 1, or lr when plain SGD folds its step size into it
            value = _const_value(data)
            hyper = self.hyper.get(float(value))
            name = f"∂L/∂{data['grad_of'].split('/')[-1]} = " + (f"{hyper} = {value}" if hyper else value)
        head = data["op"] if re.sub(r"_\d+$", "", name) == data["op"] else f"{name}\n{data['op']}"
        if self.is_grad(n) and n not in self.nx:
            head = name
        lines = [head if n == self.seed else f"{head} {shape_text(data['shape'])}"]
        value = _const_value(data)
        if value is not None and not self.is_grad(n):
            hyper = self.hyper.get(float(data["attrs"]["value"]))
            lines = [f"{hyper} = {value}" if hyper else value]
        elif data["op"] == "state" and not self.is_grad(n):
            lines = [_state_name(n), f"state {shape_text(data['shape'])}"]
        if self.formulas and n in self.nx and self._structural_vjp(n):
            w = self.grad_of[n]  # its local_derivative is the vjp as a textbook writes it, ḡ applied
            lines.append("= " + _short(" + ".join(self.local_text(w, i) for i in self._vjp_exits(w)[n]), 60))
        elif self.formulas and n in self.nx and get_op(data["op"]).elementwise and data["op"] != "const":
            lines.append("= " + _short(symbolic.unicode(self._formula(n)), 60))
        if n in self.colour:
            lines.append(f"|ḡ| = {self.colour[n][1]:.2e}")
        if n in self.errors:
            lines.append(f"rel. error {self.errors[n]:.1e}")
        return "\n".join(lines)

    def _is_seed(self, n) -> bool:
        """Whether ``n`` is the scalar constant autodiff seeded a compiled step's chain rule with."""
        data = self.data(n)
        return (n in self.nx and self.is_grad(n) and _const_value(data) is not None
                and data["grad_of"] not in self.graph.args(n))

    def _formula(self, n):
        import sympy
        from .ops.elementwise import node_formula

        args = self.graph.args(n)
        expr, syms = node_formula(self.nx.nodes[n]["op"], len(args), self.nx.nodes[n]["attrs"])
        return expr.xreplace({s: sympy.Symbol(a.split("/")[-1]) for s, a in zip(syms, args)})

    def local_text(self, v, index) -> str:
        """∂v/∂(argument ``index`` of v) as text, the arguments named after their nodes."""
        data = self.nx.nodes[v]
        # binary ops read better with their arguments' names: ∂(a·b)/∂b = one_hot, not "a"
        names = symbolic.operand_names(self.graph, v)
        return symbolic.local_text(data["op"], len(self.graph.args(v)), data["attrs"], index, self.notation, names)

    def edge_label(self, u, v) -> str | None:
        """In a compiled step's graph: ∂w/∂x on the edge that carries ∂L/∂w (or the seed) into the nodes w's
        vjp made (v) towards the gradient of x, an argument of w; once per argument."""
        w = self.grad_of.get(v)
        if w is None or w not in self.nx or (self.grad_of.get(u) == w and not self._is_seed(u)):
            return None
        fed, reach, todo = self._vjp_exits(w), {v}, [v]
        while todo:  # the nodes of w's vjp that v leads to
            todo += [s for s in self.nx.successors(todo.pop()) if self.grad_of.get(s) == w and s not in reach]
            reach.update(todo)
        indices = sorted({i for n in reach if n in fed for i in fed[n]} - {i for o, i in self.labelled if o == w})
        self.labelled |= {(w, i) for i in indices}
        texts = [self.local_text(w, i) for i in indices]
        return _short(" + ".join(dict.fromkeys(texts)), 48) if texts else None

    def _carries(self, n) -> str | None:
        """What a node of a compiled step's backward pass that leaves its vjp holds, by name: ∂L/∂x for the
        argument x of the node it differentiates, or a part of it when x feeds several nodes."""
        w = self.grad_of[n]
        if w not in self.nx or self.nx.nodes[w]["op"] == "output":
            return None
        indices = self._vjp_exits(w).get(n)
        if not indices:
            return None
        xs = dict.fromkeys(self.graph.args(w)[i] for i in indices)
        whole = len(xs) == 1 and self._parts(next(iter(xs))) == 1
        return ("" if whole else "part of ") + ", ".join(f"∂L/∂{self.short(x)}" for x in xs)

    def _structural_vjp(self, n) -> bool:
        """Whether ``n`` is what the vjp of a structural op (matmul, conv, ...) gives an argument."""
        w = self.grad_of.get(n)
        return (w in self.nx and not get_op(self.nx.nodes[w]["op"]).elementwise and self.nx.nodes[w]["op"] != "output"
                and bool(self._vjp_exits(w).get(n)))

    def _parts(self, x) -> int:
        """How many contributions to ∂L/∂x the vjps of x's consumers make (they are added up)."""
        return sum(self.graph.args(v)[i] == x for v in set(self.nx.successors(x))
                   for indices in self._vjp_exits(v).values() for i in indices)

    def _vjp_exits(self, w) -> dict:
        """The nodes w's vjp made that leave it (its contributions), each with the indices of the arguments
        of w whose gradient it is: told by where it goes (the vjp of that argument, or its gradient
        output), else by its shape."""
        if w in self._exits:
            return self._exits[w]
        group = {n for n, o in self.grad_of.items() if o == w and n in self.nx}
        args, op = self.graph.args(w), get_op(self.nx.nodes[w]["op"])
        differentiable = [i for i in range(len(args)) if op.vjp(i) is not None]
        exits = {}
        for n in group:
            outside = [s for s in self.nx.successors(n) if s not in group]
            if not outside or self._is_seed(n):
                continue
            to = {self.grad_of.get(s) for s in outside} | {
                self.nx.nodes[s]["attrs"].get("key", "").removeprefix("grad:") for s in outside
                if self.nx.nodes[s]["op"] == "output"}
            exits[n] = ([i for i in differentiable if args[i] in to]
                        or [i for i in differentiable if self.nx.nodes[args[i]]["shape"] == self.nx.nodes[n]["shape"]])
        self._exits[w] = exits
        return exits

    # -- styles -------------------------------------------------------------
    def node_style(self, n) -> dict:
        data = self.data(n)
        style = {"fillcolor": FILL.get(data["op"], "#ffffff"), "color": "#404040"}
        if self.is_grad(n):
            style = {"fillcolor": GRAD_FILL, "color": GRAD_LINE, "fontcolor": "#67000d"}
        if n in self.final:
            style["penwidth"] = "2"
        if n in self.colour:
            style.update(_magnitude_fill(self.colour[n][0]))
        if n in self.errors:
            style["fillcolor"] = _error_fill(self.errors[n])
        if n in self.path:
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    def edge_style(self, u, v, label=None) -> dict:
        if self.is_grad(v) and not self.is_grad(u):  # a saved forward value read by the backward pass
            return {"style": "dotted", "color": "#bdbdbd", "arrowsize": "0.5", "constraint": "false"}
        style = {}
        if self.is_grad(v):
            # laid out reversed: the gradient flows up the picture, mirroring the forward graph
            style = {"style": "dashed", "color": GRAD_LINE, "fontcolor": GRAD_LINE, "dir": "back"}
            label = label or self.edge_label(u, v)
            if label:
                style["label"] = _short(label, 48)
            if v in self.colour:
                colour = self.colour[v][0]  # and the pen widens with the gradient: vanishing ones are thin
                style.update(color=colour, penwidth=f"{1 + 3 * MAGNITUDE.index(colour) / (len(MAGNITUDE) - 1):.1f}")
        if u in self.path and v in self.path:
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    # -- output -------------------------------------------------------------
    def edges(self) -> list:
        """``(u, v, label)`` for every edge to draw: the graph's, then the chain rule's."""
        drawn = set(self.order)
        out = [(u, v, None) for v in self.order if v in self.nx
               for u, _, _ in sorted(self.nx.in_edges(v, data="index"), key=lambda e: e[2]) if u in drawn]
        out += [(_grad_id(v), _grad_id(u), self.local_text(v, index)) for v, u, index in self.chain]
        return out

    def to_dot(self, rankdir="TB", **options) -> Drawing:
        from .drawing import Drawing

        if any(self.nx.nodes[n].get("time") is not None for n in self.order if n in self.nx):
            # the steps of an unrolled recurrent layer are built in time order: little crossing
            # minimisation keeps them so (left to right), where a full one moved the last step first
            options = {"mclimit": "0.01", **options}
        dot = Drawing(
            self.graph.name,
            graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "newrank": "true", **options},
            node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
            edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#525252"})
        self.levels = self._levels() if self.collapse else {}
        self.split = self._unboxed()
        self._nodes(dot)
        self._edges(dot)
        self._u_shape(dot, {self.group(n) for n in self.order if self.grad_of.get(n, n) in self.levels})
        return dot

    def _unboxed(self) -> set:
        """Nodes drawn one by one inside their layer's cluster although collapsed: the ops of a layer that
        also holds nested layers drawn as boxes (they run before and after those, so one box for them would
        close a cycle the graph does not have), then any box that still closes one."""
        if not self.collapse:
            return set()
        scopes = set(self.scopes.values())
        split = {n for n, s in self.scopes.items()
                 if 0 < len(s) < self.collapse and any(len(o) > len(s) and o[: len(s)] == s for o in scopes)}
        while True:
            self.split = split
            boxes = nx.DiGraph((self.group(u), self.group(v)) for u, v, _ in self.edges())
            boxes.remove_edges_from(nx.selfloop_edges(boxes))
            cyclic = {b for c in nx.strongly_connected_components(boxes) if len(c) > 1 for b in c}
            members = {n for n in self.order if self.group(n) in cyclic and self.group(n) != n}
            if not members:
                return split
            split |= members

    def _nodes(self, dot):
        tree: dict = {}  # scope tuple -> drawn nodes, in topological order
        drawn = {}
        for n in self.order:
            group = self.group(n)
            if group in drawn:
                drawn[group].append(n)
                continue
            drawn[group] = [n]
            # the gradients of a U's levels sit outside its cluster: inside it Graphviz broke the row order
            # `_u_shape` asks for (the top row came out up, ∂up, down, ∂down)
            level_gradient = group.startswith("∂") and group[1:] in self.levels.values()
            scope = (self.scopes[n] if group == n else () if level_gradient
                     else tuple(group.lstrip("∂").split("/")[:-1]))
            tree.setdefault(scope, []).append(group)
        self.drawn = drawn
        for scope in sorted(tree, key=len):
            for group in tree[scope]:
                members = drawn[group]
                boxed = group != members[0]
                attrs = self._group_style(group, members) if boxed else self.node_style(group)
                label = self._group_label(group, members) if boxed else self.label(group)
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
        forward = [self.data(m) for m in members]
        ops = [d["op"] for d in forward if not get_op(d["op"]).source]
        params = [m for m in members if m in self.nx and self.nx.nodes[m]["op"] == "param"]
        count = sum(math.prod(self.nx.nodes[p]["shape"]) for p in params)
        kinds = ", ".join(dict.fromkeys(o for o in ops if o not in ("add", "reshape", "expr")))
        computed = [d for d in forward if not get_op(d["op"]).source] or forward
        last = [d for d in computed if d["shape"][:1] == (None,)][-1:] or computed[-1:]  # a batch, not a bias
        lines = [group.split("/")[-1] if not group.startswith("∂") else "∂L/∂" + group[1:].split("/")[-1],
                 _short(kinds, 40), shape_text(last[0]["shape"])]
        if count:
            lines.append(f"{count:,} params")
        coloured = [self.colour[m][1] for m in members if m in self.colour]
        if coloured:
            lines.append(f"max |ḡ| = {max(coloured):.2e}")
        checked = [self.errors[m] for m in members if m in self.errors]
        if checked:
            lines.append(f"worst rel. error {max(checked):.1e} ({len(checked)} checked)")
        return "\n".join(line for line in lines if line)

    def _group_style(self, group, members) -> dict:
        """A layer's box: the colour of its largest gradient and of its worst gradient check."""
        if group.startswith("∂"):
            style = {"fillcolor": GRAD_FILL, "color": GRAD_LINE, "fontcolor": "#67000d"}
        else:
            style = {"fillcolor": "#f7fbff", "color": "#2171b5", "penwidth": "1.5"}
        coloured = [self.colour[m] for m in members if m in self.colour]
        if coloured:
            style.update(_magnitude_fill(max(coloured, key=lambda c: c[1])[0]))
        checked = [self.errors[m] for m in members if m in self.errors]
        if checked:
            style["fillcolor"] = _error_fill(max(checked))
        if any(m in self.path for m in members):
            style.update(color=HIGHLIGHT, penwidth="3")
        return style

    def _edges(self, dot):
        seen = {}
        for u, v, label in self.edges():
            a, b = self.group(u), self.group(v)
            if a == b:
                continue
            style = self.edge_style(u, v, label)
            key = (a, b) if (a, b) != (u, v) else (a, b, len(seen))  # x * x: two edges; boxes: one
            if key in seen:  # one drawn edge per pair of boxes: the derivatives and the widest pen it carries
                old = seen[key]
                if "label" in style and style["label"] not in old.get("label", ""):
                    old["label"] = _short(old.get("label", "") + "\n" + style["label"], 120).strip()
                if float(style.get("penwidth", 1)) > float(old.get("penwidth", 1)):
                    old.update(color=style["color"], penwidth=style["penwidth"])
                continue
            if self._flows_down(a, b):
                del style["dir"]
            seen[key] = style | self._level_edge(*((b, a) if style.get("dir") == "back" else (a, b)))
        for (a, b, *_), style in seen.items():
            if style.get("dir") == "back":
                dot.edge(b, a, **style)
            else:
                dot.edge(a, b, **style)


def _magnitude_fill(colour: str) -> dict:
    """A node filled by gradient magnitude; white text on the three darkest reds, so it stays readable."""
    return {"fillcolor": colour, **({"fontcolor": "white"} if colour in MAGNITUDE[-3:] else {})}


def _error_fill(error: float) -> str:
    return "#a1d99b" if error < 1e-6 else "#fee391" if error < 1e-3 else "#fb6a4a"


def _hyper_parameters(optimizer) -> dict:
    """value -> "lr", "momentum", ... for an optimizer's numeric settings (both names when two share a value),
    and "1 − beta1" for the complements an update rule computes (Adam's (1 − β₁)·g)."""
    names: dict = {}
    fields = vars(optimizer).items() if optimizer is not None else ()
    settings = [(key, float(value)) for key, value in fields
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "clip_norm"]
    for key, value in settings:
        names[value] = f"{names[value]} = {key}" if value in names else key
    for key, value in settings:  # a complement never renames a setting: 1 − lr may be beta1's 0.9
        if 0 < value < 1:
            names.setdefault(1 - value, f"1 − {key}")
    return names


def _state_name(node: str) -> str:
    """An optimizer's state by what it is: "momentum.momentum/fc1.W" -> "momentum of fc1.W"."""
    found = re.fullmatch(r"[^./]+\.([^/]+)/(.+)", node)
    if found:
        return f"{found.group(1)} of {found.group(2)}"
    return {"t": "step count t"}.get(node.rsplit(".", 1)[-1], node)


def _const_value(data) -> str | None:
    """A scalar constant's value as text (lr, μ, ε ...), or ``None``."""
    if data["op"] != "const" or np.ndim(data["attrs"].get("value")) != 0:
        return None
    return f"{float(data['attrs']['value']):g}"


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
    outs = evaluate(graph, [graph.tensor(n) for n in nodes], values, dtype="float64")
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
