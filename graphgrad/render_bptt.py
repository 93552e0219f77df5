"""Render backpropagation through time: a recurrent net unrolled, one Graphviz cluster per step.

Steps run left to right (``cluster_t0``, ``cluster_t1``, ...).  Shared weights
are drawn once, with an edge into every step.  With ``backward=True`` each
step gets its state gradients ∂L/∂h_t (and ∂L/∂c_t), joined by red edges
labelled with the local derivative SymPy gives for one unit of the cell (f_t
on the LSTM cell path, (1 − h_t²)·w under an RNN's tanh).  ``collapsed=True``
draws each step's cell as one box; ``grads`` (the per-step norms of
∂L/∂h_t, e.g. from `gradient_norms_over_time`, or ``{"h": ..., "c": ...}``)
colours and thickens the backward edges by magnitude.
"""
from __future__ import annotations

import math

import graphviz
import networkx as nx
import sympy

from .autodiff import topological_order
from .ir import Graph, Tensor
from .ops import recurrent as R
from .ops.elementwise import sigmoid

FILL = {"input": "#deebf7", "param": "#e5f5e0", "const": "#f0f0f0"}
GRAD_LINE = "#cb181d"
MAGNITUDE = ["#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#a63603", "#7f2704"]


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
    return text


# -- the drawing ----------------------------------------------------------------------------
def _magnitude_style(value, top):
    if value is None or not top:
        return {}
    level = max(0.0, 1 + math.log10(max(value, 1e-30) / top) / 4)  # four decades of range
    k = min(len(MAGNITUDE) - 1, int(level * (len(MAGNITUDE) - 1)))
    return {"color": MAGNITUDE[k], "penwidth": f"{1 + 5 * level:.2f}", "fontcolor": MAGNITUDE[k]}


def _per_step(grads, state, T):
    if grads is None:
        return [None] * T
    values = grads.get(state) if isinstance(grads, dict) else (grads if state == "h" else None)
    return [None] * T if values is None else [float(v) for v in values]


def _label(node, data):
    role = data.get("role")
    shape = "(" + ", ".join("N" if d is None else str(d) for d in data["shape"]) + ")"
    if role:
        return f"{role}_{data['time']}\n{data['op']}"
    if data["op"] in ("input", "param"):
        return f"{node}\n{shape}"
    return data["op"]


def render_unrolled(target, backward: bool = False, grads=None, collapsed: bool = False, rankdir: str = "LR",
                    **options) -> graphviz.Digraph:
    """The BPTT drawing of the graph ending at ``target`` (see the module docstring)."""
    graph = target if isinstance(target, Graph) else target.graph
    graph = R.unroll_scans(graph)
    nodes = set(graph.nx.nodes) if isinstance(target, Graph) else (
        nx.ancestors(graph.nx, target.node) | {target.node})
    nodes = {n for n in nodes if graph.nx.nodes[n].get("grad_of") is None}
    steps = sorted({graph.nx.nodes[n]["time"] for n in nodes if graph.nx.nodes[n].get("time") is not None})
    T = len(steps)
    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": "LR" if rankdir == "TB" else rankdir,
                                                   "fontname": "Helvetica", "newrank": "true", **options},
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                      "fontsize": "10", "fillcolor": "#ffffff"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#606060"})
    cell_of = {graph.nx.nodes[n]["time"]: n for n in nodes if graph.nx.nodes[n].get("role") == "h"}
    clusters = {t: graphviz.Digraph(name=f"cluster_t{t}", graph_attr={
        "label": f"t = {t}", "style": "rounded", "color": "#9ecae1", "fontname": "Helvetica"}) for t in steps}
    box = {}  # node -> the drawn node standing for it
    for node in topological_order(graph, nodes):
        data = graph.nx.nodes[node]
        t = data.get("time")
        if data["op"] == "const" and data["shape"] == ():
            continue
        if t is not None and collapsed:
            box[node] = f"cell_t{t}"
            continue
        box[node] = node
        where = clusters[t] if t is not None else dot
        where.node(node, _label(node, data), fillcolor=FILL.get(data["op"], "#ffffff"))
    kind = _cell_kind(graph, nodes)
    if collapsed:
        for t in steps:
            clusters[t].node(f"cell_t{t}", f"{kind.upper()} cell\nstep {t}", fillcolor="#deebf7", height="0.9")
    seen = set()
    for node in nodes:
        for u, _, _ in graph.nx.in_edges(node, data=True):
            if u not in box or node not in box or box[u] == box[node] or (box[u], box[node]) in seen:
                continue
            seen.add((box[u], box[node]))
            state_edge = collapsed and box[u].startswith("cell_t") and box[node].startswith("cell_t")
            # shared weights fan into every step; only the time chain may decide the left-to-right order
            shared = graph.nx.nodes[u].get("time") is None and graph.nx.nodes[node].get("time") is not None
            dot.edge(box[u], box[node], label="h, c" if state_edge and kind == "lstm" else "h" if state_edge else "",
                     **({"constraint": "false"} if shared else {"weight": "10"} if state_edge else {}))
    for t in steps:
        dot.subgraph(clusters[t])
    if backward and T:
        _backward_chain(dot, kind, steps, grads, cell_of, box, target if isinstance(target, Tensor) else None)
    return dot


def _cell_kind(graph, nodes):
    roles = {graph.nx.nodes[n].get("role") for n in nodes}
    return "lstm" if "c" in roles else "gru" if "z" in roles else "rnn"


def _backward_chain(dot, kind, steps, grads, cell_of, box, target):
    """∂L/∂h_t (and ∂L/∂c_t) per step, joined right to left by edges labelled with local derivatives."""
    derivs = local_derivatives(kind)
    states = R.CELLS[kind].states
    T = len(steps)
    norms = {s: _per_step(grads, s, T) for s in states}
    top = max([v for vals in norms.values() for v in vals if v is not None], default=None)
    for t in steps:
        with dot.subgraph(name=f"cluster_t{t}") as cluster:
            for s in states:
                value = norms[s][t]
                extra = f"\n‖·‖ = {value:.2e}" if value is not None else ""
                cluster.node(f"d{s}_t{t}", f"∂L/∂{s}_{t}{extra}", shape="ellipse", fillcolor="#fde0dd",
                             color=GRAD_LINE, fontcolor=GRAD_LINE)
                if t in cell_of:  # keeps the gradient beside its step, so the steps line up left to right
                    cluster.edge(box[cell_of[t]], f"d{s}_t{t}", style="invis")
    edge = {"style": "dashed", "color": GRAD_LINE, "fontcolor": GRAD_LINE, "constraint": "false"}
    for t in steps:
        if kind == "lstm":
            dot.edge(f"dh_t{t}", f"dc_t{t}", label=derivs[("h", "c")],
                     **{**edge, **_magnitude_style(norms["h"][t], top)})
        if t == 0:
            continue
        for (s, p), text in sorted(derivs.items()):
            if p == "c" and s == "h":
                continue
            source = f"d{s}_t{t}"
            style = _magnitude_style(norms[s][t], top)
            dot.edge(source, f"d{p}_t{t - 1}", label=text, **{**edge, **style})
    if target is not None and steps:
        dot.edge(target.node, f"dh_t{steps[-1]}", label="∂L/∂h (layers above)", **edge)
