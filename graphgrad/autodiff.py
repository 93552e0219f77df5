"""Derive: reverse-mode chain rule over the graph, adding the gradient as nodes of the same graph."""
from __future__ import annotations

import heapq

import networkx as nx

from .errors import GraphError
from .ir import Tensor
from .ops import get_op


def topological_order(graph, nodes=None) -> list:
    """One deterministic topological order (of ``nodes``, by default all): creation order breaks ties."""
    # Kahn's algorithm on a heap of creation ranks, as networkx's lexicographical sort, reading the
    # adjacency dicts directly: it runs a dozen times per compile, and over a subgraph view it took 7x longer
    G = graph.nx
    rank = {n: i for i, n in enumerate(G)}
    keep = rank if nodes is None else set(nodes)
    pred, succ = G.pred, G.succ
    waiting = {n: sum(len(keys) for u, keys in pred[n].items() if u in keep) for n in keep}  # edges, x*x twice
    ready = [(rank[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for v, keys in succ[n].items():
            if v in keep:
                waiting[v] -= len(keys)
                if waiting[v] == 0:
                    heapq.heappush(ready, (rank[v], v))
    if len(order) != len(waiting):
        raise GraphError(f"graph {graph.name!r} has a cycle")
    return order


def _total(cotangents):
    total = cotangents[0]
    for c in cotangents[1:]:
        total = total + c  # fan-out: contributions add up
    return total


def grad(y: Tensor, wrt, seed: Tensor | float = None):
    """∂y/∂w for each w in ``wrt``, as new nodes of y's graph.

    ``y`` must be a scalar unless a ``seed`` cotangent of its shape is given; a number as
    ``seed`` scales the gradients of a scalar ``y`` (the chain rule is linear in its seed).
    Gradients are ordinary tensors, so ``grad`` of a gradient gives second
    derivatives.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (3,))
    >>> (dx,) = gg.grad((x * x).sum(), [x])
    """
    single = isinstance(wrt, Tensor)
    wrt = [wrt] if single else list(wrt)
    graph = y.graph
    for w in wrt:
        graph.as_tensor(w)
    if seed is None or isinstance(seed, (int, float)):
        if y.shape != ():
            raise GraphError(f"grad needs a scalar output, but {y.op} node {y.node!r} has shape {y.shape}; "
                             "reduce it (e.g. .sum()) or pass a seed")
        with graph.tagging(grad_of=y.node):
            seed = graph.const(1.0 if seed is None else float(seed))
    elif seed.shape != y.shape:
        raise GraphError(f"seed shape {seed.shape} differs from {y.op} node {y.node!r} shape {y.shape}")

    y = _rederive_through_expansions(graph, y)
    reach = set().union(*(nx.descendants(graph.nx, w.node) | {w.node} for w in wrt))
    on_path = (nx.ancestors(graph.nx, y.node) | {y.node}) & reach
    cotangents = {y.node: [seed]}
    for node in reversed(topological_order(graph, on_path)):
        if node not in cotangents:
            continue
        with graph.tagging(grad_of=node), graph.scope(f"grad/{node}"):
            g = _total(cotangents[node])
            cotangents[node] = [g]
            _pull_back(graph, node, g, on_path, cotangents)

    grads = [_total(cotangents[w.node]) if w.node in cotangents else
             graph.apply("zeros_like", [w], name=f"grad/{w.node}/zeros") for w in wrt]
    return grads[0] if single else grads


def _pull_back(graph, node, g, on_path, cotangents):
    data = graph.nx.nodes[node]
    op = get_op(data["op"])
    args = [Tensor(graph, a) for a in graph.args(node)]
    for i, arg in enumerate(args):
        rule = op.vjp(i)
        if arg.node not in on_path or rule is None:
            continue
        contribution = rule(g, args, Tensor(graph, node), data["attrs"])
        if contribution is None:
            continue
        if contribution.shape != arg.shape:
            raise GraphError(f"internal: the vjp of {op.name} node {node!r} for argument {i} has shape "
                             f"{contribution.shape}, expected {arg.shape}")
        if op.expand is not None:  # how _rederive_through_expansions finds it
            graph.nx.nodes[contribution.node]["derivative_of"] = i
        cotangents.setdefault(arg.node, []).append(contribution)


def _rederive_through_expansions(graph, y):
    """``y`` with every derivative it uses that was taken through an op with an ``expand`` form (the loop
    lowering of a recurrent layer, whose reverse loop is a kernel) taken again through the expansion.

    A first derivative keeps the fast kernel; asking for a derivative of it (a second derivative)
    rebuilds that first derivative from ops that all have vjps, so the chain rule can go on.
    """
    derived = {}  # reverse-loop kernel -> [(contribution, argument index)]
    for n in topological_order(graph, nx.ancestors(graph.nx, y.node) | {y.node}):
        if "derivative_of" in graph.nx.nodes[n]:
            derived.setdefault(_nearest_reverse_kernel(graph, n), []).append((n, graph.nx.nodes[n]["derivative_of"]))
    replaced = {}
    for kernel, contributions in derived.items():
        node, cotangent = get_op(graph.nx.nodes[kernel]["op"]).reverse_of(graph, kernel)
        args = graph.args(node)
        indices = sorted({index for _, index in contributions})
        with graph.scope(f"rederive/{node}"):
            again = grad(get_op(graph.nx.nodes[node]["op"]).expand(graph, node),
                         [graph.tensor(args[i]) for i in indices], seed=cotangent)
        for n, index in contributions:
            replaced[n] = again[indices.index(index)].node
            for _, v, key, edge in list(graph.nx.out_edges(n, keys=True, data=True)):
                graph.nx.remove_edge(n, v, key)
                graph.nx.add_edge(replaced[n], v, **edge)
    return graph.tensor(replaced.get(y.node, y.node))


def _nearest_reverse_kernel(graph, contribution):
    """The derivative kernel a contribution is computed from: the nearest node upstream with ``reverse_of``
    (an earlier layer's reverse loop lies further up, behind this one's)."""
    distance = nx.single_source_shortest_path_length(graph.nx.reverse(copy=False), contribution)
    kernels = [n for n in distance if get_op(graph.nx.nodes[n]["op"]).reverse_of is not None]
    return min(kernels, key=distance.__getitem__)
