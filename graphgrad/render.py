"""Render: Graphviz drawings of the forward graph and of the chain rule.

Nodes show their name, op and shape (the batch as N); with ``backward=True``
the gradient nodes are added in red with dashed edges, each edge into a
gradient node labelled by the local derivative it multiplies by.
"""
from __future__ import annotations

import graphviz
import numpy as np

from .autodiff import grad, topological_order
from .ir import Graph, Tensor


def _shape(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def _label(node, data) -> str:
    return f"{node}\n{data['op']} {_shape(data['shape'])}"


def render(target, backward: bool = False, grads=None, rankdir: str = "TB", **options) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of the graph ending at ``target`` (a Tensor or a Graph).

    ``backward=True`` adds the chain-rule nodes of ∂target/∂params;
    ``grads`` (node name -> array) colours backward edges by gradient
    magnitude.  ``.source`` gives the DOT text without the ``dot`` binary.
    """
    if isinstance(target, Graph):
        graph, nodes = target, list(target.nx.nodes)
    else:
        graph = target.graph
        if backward:
            graph = graph.copy()
            target = Tensor(graph, target.node)
            grad(target, graph.params)
        import networkx as nx

        nodes = nx.ancestors(graph.nx, target.node) | {target.node}
        if backward:
            nodes |= {n for n, d in graph.nx.nodes(data=True) if d.get("grad_of") is not None}
    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": rankdir, "fontname": "Helvetica"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                      "fontsize": "10"})
    for node in topological_order(graph, nodes):
        data = graph.nx.nodes[node]
        is_grad = data.get("grad_of") is not None
        colour = "#fde0dd" if is_grad else {"input": "#deebf7", "param": "#e5f5e0", "const": "#f0f0f0"}.get(
            data["op"], "#ffffff")
        dot.node(node, _label(node, data), fillcolor=colour, color="#cb181d" if is_grad else "#404040")
        for u, _, edge in graph.nx.in_edges(node, data=True):
            style = {"style": "dashed", "color": "#cb181d"} if is_grad else {}
            if grads is not None and u in grads:
                style["penwidth"] = str(1 + 4 * min(1.0, float(np.abs(grads[u]).mean())))
            dot.edge(u, node, **style)
    return dot
