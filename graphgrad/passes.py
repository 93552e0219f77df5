"""Optimise: named, pure Graph -> Graph passes over the networkx IR, run to a fixed point.

Each pass returns the same graph object when it changes nothing, and a new
graph otherwise.  The roots of a compiled graph are its effect nodes
(``output`` and ``assign``), so a pass may rewire or drop anything else.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import sympy

from .autodiff import topological_order
from .ir import canonical
from .ops import get_op
from .ops.elementwise import expr_symbols, node_formula, node_kernels
from .ops.functions import relu, select, sigmoid, softplus

MAX_FUSED_OPS = 400  # beyond this a fused expression costs more to simplify than it saves
FOLD_LIMIT = 4096  # fold constants only up to this many elements


def _rewire(G, old, new):
    """Consumers of ``old`` read ``new`` instead."""
    for _, v, key, data in list(G.out_edges(old, keys=True, data=True)):
        G.remove_edge(old, v, key)
        G.add_edge(new, v, index=data["index"])


def _set_args(G, node, args):
    G.remove_edges_from(list(G.in_edges(node, keys=True)))
    for i, a in enumerate(args):
        G.add_edge(a, node, index=i)


def _op(graph, node):
    return get_op(graph.nx.nodes[node]["op"])


# -- modes and dead code -------------------------------------------------------
def specialize_mode(graph, training: bool):
    """Resolve every ``train_eval`` node to its training or evaluation value."""
    nodes = [n for n, d in graph.nx.nodes(data=True) if d["op"] == "train_eval"]
    if not nodes:
        return graph
    graph = graph.copy()
    for node in nodes:
        _rewire(graph.nx, node, graph.args(node)[0 if training else 1])
    return dead_code(graph)


def dead_code(graph):
    """Drop every node that no output or update depends on."""
    roots = [n for n, d in graph.nx.nodes(data=True) if get_op(d["op"]).effect]
    keep = set(roots).union(*(nx.ancestors(graph.nx, r) for r in roots)) if roots else set()
    dead = [n for n in graph.nx.nodes if n not in keep]
    if not dead:
        return graph
    graph = graph.copy()
    graph.nx.remove_nodes_from(dead)
    return graph


# -- merging and folding ------------------------------------------------------------
def _merge_key(graph, node):
    data = graph.nx.nodes[node]
    op = get_op(data["op"])
    if op.effect or op.stateful or (op.source and data["op"] != "const"):
        return None
    return (data["op"], data["dtype"], data["shape"], canonical(data["attrs"]), tuple(graph.args(node)))


def common_subexpressions(graph):
    """Merge nodes that apply the same op with the same attrs to the same arguments."""
    seen, merges = {}, []
    for node in topological_order(graph):
        key = _merge_key(graph, node)
        if key is None:
            continue
        key = key[:4] + (tuple(seen.get(a, a) for a in key[4]),)
        if key in seen:
            merges.append((node, seen[key]))
        else:
            seen[key] = node
    if not merges:
        return graph
    graph = graph.copy()
    for node, keep in merges:
        _rewire(graph.nx, node, keep)
    return dead_code(graph)


def _evaluate(op, data, values, arg_dtypes):
    names = [f"a{i}" for i in range(len(values))]
    namespace = {"np": np, "F": np.dtype(data["dtype"]).type if data["dtype"].startswith("float") else np.float64,
                 "state": {},  # a kernel's work arrays, thrown away after folding
                 **{k.__name__: k for k in node_kernels(op, len(values), data["attrs"])}, **dict(zip(names, values))}
    if op.elementwise:
        from .ops.printer import emit_expr, operand_sources, type_source

        expr, syms = node_formula(data["op"], len(values), data["attrs"])
        sources = operand_sources(expr, syms, names, data["dtype"], arg_dtypes)
        source = emit_expr(expr, sources, type_source(data["dtype"]))
    else:
        namespace.update({n: np.asarray(v) for n, v in zip(names, values)})
        source = op.emit(names, data["attrs"])
    return eval(source, namespace)  # noqa: S307  (our own emitted source)


def constant_fold(graph):
    """Evaluate nodes whose arguments are all constants, at compile time."""
    folds = {}
    for node in topological_order(graph):
        data = graph.nx.nodes[node]
        op = get_op(data["op"])
        args = graph.args(node)
        if (op.source or op.effect or op.stateful or not args or data["op"] == "train_eval"
                or any(graph.nx.nodes[a]["op"] != "const" and a not in folds for a in args)
                or int(np.prod([d or 0 for d in data["shape"]])) > FOLD_LIMIT):
            continue
        values = [folds.get(a, graph.nx.nodes[a]["attrs"].get("value")) for a in args]
        with np.errstate(all="ignore"):
            value = _evaluate(op, data, values, [graph.nx.nodes[a]["dtype"] for a in args])
        scalar = np.ndim(value) == 0 and all(np.ndim(v) == 0 and not isinstance(v, np.ndarray) for v in values)
        folds[node] = np.asarray(value).item() if scalar else np.asarray(value)
    if not folds:
        return graph
    graph = graph.copy()
    for node, value in folds.items():
        graph.nx.nodes[node].update(op="const", attrs={"value": value})
        graph.nx.remove_edges_from(list(graph.nx.in_edges(node, keys=True)))
    return dead_code(graph)


# -- numerical stability ---------------------------------------------------------------
X = sympy.Symbol("x", real=True)


def _rewrite_log_of(graph, inner_op, make, outer="log"):
    """Rewrite every ``log(inner_op(...))`` (or ``outer(inner_op(...))``) node with ``make(graph, node, inner)``."""
    matches = [n for n, d in graph.nx.nodes(data=True)
               if d["op"] == outer and graph.nx.nodes[graph.args(n)[0]]["op"] == inner_op]
    matches = [n for n in matches if make(graph, n, graph.args(n)[0], dry_run=True)]
    if not matches:
        return graph
    graph = graph.copy()
    for node in matches:
        make(graph, node, graph.args(node)[0], dry_run=False)
    return dead_code(graph)


def _to_log_softmax(graph, node, inner, dry_run):
    if not dry_run:
        graph.nx.nodes[node].update(op="log_softmax", attrs=dict(graph.nx.nodes[inner]["attrs"]))
        _set_args(graph.nx, node, graph.args(inner))
    return True


def _to_log_sigmoid(graph, node, inner, dry_run):
    if not dry_run:
        a0 = expr_symbols(1)[0]
        graph.nx.nodes[node].update(op="expr", attrs={"expr": -softplus(-a0)})
        _set_args(graph.nx, node, graph.args(inner))
    return True


def _is_one(graph, node) -> bool:
    data = graph.nx.nodes[node]
    return data["op"] == "const" and data["shape"] == () and data["attrs"]["value"] == 1


def _one_plus(graph, node, inner, op=None):
    """The ``x`` of an ``inner = 1 + x`` whose shape is ``node``'s (and whose op is ``op``), else None."""
    args = graph.args(inner)
    ones = [i for i, a in enumerate(args) if _is_one(graph, a)]
    other = args[1 - ones[0]] if ones else None
    if other is None or graph.nx.nodes[other]["shape"] != graph.nx.nodes[node]["shape"]:
        return None
    return other if op is None or graph.nx.nodes[other]["op"] == op else None


def _to_log1p(graph, node, inner, dry_run):
    other = _one_plus(graph, node, inner)
    if other is None:
        return False
    if not dry_run:
        graph.nx.nodes[node].update(op="log1p", attrs={})
        _set_args(graph.nx, node, [other])
    return True


def _to_log_one_minus_sigmoid(graph, node, inner, dry_run):
    one, s = graph.args(inner)
    if not (_is_one(graph, one) and graph.nx.nodes[s]["op"] == "sigmoid"
            and graph.nx.nodes[s]["shape"] == graph.nx.nodes[node]["shape"]):
        return False
    if not dry_run:
        a0 = expr_symbols(1)[0]
        graph.nx.nodes[node].update(op="expr", attrs={"expr": -softplus(a0)})
        _set_args(graph.nx, node, graph.args(s))
    return True


def _to_softplus(graph, node, inner, dry_run):
    exp = _one_plus(graph, node, inner, op="exp") if graph.nx.nodes[node]["op"] == "log" else inner
    if exp is None:
        return False
    if not dry_run:
        graph.nx.nodes[node].update(op="softplus", attrs={})
        _set_args(graph.nx, node, graph.args(exp))
    return True


def log_softmax_rewrite(graph):
    """log(softmax(x)) -> log_softmax(x): no log(0) when a probability underflows."""
    return _rewrite_log_of(graph, "softmax", _to_log_softmax)


def log_sigmoid_rewrite(graph):
    """log(σ(x)) -> −softplus(−x): finite for x = −1000."""
    return _rewrite_log_of(graph, "sigmoid", _to_log_sigmoid)


def log_one_minus_sigmoid_rewrite(graph):
    """log(1 − σ(x)) -> −softplus(x): finite for x = 1e4, where 1 − σ(x) rounds to 0."""
    return _rewrite_log_of(graph, "sub", _to_log_one_minus_sigmoid)


def softplus_rewrite(graph):
    """log(1 + eˣ) and log1p(eˣ) -> softplus(x): no overflow to inf for x = 1000."""
    graph = _rewrite_log_of(graph, "add", _to_softplus)
    return _rewrite_log_of(graph, "exp", _to_softplus, outer="log1p")


def log1p_rewrite(graph):
    """log(1 + x) -> log1p(x): accurate for tiny x."""
    return _rewrite_log_of(graph, "add", _to_log1p)


# The identity each rewrite relies on, checked by the tests with SymPy.
log_softmax_rewrite.identity = (sympy.log(sympy.exp(X) / (sympy.exp(X) + sympy.Symbol("s", positive=True))),
                                X - sympy.log(sympy.exp(X) + sympy.Symbol("s", positive=True)))
log_sigmoid_rewrite.identity = (sympy.log(sigmoid(X)), -softplus(-X))
log1p_rewrite.identity = (sympy.log(1 + X), sympy.codegen.cfunctions.log1p(X))
log_one_minus_sigmoid_rewrite.identity = (sympy.log(1 - sigmoid(X)), -softplus(X))
softplus_rewrite.identity = (sympy.log(1 + sympy.exp(X)), softplus(X))


# -- pooling before pointwise work ----------------------------------------------------
def _pool_before_relu_match(graph, pool):
    """(relu node, add node or None, pooled input, bias or None) when ``pool`` reads a relu only it reads."""
    d = graph.nx.nodes[pool]
    if d["op"] != "maxpool2d" or np.any(d["attrs"].get("padding", 0)):  # padded windows: keep as written
        return None
    (relu,) = graph.args(pool)
    if graph.nx.nodes[relu]["op"] != "relu" or graph.nx.out_degree(relu) != 1:
        return None
    (inner,) = graph.args(relu)
    if graph.nx.nodes[inner]["op"] == "add" and graph.nx.out_degree(inner) == 1:
        args = graph.args(inner)
        full = graph.nx.nodes[inner]["shape"]
        for x, b in (args, args[::-1]):
            shape = graph.nx.nodes[b]["shape"]
            if graph.nx.nodes[x]["shape"] == full and len(shape) <= len(full) and all(s == 1 for s in shape[-2:]):
                return relu, inner, x, b  # a constant over each pooling window: max(x + b) = max(x) + b
    return relu, None, inner, None


def pool_before_relu(graph):
    """maxpool(relu(x + b)) -> relu(maxpool(x) + b), b constant over each window (a per-channel bias).

    Max commutes with a nondecreasing function and with adding a constant to a whole window,
    so the bias, the ReLU and their gradients run on 1/(kh·kw) of the elements; the gradient
    still reaches each window's arg-max of x (where relu' = 0 the routing does not matter).
    """
    matches = [(n, m) for n in list(graph.nx.nodes) if (m := _pool_before_relu_match(graph, n))]
    if not matches:
        return graph
    graph = graph.copy()
    G = graph.nx
    for pool, (relu, add, x, bias) in matches:
        pooled_shape = G.nodes[pool]["shape"]
        _rewire(G, pool, relu)
        _set_args(G, pool, [x])
        if add is None:
            _set_args(G, relu, [pool])
        else:
            _set_args(G, add, [pool, bias])
            G.nodes[add]["shape"] = pooled_shape
        G.nodes[relu]["shape"] = pooled_shape
    return graph


# -- reductions of products ----------------------------------------------------------
def inner_products(graph):
    """sum(a * b) or mean(a * b) over every element, a and b of one shape -> inner(a, b).

    One BLAS dot reads a and b once and writes nothing, where the product array and its
    reduction took two passes and a temporary (a mean-square loss, ‖w‖² of L2 decay).
    """
    matches = []
    for node, d in graph.nx.nodes(data=True):
        if d["op"] not in ("sum", "mean") or d["shape"] != ():
            continue
        (prod,) = graph.args(node)
        p = graph.nx.nodes[prod]
        if (p["op"] == "mul" and graph.nx.out_degree(prod) == 1 and p["dtype"].startswith("float")
                and all(graph.nx.nodes[a]["shape"] == p["shape"] for a in graph.args(prod))):
            matches.append((node, prod))
    if not matches:
        return graph
    graph = graph.copy()
    for node, prod in matches:
        graph.nx.nodes[node].update(op="inner", attrs={"mean": graph.nx.nodes[node]["op"] == "mean"})
        _set_args(graph.nx, node, graph.args(prod))
    return dead_code(graph)


# -- elementwise fusion -------------------------------------------------------------
def guard_selects(expr):
    """select(c, a, 0)·r -> select(c, a·r, 0): the 0·inf of the branch not taken cannot leak a NaN."""
    def is_guarded_product(e):
        return e.is_Mul and any(isinstance(f, select) and 0 in f.args[1:] for f in e.args)

    def pull_in(e):
        guard = next(f for f in e.args if isinstance(f, select) and 0 in f.args[1:])
        rest = sympy.Mul(*[f for f in e.args if f is not guard])
        c, a, b = guard.args
        return select(c, a * rest, 0) if b == 0 else select(c, 0, b * rest)

    return expr.replace(is_guarded_product, pull_in)


def drop_vanishing_selects(expr, nonnegative, scalars):
    """select(c, c·r, 0) -> c·r where c is never negative (a ReLU's output): the product is 0 already where
    the select takes 0, so its mask pass goes (W4's mean-square loss: ∂/∂relu = 2·relu/n).  Only when r is
    built by sums and products of arguments and divisions by scalars: then r is finite where the mask
    product it replaces (c·r)·(c > 0) is, and both are NaN where it is not."""
    def finite(r):
        return (r.is_Number or r.is_Symbol or r.is_Pow and r.base in scalars and r.exp.is_Number
                or (r.is_Mul or r.is_Add) and all(finite(t) for t in r.args))

    def vanishes(e):
        return (isinstance(e, select) and e.args[0] in nonnegative and e.args[2] == 0 and e.args[1].is_Mul
                and e.args[0] in e.args[1].args and finite(e.args[1] / e.args[0]))

    return expr.replace(vanishes, lambda e: e.args[1])


def _nonnegative(graph, node) -> bool:
    """Whether a node is a ReLU's output (relu alone or a fused expression ending in one)."""
    data = graph.nx.nodes[node]
    return data["op"] == "relu" or data["op"] == "expr" and isinstance(data["attrs"]["expr"], relu)


def _fusable_into(graph, u, v):
    data = graph.nx.nodes[u]
    return (get_op(data["op"]).elementwise and data["dtype"] == graph.nx.nodes[v]["dtype"]
            and all(w == v for w in graph.nx.successors(u)))


def _node_expr(graph, node):
    """(expr, args) of an elementwise node, with scalar constant arguments inlined as numbers."""
    args = graph.args(node)
    data = graph.nx.nodes[node]
    expr, syms = node_formula(data["op"], len(args), data["attrs"])
    return expr, list(zip(syms, args))


def _absorb(graph, v):
    expr, pairs = _node_expr(graph, v)
    changed = False
    while True:
        target = next(((s, a) for s, a in pairs if _fusable_into(graph, a, v)), None)
        if target is None:
            break
        u = target[1]
        inner, inner_pairs = _node_expr(graph, u)
        fresh = {s: sympy.Dummy(s.name, real=True) for s, _ in inner_pairs}
        inlined = inner.xreplace(fresh)
        candidate = expr.xreplace({s: inlined for s, a in pairs if a == u})
        if sympy.count_ops(candidate) > MAX_FUSED_OPS:
            break
        expr = candidate
        pairs = [(s, a) for s, a in pairs if a != u] + [(fresh[s], a) for s, a in inner_pairs]
        _set_args(graph.nx, v, [a for _, a in pairs])
        graph.nx.remove_node(u)  # v was its only consumer
        changed = True
    consts = {s: graph.nx.nodes[a]["attrs"]["value"] for s, a in pairs
              if graph.nx.nodes[a]["op"] == "const" and graph.nx.nodes[a]["shape"] == ()
              and not isinstance(graph.nx.nodes[a]["attrs"]["value"], np.ndarray)}
    if consts:
        expr = expr.xreplace({s: sympy.sympify(value) for s, value in consts.items()})
        pairs = [(s, a) for s, a in pairs if s not in consts]
        changed = True
    nonnegative = {s for s, a in pairs if _nonnegative(graph, a)}
    scalars = {s for s, a in pairs if graph.nx.nodes[a]["shape"] == ()}
    simplified = guard_selects(drop_vanishing_selects(expr, nonnegative, scalars))
    if not changed and simplified == expr:
        return False
    # one symbol per distinct argument node, numbered in argument order
    unique = list(dict.fromkeys(a for _, a in pairs))
    symbols = expr_symbols(len(unique))
    expr = simplified.xreplace({s: symbols[unique.index(a)] for s, a in pairs})
    graph.nx.nodes[v].update(op="expr", attrs={"expr": expr})
    _set_args(graph.nx, v, unique)
    return True


def fuse_elementwise(graph):
    """Fold each elementwise node used by a single elementwise consumer into that consumer.

    The result is one ``expr`` node per fused region, a SymPy expression that
    code generation prints as one block (after ``sympy.cse``).
    """
    candidates = [n for n in topological_order(graph) if _op(graph, n).elementwise]
    work = graph.copy()
    changed = False
    for v in candidates:
        if v in work.nx:
            changed |= _absorb(work, v)
    return dead_code(work) if changed else graph


STABILITY_PASSES = (log_softmax_rewrite, log_sigmoid_rewrite, log_one_minus_sigmoid_rewrite, softplus_rewrite,
                    log1p_rewrite)
REWRITES = (*STABILITY_PASSES, pool_before_relu, inner_products)  # also run before differentiation: the backward gains
PASSES = (dead_code, *REWRITES, constant_fold, common_subexpressions, fuse_elementwise)  # fusion last


def optimise(graph, training: bool = True, passes=PASSES, max_rounds: int = 10):
    """Run the passes in order, repeatedly, until none changes the graph."""
    graph = specialize_mode(graph, training)
    for _ in range(max_rounds):
        before = graph
        for p in passes:
            graph = p(graph)
        if graph is before:
            break
    return graph
