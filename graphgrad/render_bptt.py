"""Render backpropagation through time as a textbook prints it: the recurrent net unrolled.

Steps run left to right on one row, one Graphviz cluster per step (``cluster_t0``,
``cluster_t1``, ...), each a column: x_t at the bottom, the cell above it, the layers
above (the output and the loss) over the steps they read, and on top the gradients
∂L/∂h_t (and ∂L/∂c_t).  The h lane (and the LSTM's c lane) runs straight across the
cells; the gradient edges run right to left along their own lanes, labelled with the
local derivative SymPy gives for one unit of the cell (f_t on the LSTM's cell path,
w_hh·(1 − h_t²) under an RNN's tanh).  The shared weights are drawn once, in a legend
box at the left, and named on the edges they act on; the time-summed ∂L/∂W = Σ_t ...
is one node that every step's gradient feeds.

Cells are single boxes; ``expand=True`` (or a step number) draws one LSTM cell with
its gates as Olah does, c_{t−1} → c_t straight across its top, and ``collapsed=False``
every cell.  ``grads`` labels the gradients with ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) and sets the
colour and width of the backward edges by magnitude, so a vanishing gradient fades towards
t = 0 (see `render_unrolled` for what it takes).
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import sympy

from .autodiff import topological_order
from .errors import GraphError
from .ir import Graph, Tensor, shape_text
from .ops import recurrent as R
from .ops.functions import sigmoid
from .drawing import Drawing
from .render import GRAD_FILL, GRAD_LINE, gradients_at, holds_feeds

FILL = {"input": "#deebf7", "param": "#e5f5e0", "cell": "#f7fbff", "head": "#ffffff"}
MAGNITUDE = ["#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#a63603", "#7f2704"]
WEIGHTS = ("W_ih", "W_hh", "b_ih", "b_hh")


# -- local derivatives of one unit of the cell, from SymPy ------------------------------------
def _unit_cell(cell):
    """(next state expressions, {forward sub-expression: its display symbol}) for a one-unit cell."""
    h, c = sympy.symbols("h_{t-1} c_{t-1}", real=True)
    u = {k: sympy.Symbol(f"u_{k}", real=True) for k in "ifgorzn"}  # input-side pre-activations
    w = {k: sympy.Symbol(f"w_h{k}", real=True) for k in "ifgorzn"}  # recurrent weights (W_hh blocks)
    b_hn = sympy.Symbol("b_hn", real=True)
    if cell == "rnn":
        a = u["i"] + sympy.Symbol("w_hh", real=True) * h
        return {"h": sympy.tanh(a)}, {sympy.tanh(a): sympy.Symbol("h_t")}, {"h": h}
    if cell == "lstm":
        i, f, o = (sigmoid(u[k] + w[k] * h) for k in "ifo")
        g = sympy.tanh(u["g"] + w["g"] * h)
        c_t = f * c + i * g
        names = {i: "i_t", f: "f_t", g: "g_t", o: "o_t", sympy.tanh(sympy.Symbol("c_t", real=True)): "tanh(c_t)"}
        return ({"h": o * sympy.tanh(sympy.Symbol("c_t", real=True)), "c": c_t},
                {k: sympy.Symbol(v) for k, v in names.items()}, {"h": h, "c": c})
    r, z = (sigmoid(u[k] + w[k] * h) for k in "rz")
    n = sympy.tanh(u["n"] + r * (w["n"] * h + b_hn))
    names = {r: "r_t", z: "z_t", n: "n_t"}
    return {"h": (1 - z) * n + z * h}, {k: sympy.Symbol(v) for k, v in names.items()}, {"h": h}


def local_derivatives(cell) -> dict:
    """{(from, to): text} for the backward edges ∂L/∂from_t → ∂L/∂to, e.g. ("c", "c_prev"): "f_t"."""
    nxt, names, prev = _unit_cell(cell)
    c_t = sympy.Symbol("c_t", real=True)
    out = {}
    for state, expr in nxt.items():
        for p, sym in prev.items():
            d = sympy.diff(expr, sym)
            if d != 0:
                out[(state, p)] = _text(d.xreplace(names))
    if cell == "lstm":  # within the step: h_t = o_t tanh(c_t)
        out[("h", "c")] = _text(sympy.diff(nxt["h"], c_t).xreplace(names))
    return out


def _text(expr) -> str:
    text = str(sympy.factor_terms(expr))
    for a, b in (("**2", "²"), ("*", "·"), ("{t-1}", "t−1"), (" - ", " − "), ("sigmoid", "σ")):
        text = text.replace(a, b)
    return text.replace(" + ", "\n+ ") if len(text) > 40 else text  # one term a line


# -- what the drawing shows -------------------------------------------------------------------
class _Unrolled:
    """The parts of an unrolled recurrent graph the drawing needs: steps, cells, weights, outputs, head."""

    def __init__(self, target):
        graph = R.unroll_scans(target if isinstance(target, Graph) else target.graph)
        self.graph, G = graph, graph.nx
        self.target = None if isinstance(target, Graph) else target.node
        nodes = set(G.nodes) if self.target is None else nx.ancestors(G, self.target) | {self.target}
        self.nodes = {n for n in nodes if G.nodes[n].get("grad_of") is None}
        timed = [n for n in self.nodes if G.nodes[n].get("time") is not None]
        self.steps = sorted({G.nodes[n]["time"] for n in timed})
        roles = {G.nodes[n].get("role") for n in timed}
        self.kind = "lstm" if "c" in roles else "gru" if "z" in roles else "rnn"
        self.states = R.CELLS[self.kind].states
        self.role = {(G.nodes[n]["time"], G.nodes[n]["role"]): n for n in timed if G.nodes[n].get("role")}
        self.layer = timed[0].split(f"/t{G.nodes[timed[0]]['time']}/")[0] if timed else self.kind
        self.weights = [n for n in topological_order(graph, self.nodes) if G.nodes[n]["op"] == "param"
                        and n.startswith(self.layer + ".")]
        self.inputs = {t: next((n for n in timed if G.nodes[n]["time"] == t and G.nodes[n]["op"] == "getitem"
                                and G.nodes[graph.args(n)[0]]["op"] == "input"), None) for t in self.steps}
        self.outputs, self.head = self._outputs()
        self.expanded = set()  # the steps whose LSTM cell is drawn with its gates

    def _outputs(self):
        """The steps whose h_t the layers above read, and those layers' nodes (the head), in order.

        A read of the tape's last row (``h[-1]``) is a read of the last step only."""
        G, last = self.graph.nx, self.steps[-1] if self.steps else None
        outside = {n for n in self.nodes if G.nodes[n].get("time") is None and not G.nodes[n]["op"] in (
            "param", "input", "const") and not n.startswith(self.layer + "/")}
        if self.target is None or not self.steps:
            return [], []
        head = {n for n in outside if n == self.target or nx.has_path(G, n, self.target)}
        from_cells = {v for n in self.nodes if G.nodes[n].get("time") is not None for v in G.successors(n)}
        reads = {n for n in head if set(self.graph.args(n)) - head}  # where the head reads the layer
        outputs = set()
        for n in reads:
            for a in self.graph.args(n):
                if a in head or G.nodes[a]["op"] in ("param", "input", "const"):
                    continue
                upstream = nx.ancestors(G, a) | {a}
                if G.nodes[a].get("time") is not None:
                    outputs.add(G.nodes[a]["time"])
                elif any(G.nodes[u]["op"] == "getitem" and G.nodes[u]["attrs"]["index"][:1] in ((-1,), (last,))
                         for u in upstream if u in self.nodes and u not in from_cells):
                    outputs.add(last)
                else:
                    outputs |= {G.nodes[u]["time"] for u in upstream if G.nodes[u].get("time") is not None}
        return sorted(outputs), topological_order(self.graph, head)

    def head_label(self) -> str:
        parts = dict.fromkeys(n.split("/")[0] if "/" in n else self.graph.nx.nodes[n]["op"] for n in self.head
                              if self.graph.nx.nodes[n]["op"] not in ("getitem", "one_hot", "reshape"))
        return " → ".join(parts) + "\nL" if parts else "L"


# -- the drawing ----------------------------------------------------------------------------
def _magnitude_style(value, top):
    if value is None or not top:
        return {}
    level = max(0.0, 1 + math.log10(max(value, 1e-30) / top) / 4)  # four decades of range
    k = min(len(MAGNITUDE) - 1, int(level * (len(MAGNITUDE) - 1)))
    return {"color": MAGNITUDE[k], "penwidth": f"{1 + 5 * level:.2f}", "fontcolor": MAGNITUDE[k]}


def _norms(net, grads) -> tuple:
    """``({state: [‖∂L/∂state_t‖ or None per step]}, {shared weight: ‖∂L/∂W‖})`` from ``grads``."""
    weights = {}
    if holds_feeds(net.graph, grads):  # params and feeds: evaluate ∂L/∂h_t through every later step
        wrt = [net.role[(t, s)] for s in net.states for t in net.steps] + net.weights
        at = gradients_at(net.graph.tensor(net.target) if net.target else None, wrt, grads, net.graph)
        grads = {s: [at[net.role[(t, s)]] for t in net.steps] for s in net.states} | {
            w: at[w] for w in net.weights}
    if isinstance(grads, dict):
        weights = {w: float(np.linalg.norm(grads[w])) for w in net.weights if w in grads}
        per_step = {s: grads[s] for s in net.states if s in grads}
    else:
        per_step = {"h": grads} if grads is not None else {}
    norms = {s: [None] * len(net.steps) for s in net.states}
    for s, values in per_step.items():
        norms[s] = [float(np.linalg.norm(v)) for v in values]
    if len(norms["h"]) != len(net.steps):
        raise GraphError(f"grads gives {len(norms['h'])} per-step norms for {len(net.steps)} steps")
    return norms, weights


def render_unrolled(target, backward: bool = False, grads=None, collapsed: bool = True, expand=False,
                    rankdir: str = "TB", **options) -> Drawing:
    """The BPTT drawing of the graph ending at ``target`` (see the module docstring).

    ``grads`` (drawn with ``backward=True``) is any of:

    - ``{**params, **feeds}``, the values a step is called with: ∂target/∂h_t (and ∂c_t) of every
      step is computed at them, the total derivative through every later step, and of the shared
      weights too (named in the legend);
    - the per-step norms ‖∂L/∂h_t‖, as `gradient_norms_over_time` returns them, or
      ``{"h": norms, "c": norms}``; entries may be the gradients themselves (their norms are taken);
    - a compiled step's grads (``gg.compile(loss, wrt=g.params)(params, **feeds)[1]``): they hold no
      step's gradient, so only the shared weights get their ‖∂L/∂W‖.
    """
    net = _Unrolled(target)
    if not net.steps:
        raise GraphError(f"unroll=True draws a recurrent layer through time, and graph {net.graph.name!r} has none")
    norms, weight_norms = _norms(net, grads) if backward else ({}, {})
    one = set() if expand is False or expand is None else {net.steps[-1] if expand is True else expand}
    net.expanded = set() if net.kind != "lstm" else set(net.steps) if not collapsed else one
    dot = Drawing(net.graph.name, graph_attr={
        "rankdir": rankdir, "fontname": "Helvetica", "newrank": "true",
        "nodesep": "0.5", "ranksep": "0.55", **options},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10",
                   "fillcolor": "#ffffff"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#606060"})
    clusters = {t: Drawing(name=f"cluster_t{t}", graph_attr={
        "label": f"t = {t}", "style": "rounded", "color": "#9ecae1", "fontname": "Helvetica"}) for t in net.steps}
    rows: dict = {}  # row name -> nodes that share its rank, left to right
    _legend(dot, net, rows, weight_norms)
    for t in net.steps:
        _step(clusters[t], net, t, rows)
    _lanes(dot, net)
    if net.head:
        _head(dot, clusters, net, rows)
    if backward:
        _backward(dot, clusters, net, norms, rows)
    for t in net.steps:
        dot.subgraph(clusters[t])
    for name, members in rows.items():
        with dot.subgraph(name=f"row_{name}") as row:
            row.attr(rank="same")
            for a, b in zip(members, members[1:]):  # keeps the row in time order, left to right
                row.edge(a, b, style="invis", weight="20")
            for m in members:
                row.node(m)
    return dot


def _legend(dot, net, rows, norms):
    """The shared weights, once, in a box at the left: they act on the edges that name them.  ``norms``:
    ‖∂L/∂W‖ of those it names."""
    if not net.weights:
        return
    with dot.subgraph(name="cluster_weights") as box:
        box.attr(label="shared by every step", style="rounded,dashed", color="#bdbdbd", fontcolor="#737373",
                 fontname="Helvetica", fontsize="10")
        for w in net.weights:
            norm = f"\n‖∂L/∂W‖ = {norms[w]:.2e}" if w in norms else ""
            box.node(w, f"{w}\n{shape_text(net.graph.nx.nodes[w]['shape'])}{norm}", fillcolor=FILL["param"],
                     color="#a1d99b", fontsize="9")
        box.attr("edge", style="invis")  # a column, W_ih at the bottom
        for lower, upper in zip(net.weights, net.weights[1:]):
            box.edge(upper, lower)
    rows.setdefault("x", []).append(net.weights[0])


def _up(graph, lower, upper, **attrs):
    """An edge drawn from ``lower`` up to ``upper``: the drawing reads bottom (x_t) to top (∂L/∂W)."""
    graph.edge(upper, lower, dir="back", **attrs)


def _cell(t):
    return f"cell_t{t}"


def _step(cluster, net, t, rows):
    """x_t and the cell of step t, one column."""
    x = net.inputs.get(t)
    if x is not None:
        shape = net.graph.nx.nodes[x]["shape"]
        cluster.node(f"x_t{t}", f"x_{t}\n{shape_text(shape)}", fillcolor=FILL["input"], shape="ellipse")
        rows.setdefault("x", []).append(f"x_t{t}")
    if t in net.expanded:
        _olah_cell(cluster, t, rows)
    else:
        h = net.role.get((t, "h"))
        shape = shape_text(net.graph.nx.nodes[h]["shape"]) if h else ""
        states = ", ".join(f"{s}_{t}" for s in net.states)
        cluster.node(_cell(t), f"{net.kind.upper()} cell\n{states} {shape}", fillcolor=FILL["cell"],
                     color="#2171b5", height="0.8", width="1.3")
        rows.setdefault("cell", []).append(_cell(t))
    if x is not None:
        _up(cluster, f"x_t{t}", _entry(net, t), label="W_ih", fontcolor="#31a354")


def _entry(net, t, state="h"):
    """Where x_t and h_{t−1} (or c_{t−1}) enter the cell of step t."""
    return _cell(t) if t not in net.expanded else f"cell_t{t}_in" if state == "h" else f"cell_t{t}_forget"


def _exit(net, t, state):
    """Where h_t or c_t leaves the cell of step t."""
    return f"cell_t{t}_{state}" if t in net.expanded else _cell(t)


def _olah_cell(cluster, t, rows):
    """One LSTM cell with its gates: the c lane across the top (× f_t, + i_t·g_t), h_t = o_t · tanh(c_t)."""
    n = f"cell_t{t}"
    op = {"shape": "circle", "width": "0.3", "fixedsize": "true", "fillcolor": "#fff7bc", "fontsize": "12"}
    gate = {"fillcolor": "#fdd49e", "color": "#d94801", "fontsize": "9"}
    cluster.node(f"{n}_in", f"[h_{t - 1}, x_{t}]" if t else f"[h_init, x_{t}]", fillcolor=FILL["cell"], fontsize="9")
    for g, act in (("f", "σ"), ("i", "σ"), ("g", "tanh"), ("o", "σ")):
        cluster.node(f"{n}_{g}", f"{g}_{t}\n{act}", **gate)
        _up(cluster, f"{n}_in", f"{n}_{g}")
        rows.setdefault("gates", []).append(f"{n}_{g}")
    cluster.node(f"{n}_forget", "×", **op)
    cluster.node(f"{n}_c", "+", **op)
    cluster.node(f"{n}_ig", "×", **op)
    cluster.node(f"{n}_tanh", "tanh", fillcolor="#fff7bc", fontsize="9")
    cluster.node(f"{n}_h", "×", **op)
    _up(cluster, f"{n}_f", f"{n}_forget", label="f")
    _up(cluster, f"{n}_i", f"{n}_ig", label="i")
    _up(cluster, f"{n}_g", f"{n}_ig", label="g")
    _up(cluster, f"{n}_ig", f"{n}_c")
    cluster.edge(f"{n}_forget", f"{n}_c", label=f"c_{t}", weight="10", penwidth="2")
    _up(cluster, f"{n}_c", f"{n}_tanh")
    _up(cluster, f"{n}_tanh", f"{n}_h")
    _up(cluster, f"{n}_o", f"{n}_h", label="o")
    rows.setdefault("cell", []).append(f"{n}_in")
    rows.setdefault("c_lane", []).append(f"{n}_forget")
    rows.setdefault("c_lane", []).append(f"{n}_c")


def _lanes(dot, net):
    """The state lanes between steps: straight, left to right, W_hh named on the h lane."""
    for t in net.steps[1:]:
        dot.edge(_exit(net, t - 1, "h"), _entry(net, t), label=f"h_{t - 1} · W_hh", weight="10",
                 fontcolor="#31a354", penwidth="1.5")
        if net.kind == "lstm":
            lane = dict(label=f"c_{t - 1}", weight="10", penwidth="2.5", color="#4292c6", fontcolor="#2171b5")
            if t in net.expanded and t - 1 not in net.expanded:
                # up from a cell into the gates' products: ranked, with no pull (unranked, dot
                # routed it round the cell), and drawn as every upward edge here
                _up(dot, _exit(net, t - 1, "c"), _entry(net, t, "c"), **{**lane, "weight": "0"})
            else:  # out of an expanded cell it leaves at the height of its products, unranked
                loose = {"constraint": "false"} if t - 1 in net.expanded else {}
                dot.edge(_exit(net, t - 1, "c"), _entry(net, t, "c"), **lane, **loose)


def _head(dot, clusters, net, rows):
    """The layers above: over the step they read, or beside the steps when they read several."""
    where = clusters[net.outputs[0]] if len(net.outputs) == 1 else dot
    where.node("head", net.head_label(), fillcolor=FILL["head"], color="#404040")
    rows.setdefault("head", []).append("head")
    for t in net.outputs:
        _up(dot, _exit(net, t, "h"), "head", label=f"h_{t}")


def _backward(dot, clusters, net, norms, rows):
    """∂L/∂h_t (and ∂L/∂c_t) above every step, joined right to left by local derivatives; ∂L/∂W = Σ_t.
    ``norms``: {state: ‖∂L/∂state_t‖ or None, per step}."""
    derivs = local_derivatives(net.kind)
    norms = norms or {s: [None] * len(net.steps) for s in net.states}
    top = max([v for vals in norms.values() for v in vals if v is not None], default=None)
    edge = {"style": "dashed", "color": GRAD_LINE, "fontcolor": GRAD_LINE}
    for t in net.steps:
        for s in net.states:
            value = norms[s][t]
            extra = f"\n‖∂L/∂{s}_{t}‖ = {value:.2e}" if value is not None else ""
            clusters[t].node(f"d{s}_t{t}", f"∂L/∂{s}_{t}{extra}", shape="ellipse", fillcolor=GRAD_FILL,
                             color=GRAD_LINE, fontcolor=GRAD_LINE)
            rows.setdefault(f"d{s}", []).append(f"d{s}_t{t}")
        if t not in net.outputs:  # the column stays a column: the gradient sits above its own cell
            _up(clusters[t], _exit(net, t, "h"), f"dh_t{t}", style="invis", minlen="2")
    for t in net.steps:
        style = {**edge, **_magnitude_style(norms["h"][t], top)}
        if net.kind == "lstm":
            _up(dot, f"dh_t{t}", f"dc_t{t}", label=derivs[("h", "c")], **style)
        if t == 0:
            continue
        # each lane is drawn in time order (tail left) with its arrow pointing back in time
        dot.edge(f"dh_t{t - 1}", f"dh_t{t}", label=derivs[("h", "h")], dir="back", **style)
        if net.kind == "lstm":
            c_style = {**edge, **_magnitude_style(norms["c"][t], top)}
            dot.edge(f"dc_t{t - 1}", f"dc_t{t}", label=derivs[("c", "c")], dir="back", **c_style)
            dot.edge(f"dc_t{t}", f"dh_t{t - 1}", label=derivs[("c", "h")], **c_style)
    for t in net.outputs:
        _up(dot, "head", f"dh_t{t}", label=f"∂L/∂h_{t}\nfrom above", **edge)
    _weight_sum(dot, net)


def _weight_sum(dot, net):
    """The weight gradients, each a sum over the steps of what every step contributes."""
    top = "dc" if net.kind == "lstm" else "dh"
    lines = ["∂L/∂W_hh = Σ_t δ_t · h_t−1ᵀ", "∂L/∂W_ih = Σ_t δ_t · x_tᵀ", "∂L/∂b = Σ_t δ_t",
             "δ_t = ∂L/∂(pre-activations at t)"]
    dot.node("dW", "\n".join(lines), fillcolor=GRAD_FILL, color=GRAD_LINE, fontcolor="#67000d", penwidth="2")
    for t in net.steps:
        _up(dot, f"{top}_t{t}", "dW", style="dashed", color="#fcbba1", arrowsize="0.6", label=f"δ_{t}",
                 fontcolor="#fc9272")
