"""Declare: the one boundary check of everything that comes from outside the library.

Shapes, dtypes, names and attrs given to `Graph.input`/`param` or written into a
networkx graph, the feeds and params a compiled function is called with, and the
arrays read from files all pass through here, so that a bad value is a
`GraphError` naming the node, input, param or file and what is wrong with it,
and nothing inside ever sees malformed data.
"""
from __future__ import annotations

import numbers
import re

import networkx as nx
import numpy as np

from .errors import GraphError

NAME = re.compile(r"[A-Za-z_][\w./-]*")
# what a graph computes in: floats of the two widths generated code works in, integers (labels) and bools
DTYPE_KINDS = {"f": (4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,)}


def dtype_name(dtype, what: str) -> str:
    """The canonical name of a supported dtype (``"float32"``), else a GraphError naming ``what``."""
    try:
        parsed = np.dtype(dtype)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.itemsize not in DTYPE_KINDS.get(parsed.kind, ()):
        raise GraphError(f"{what}: unsupported dtype {dtype!r}; use float32, float64, an integer type or bool")
    return parsed.name


def shape_tuple(shape, what: str, batch: bool = True) -> tuple:
    """``shape`` as a tuple of non-negative ints, with ``None`` for the batch dimension when ``batch``."""
    if not isinstance(shape, (tuple, list)):
        raise GraphError(f"{what}: shape must be a tuple of ints, got {shape!r}")
    for d in shape:
        if d is None and batch:
            continue
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            allowed = "ints or None (the batch)" if batch else "ints"
            raise GraphError(f"{what}: shape {tuple(shape)!r} has dimension {d!r}; dimensions are {allowed}")
        if d < 0:
            raise GraphError(f"{what}: shape {tuple(shape)!r} has a negative dimension {d}")
    return tuple(None if d is None else int(d) for d in shape)


def node_name(name, what: str) -> str:
    """The name of an input or param: it becomes a feed keyword and a params key."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GraphError(f"{what} name {name!r} must be a string that starts with a letter and uses letters, "
                         "digits, '_', '.', '/' or '-'")
    return name


def op_node_name(name) -> str:
    """The name of any other node: a one-line string (it appears in generated code's comments)."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise GraphError(f"node {name!r}: node names are non-empty one-line strings")
    return name


def plain_attrs(attrs, what: str) -> dict:
    """A copy of an attrs dict whose keys are strings and whose values are plain data (numbers,
    strings, tuples, arrays, SymPy expressions); lists become tuples so that attrs stay hashable."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise GraphError(f"{what}: attrs must be a dict, got {type(attrs).__name__}")
    for key in attrs:
        if not isinstance(key, str):
            raise GraphError(f"{what}: attr names must be strings, got {key!r}")
    return {key: _plain(value, f"{what}: attr {key!r}") for key, value in attrs.items()}


def _plain(value, what):
    if value is None or isinstance(value, (bool, numbers.Number, str, np.ndarray)) or hasattr(value, "free_symbols"):
        if isinstance(value, np.ndarray) and value.dtype.kind not in "fiub":
            raise GraphError(f"{what} is an array of {value.dtype}, not numbers")
        if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
            raise GraphError(f"{what} is complex ({value!r})")
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v, what) for v in value)
    if isinstance(value, dict):
        return plain_attrs(value, what)
    raise GraphError(f"{what} has a value of type {type(value).__name__} ({value!r:.60}); attrs hold numbers, "
                     "strings and tuples")


def op_failure(op_name, node, error, shapes_text) -> GraphError:
    """The GraphError for an op's shape or dtype rule failing on the given attrs and argument shapes."""
    if isinstance(error, KeyError):
        return GraphError(f"{op_name} node {node!r}: missing required attr {error.args[0]!r}; "
                          f"input shapes {shapes_text}")
    if isinstance(error, ValueError):
        return GraphError(f"{op_name} node {node!r}: {error}; input shapes {shapes_text}")
    return GraphError(f"{op_name} node {node!r}: attrs do not fit the op ({type(error).__name__}: {error}); "
                      f"input shapes {shapes_text}")


# -- the networkx IR ------------------------------------------------------------------
def check_digraph(G) -> None:
    if not isinstance(G, nx.DiGraph):
        raise GraphError(f"expected a directed networkx graph (nx.MultiDiGraph or nx.DiGraph), got "
                         f"{type(G).__name__}")
    if not nx.is_directed_acyclic_graph(G):
        cycle = [u for u, *_ in nx.find_cycle(G)]
        raise GraphError(f"graph has a cycle through node {cycle[0]!r}: {' -> '.join(map(repr, cycle + cycle[:1]))}")


def argument_indices(G, node, op_name) -> list:
    """The in-edges of ``node`` sorted by their ``index``, checked to be the ints 0..n-1 once each."""
    edges = list(G.in_edges(node, data=True))
    indices = [d.get("index") for _, _, d in edges]
    if any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in indices) or \
            sorted(indices) != list(range(len(indices))):
        raise GraphError(f"node {node!r} ({op_name}): argument indices (edge 'index') must be the ints "
                         f"0..{len(indices) - 1} once each, got {indices}")
    return [u for u, _, _ in sorted(edges, key=lambda e: e[2]["index"])]


def check_node_data(G, node, get_op) -> str:
    """Check what one node of a networkx IR declares (name, op, shape, dtype, attrs); returns its op name."""
    op_node_name(node)
    data = G.nodes[node]
    op_name = data.get("op")
    if not isinstance(op_name, str):
        raise GraphError(f"node {node!r}: 'op' must be the name of a registered op (a string), got {op_name!r}")
    try:
        op = get_op(op_name)
    except KeyError as e:
        raise GraphError(f"node {node!r}: {e.args[0]}") from None
    if op.source:
        if G.in_degree(node):
            raise GraphError(f"{op_name} node {node!r} takes no arguments, but has edges from "
                             f"{sorted(map(str, G.predecessors(node)))}")
        if "shape" not in data:
            raise GraphError(f"{op_name} node {node!r} has no 'shape'")
    if data.get("shape") is not None:
        shape_tuple(data["shape"], f"{op_name} node {node!r}", batch=op_name != "param")
    if data.get("dtype") is not None:
        dtype_name(data["dtype"], f"{op_name} node {node!r}")
    plain_attrs(data.get("attrs"), f"{op_name} node {node!r}")
    return op_name


def check_ir(G, get_op, nodes=None) -> None:
    """Check an IR before anything walks it: a DAG whose nodes and edges are well formed (a graph
    edited through ``g.nx`` may be anything)."""
    check_digraph(G)
    for node in G.nodes if nodes is None else nodes:
        op_name = check_node_data(G, node, get_op)
        argument_indices(G, node, op_name)
        if "shape" not in G.nodes[node] or "dtype" not in G.nodes[node]:
            raise GraphError(f"{op_name} node {node!r} has no {'shape' if 'shape' not in G.nodes[node] else 'dtype'}")


# -- values from the caller --------------------------------------------------------------
def as_array(value, what: str) -> np.ndarray:
    """``value`` as a NumPy array of real numbers, else a GraphError naming ``what``."""
    if type(value) is np.ndarray and value.dtype.kind in "fiub":  # the common case, checked cheaply
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise GraphError(f"{what} cannot be read as an array ({e.__class__.__name__}: {_first_line(e)}); "
                         "nested lists must be rectangular") from None
    if array.dtype.kind == "c":
        raise GraphError(f"{what} is complex ({array.dtype}); only real values can be fed")
    if array.dtype.kind not in "fiub":
        raise GraphError(f"{what} expects numbers, got {array.dtype}")
    return array


def _first_line(error) -> str:
    return str(error).split("\n")[0].split(". ")[0]
