"""Declare: the IR is a `networkx.MultiDiGraph`; `Graph` and `Tensor` are handles on it.

Every node carries ``op`` (a registered op name), ``shape`` (a tuple; ``None``
is the batch dimension, bound when the compiled function is called), ``dtype``
and ``attrs``.  An edge ``u -> v`` carries ``index``, the argument position of
``u`` in ``v``; a multigraph, so ``x * x`` has two edges.
"""
from __future__ import annotations

import contextlib
import numbers

import networkx as nx
import numpy as np

from .errors import GraphError
from .ops import get_op
from .ops.elementwise import check_attrs
from . import validate

SOURCE_OPS = ("input", "param", "const")


class Tensor:
    """A handle on one node of a graph, with NumPy-like operators.

    ``+ - * / ** @``, unary ``-`` and the comparisons ``> < >= <=`` add the op's node to the
    graph (broadcasting as NumPy does; shapes are checked at once), with a Python number or
    array on either side.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 3))
    >>> (x @ g.param("w", (3, 2)) + 1.0).sum(axis=1).shape
    (None,)
    """

    __array_priority__ = 1000  # so `ndarray * tensor` defers to Tensor.__rmul__

    def __init__(self, graph: "Graph", node: str):
        self.graph = graph
        self.node = node

    @property
    def data(self) -> dict:
        """The node's attribute dict in ``graph.nx`` (op, shape, dtype, attrs, tags)."""
        return self.graph.nx.nodes[self.node]

    @property
    def shape(self) -> tuple:
        """The static shape; ``None`` marks the batch dimension, fixed at call time."""
        return self.data["shape"]

    @property
    def dtype(self) -> str:
        """The NumPy dtype name, e.g. ``"float32"`` or ``"int64"``."""
        return self.data["dtype"]

    @property
    def op(self) -> str:
        """The registered op that computes this node (``gg.ops()`` lists them)."""
        return self.data["op"]

    @property
    def attrs(self) -> dict:
        """The op's attributes, e.g. ``{"axis": (1,), "keepdims": False}`` for a sum."""
        return self.data["attrs"]

    @property
    def name(self) -> str:
        """The node id in ``graph.nx`` (the same as ``.node``), e.g. ``"fc1.W"`` or ``"fc1/matmul"``."""
        return self.node

    @property
    def ndim(self) -> int:
        """The number of dimensions, ``len(shape)``."""
        return len(self.shape)

    def __repr__(self):
        return f"Tensor({self.node!r}, op={self.op}, shape={shape_text(self.shape)}, dtype={self.dtype})"

    def _repr_svg_(self):
        from .render import svg

        return svg(self)  # None without the dot binary: the notebook shows the text repr

    def _apply(self, op, *args, **attrs):
        return self.graph.apply(op, [self, *args], attrs)

    def _rapply(self, op, other):
        return self.graph.apply(op, [other, self])

    __add__ = lambda self, o: self._apply("add", o)
    __radd__ = lambda self, o: self._rapply("add", o)
    __sub__ = lambda self, o: self._apply("sub", o)
    __rsub__ = lambda self, o: self._rapply("sub", o)
    __mul__ = lambda self, o: self._apply("mul", o)
    __rmul__ = lambda self, o: self._rapply("mul", o)
    __truediv__ = lambda self, o: self._apply("div", o)
    __rtruediv__ = lambda self, o: self._rapply("div", o)
    __pow__ = lambda self, o: self._apply("pow", o)
    __rpow__ = lambda self, o: self._rapply("pow", o)
    __matmul__ = lambda self, o: _matmul(self, self.graph.as_tensor(o))
    __rmatmul__ = lambda self, o: _matmul(self.graph.as_tensor(o), self)
    __neg__ = lambda self: self._apply("neg")
    __gt__ = lambda self, o: self._apply("greater", o)
    __lt__ = lambda self, o: self._rapply("greater", o)
    __ge__ = lambda self, o: self._apply("greater_equal", o)
    __le__ = lambda self, o: self._rapply("greater_equal", o)
    __hash__ = object.__hash__

    def __getitem__(self, index):
        """Basic indexing by ints and slices (``h[:, -1]``), as in NumPy; its gradient scatters back."""
        return self._apply("getitem", index=normalize_index(index, self.ndim))

    @property
    def T(self) -> "Tensor":
        """The transpose with all axes reversed, as ``ndarray.T``."""
        return self.transpose()

    def transpose(self, *axes) -> "Tensor":
        """Permute the axes (``x.transpose(0, 2, 1)`` or a tuple); no axes reverses them."""
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return self._apply("transpose", axes=axes or tuple(reversed(range(self.ndim))))

    def reshape(self, *shape) -> "Tensor":
        """The same values in a new shape (ints or a tuple; ``None`` keeps the batch dimension).

        Beside a batch dimension a -1 is what PyTorch would infer: the known sizes' quotient in
        ``(None, -1)`` (flattening), the batch itself in ``(-1, 12)`` of a ``(None, 3, 4)``."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if None in self.shape and -1 in shape:
            known_in = int(np.prod([d for d in self.shape if d is not None]))
            known_out = int(np.prod([d for d in shape if d not in (None, -1)]))
            if None in shape and known_out and known_in % known_out == 0:
                shape = tuple(known_in // known_out if d == -1 else d for d in shape)
            elif None not in shape and known_out == known_in:
                shape = tuple(None if d == -1 else d for d in shape)
        return self._apply("reshape", shape=tuple(shape))

    def sum(self, axis=None, keepdims=False) -> "Tensor":
        """Sum over ``axis`` (an int, a tuple, or ``None`` for all), as ``np.sum``."""
        return self._apply("sum", axis=normalize_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False) -> "Tensor":
        """Mean over ``axis`` (an int, a tuple, or ``None`` for all), as ``np.mean``."""
        return self._apply("mean", axis=normalize_axis(axis, self.ndim), keepdims=keepdims)

    def max(self, axis=None, keepdims=False) -> "Tensor":
        """Maximum over ``axis``, as ``np.max``; the gradient goes to the maximal entries."""
        return self._apply("max", axis=normalize_axis(axis, self.ndim), keepdims=keepdims)

    def astype(self, dtype) -> "Tensor":
        """The values cast to ``dtype`` (a NumPy dtype or its name)."""
        return self._apply("cast", to=validate.dtype_name(dtype, f"astype of node {self.node!r}"))


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` as NumPy and PyTorch define it for vectors: a 1-D operand is a row on the left, a column
    on the right, and that axis leaves the result.  The matmul op itself takes matrices (batched)."""
    row, column = a.ndim == 1, b.ndim == 1
    out = a.graph.apply("matmul", [a.reshape((1,) + a.shape) if row else a, b.reshape(b.shape + (1,)) if column else b])
    if not (row or column):
        return out
    return out.reshape(out.shape[:-2] + out.shape[-2:][row:2 - column])


def normalize_axis(axis, ndim) -> tuple:
    """Axes as a sorted tuple of non-negative ints (``None`` means all)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
        raise GraphError(f"axis must be an int or a tuple of ints, got {axis!r}")
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise GraphError(f"axis {a} is out of range for a tensor of rank {ndim}")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def normalize_index(index, ndim) -> tuple:
    """A basic index as a hashable tuple of ints and ("slice", start, stop, step)."""
    index = index if isinstance(index, tuple) else (index,)
    out = []
    for item in index:
        if isinstance(item, slice):
            out.append(("slice", item.start, item.stop, item.step))
        elif isinstance(item, numbers.Integral):
            out.append(int(item))
        else:
            raise GraphError(f"only slices and integers can index a tensor, got {item!r}")
    if len(out) > ndim:
        raise GraphError(f"too many indices ({len(out)}) for a tensor of rank {ndim}")
    return tuple(out)


def _fans(shape):
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) > 2:
        receptive = int(np.prod(shape[2:]))
        return shape[1] * receptive, shape[0] * receptive
    n = shape[0] if shape else 1
    return n, n


INITIALIZERS = ("zeros", "ones", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "uniform", "normal")


def check_init(init, shape, what):
    """A param's ``init``: a scheme named in INITIALIZERS, ("uniform", bound), ("normal", std) or an array."""
    if isinstance(init, np.ndarray):
        array = validate.as_array(init, f"{what}: init")
        if array.size != int(np.prod(shape)):
            raise GraphError(f"{what}: init array of shape {array.shape} does not fit shape {shape}")
        return
    kind, arg = (init + (None,))[:2] if isinstance(init, tuple) and len(init) in (1, 2) else (init, None)
    if not isinstance(kind, str) or kind not in INITIALIZERS:
        raise GraphError(f"{what}: unknown initializer {init!r}; use one of {', '.join(INITIALIZERS)}, "
                         "('uniform', bound), ('normal', std) or an array")
    if arg is not None and (isinstance(arg, bool) or not isinstance(arg, numbers.Real) or not np.isfinite(arg)
                            or arg < 0):
        raise GraphError(f"{what}: initializer {init!r} needs a finite non-negative number")
    if kind == "uniform" and arg is None:
        raise GraphError(f"{what}: initializer 'uniform' needs a bound: ('uniform', bound)")


def initial_value(init, shape, rng, dtype):
    """The initial array for a param: a named scheme, ("uniform", bound), or an array."""
    if isinstance(init, np.ndarray):
        return init.astype(dtype).reshape(shape)
    kind, arg = (init[0], init[1]) if isinstance(init, tuple) else (init, None)
    fan_in, fan_out = _fans(shape)
    if kind == "zeros":
        value = np.zeros(shape)
    elif kind == "ones":
        value = np.ones(shape)
    elif kind == "glorot_uniform":
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        value = rng.uniform(-bound, bound, shape)
    elif kind == "glorot_normal":
        value = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif kind == "he_uniform":
        bound = np.sqrt(6.0 / fan_in)
        value = rng.uniform(-bound, bound, shape)
    elif kind == "he_normal":
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif kind == "uniform":
        value = rng.uniform(-arg, arg, shape)
    elif kind == "normal":
        value = rng.normal(0.0, 0.01 if arg is None else arg, shape)
    else:
        raise GraphError(f"unknown initializer {init!r}")
    return value.astype(dtype)


class Graph:
    """A computation graph; ``g.nx`` is the networkx IR.

    >>> g = Graph("tiny")
    >>> x = g.input("x", (None, 3))
    >>> y = (x * x).sum()
    >>> y.shape
    ()
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nx = nx.MultiDiGraph(name=name)
        self._scopes: list[str] = []
        self._names: set[str] = set()
        self._tags: dict = {}
        self.float_dtype = "float32"  # float64 once an input or param is: constants and layer params follow it

    def __repr__(self):
        return f"Graph({self.name!r}, {self.nx.number_of_nodes()} nodes)"

    def _repr_svg_(self):
        from .render import svg

        return svg(self)  # None without the dot binary: the notebook shows the text repr

    # -- naming -----------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str):
        """Nodes created inside are named ``name/...``; layers use this."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    @contextlib.contextmanager
    def tagging(self, **tags):
        """Nodes created inside carry ``tags`` as extra node data (e.g. ``grad_of``, ``time``)."""
        saved = self._tags
        self._tags = {**saved, **tags}
        try:
            yield
        finally:
            self._tags = saved

    def unique_name(self, base: str) -> str:
        """``base`` if unused, else ``base_1``, ``base_2``, ..."""
        name, k = base, 0
        while name in self._names or name in self.nx:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def _node_name(self, base: str) -> str:
        prefix = "/".join(self._scopes)
        return self.unique_name(f"{prefix}/{base}" if prefix else base)

    # -- sources ----------------------------------------------------------
    def _source(self, op, name, shape, dtype, attrs):
        validate.node_name(name, op)
        if name in self.nx:
            raise GraphError(f"a node named {name!r} already exists in graph {self.name!r}")
        shape = validate.shape_tuple(shape, f"{op} {name!r}", batch=op != "param")
        dtype = validate.dtype_name(dtype, f"{op} {name!r}")
        self._names.add(name)
        self.nx.add_node(name, op=op, shape=shape, dtype=dtype, attrs=attrs)
        if dtype == "float64":
            self.float_dtype = dtype
        return Tensor(self, name)

    def input(self, name: str, shape, dtype="float32") -> Tensor:
        """A value fed at call time; ``None`` in ``shape`` is the batch dimension."""
        return self._source("input", name, shape, dtype, {})

    def param(self, name: str, shape, init="glorot_uniform", dtype="float32", trainable=True) -> Tensor:
        """A parameter living in the params dict; ``trainable=False`` for state such as running means."""
        what = f"param {name!r}"
        shape = validate.shape_tuple(shape, f"{what} (params need a concrete shape)", batch=False)
        check_init(init, shape, what)
        if not isinstance(trainable, (bool, np.bool_)):
            raise GraphError(f"{what}: trainable must be True or False, got {trainable!r}")
        return self._source("param", name, shape, dtype, {"init": init, "trainable": bool(trainable)})

    def const(self, value, dtype=None) -> Tensor:
        """A constant; Python scalars stay weakly typed, as in NumPy."""
        if isinstance(value, (bool, numbers.Real)) and not isinstance(value, np.ndarray):
            dtype = validate.dtype_name(dtype or ("bool" if isinstance(value, bool) else self.float_dtype), "const")
            shape = ()
        else:
            value = validate.as_array(value, "const")
            if dtype is not None:
                value = value.astype(validate.dtype_name(dtype, "const"))
            elif value.dtype == np.float64:  # NumPy's default float follows the graph's
                value = value.astype(self.float_dtype)
            dtype, shape = value.dtype.name, value.shape
        name = self._node_name("const")
        self.nx.add_node(name, op="const", shape=tuple(shape), dtype=dtype, attrs={"value": value}, **self._tags)
        return Tensor(self, name)

    # -- ops --------------------------------------------------------------
    def as_tensor(self, value, beside=()) -> Tensor:
        """A Tensor of this graph for ``value``: a Tensor passes through, a number or array becomes a const.

        A Python int is weakly typed, as in PyTorch and NumPy: beside integer tensors (the other
        arguments of its op) it takes their integer type, so ``x * 2`` stays int64 for an int64 ``x``.
        """
        if isinstance(value, Tensor):
            if value.graph is not self:
                raise GraphError(f"tensor {value.node!r} belongs to graph {value.graph.name!r}, not {self.name!r}")
            return value
        integers = [t.dtype for t in beside if np.dtype(t.dtype).kind in "iu"]
        if integers and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return self.const(value, np.result_type(*integers).name)
        return self.const(value)

    def apply(self, op_name: str, args, attrs=None, name=None) -> Tensor:
        """Add a node ``op_name(*args)``; its arity, attrs and shapes are checked here."""
        try:
            op = get_op(op_name)
        except (KeyError, TypeError):
            raise GraphError(f"unknown op {op_name!r}; gg.ops() lists the registered ones") from None
        attrs = dict(attrs or {})
        tensors = [a for a in args if isinstance(a, Tensor)]
        args = [self.as_tensor(a, tensors) for a in args]
        node = self._node_name(name or op_name)
        if op.arity is not None and len(args) != op.arity:
            raise GraphError(f"{op_name} node {node!r} takes {op.arity} arguments, got {len(args)}")
        shapes = [a.shape for a in args]
        try:
            shape = tuple(op.shape(shapes, attrs))
            dtype = op.dtype([a.dtype for a in args], attrs)
        except GraphError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, ZeroDivisionError) as e:
            raise validate.op_failure(op_name, node, e, _fmt_shapes(shapes)) from None
        if op.elementwise:  # attrs the formula does not take fail here, not in generated code
            try:
                check_attrs(op_name, len(args), attrs)
            except TypeError as e:
                raise GraphError(f"{op_name} node {node!r}: attrs {attrs} do not fit the op's formula "
                                 f"({type(e).__name__}: {e})") from None
        shape = validate.shape_tuple(shape, f"{op_name} node {node!r} (from attrs {attrs})")
        dtype = validate.dtype_name(dtype, f"{op_name} node {node!r}")
        self.nx.add_node(node, op=op_name, shape=shape, dtype=dtype, attrs=attrs, **self._tags)
        for i, a in enumerate(args):
            self.nx.add_edge(a.node, node, index=i)
        return Tensor(self, node)

    def args(self, node: str) -> list[str]:
        """The argument nodes of ``node`` in argument order."""
        # from the predecessor dicts, not an in_edges view: 3x faster, and passes call it per node
        indexed = [(data["index"], u) for u, keys in self.nx.pred[node].items() for data in keys.values()]
        return [u for _, u in sorted(indexed)]

    # -- access -----------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        if name not in self.nx or self.nx.nodes[name]["op"] not in ("input", "param"):
            raise KeyError(f"graph {self.name!r} has no input or param named {name!r}")
        return Tensor(self, name)

    def tensor(self, node: str) -> Tensor:
        """The Tensor handle of an existing node id (any node, unlike ``g[name]``)."""
        return Tensor(self, node)

    def _sources(self, op):
        return [Tensor(self, n) for n, d in self.nx.nodes(data=True) if d["op"] == op]

    @property
    def inputs(self) -> list[Tensor]:
        return self._sources("input")

    @property
    def params(self) -> list[Tensor]:
        """The trainable params, in creation order."""
        return [t for t in self._sources("param") if t.attrs.get("trainable", True)]

    @property
    def state(self) -> list[Tensor]:
        """Non-trainable params (running statistics) that also live in the params dict."""
        return [t for t in self._sources("param") if not t.attrs.get("trainable", True)]

    def init_params(self, seed: int = 0) -> dict:
        """A fresh params dict ``name -> ndarray``, deterministic for a seed."""
        rng = np.random.default_rng(seed)
        return {t.node: initial_value(t.attrs["init"], t.shape, rng, t.dtype) for t in self._sources("param")}

    def copy(self) -> "Graph":
        """An independent copy (its own networkx graph), so passes and gradients leave this one alone."""
        new = Graph(self.name)
        new.nx = self.nx.copy()
        new._names = set(self._names)
        new.float_dtype = self.float_dtype
        return new

    # -- interchange ------------------------------------------------------
    @classmethod
    def from_networkx(cls, G, name=None) -> "Graph":
        """Build a graph from a plain networkx graph written with op/shape/dtype/attrs and edge ``index``.

        Cycles, unknown ops, missing or duplicate argument indices and wrong
        shapes raise `GraphError` naming the node.
        """
        validate.check_digraph(G)
        g = cls(name or G.graph.get("name") or "graph")
        for node in nx.lexicographical_topological_sort(G, key=str):
            op_name = validate.check_node_data(G, node, get_op)
            args = validate.argument_indices(G, node, op_name)
            data = G.nodes[node]
            attrs = validate.plain_attrs(data.get("attrs"), f"{op_name} node {node!r}")
            if op_name in SOURCE_OPS:
                _add_source(g, node, op_name, data, attrs)
                continue
            made = g.apply(op_name, [Tensor(g, a) for a in args], attrs, name=node)
            if made.node != node:  # the name was free in G, so it must be here too
                raise GraphError(f"node name {node!r} clashes with a generated name")
            declared = data.get("shape")
            if declared is not None and tuple(declared) != made.shape:
                raise GraphError(f"node {node!r} ({op_name}): declared shape {tuple(declared)} but its inputs "
                                 f"{_fmt_shapes([g.nx.nodes[a]['shape'] for a in args])} give {made.shape}")
            declared = data.get("dtype")
            if declared is not None and validate.dtype_name(declared, node) != made.dtype:
                raise GraphError(f"node {node!r} ({op_name}): declared dtype {declared} but its inputs give "
                                 f"{made.dtype}")
        return g


def _add_source(g, node, op_name, data, attrs):
    dtype = data.get("dtype") or "float32"
    if op_name == "input":
        g.input(node, data["shape"], dtype)
    elif op_name == "param":
        attrs = {"init": "glorot_uniform", "trainable": True} | attrs
        g.param(node, data["shape"], attrs.pop("init"), dtype, attrs.pop("trainable"))
        g.nx.nodes[node]["attrs"] |= attrs
    else:
        if "value" not in attrs:
            raise GraphError(f"const node {node!r} has no attrs['value']")
        value = validate.as_array(attrs["value"], f"const node {node!r}")
        shape = validate.shape_tuple(data["shape"], f"const node {node!r}", batch=False)
        if value.shape != shape:
            raise GraphError(f"const node {node!r}: declared shape {shape} but its value has shape {value.shape}")
        dtype = validate.dtype_name(dtype, f"const node {node!r}")
        value = value.astype(dtype)
        value = value.item() if not shape and not isinstance(attrs["value"], np.ndarray) else value  # weakly typed
        g._names.add(node)
        g.nx.add_node(node, op=op_name, shape=shape, dtype=dtype, attrs=attrs | {"value": value})


def shape_text(shape) -> str:
    """A shape as Python writes the tuple, the batch dimension as N: (N, 784), (10,), ()."""
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _fmt_shapes(shapes) -> str:
    return ", ".join(shape_text(s) for s in shapes)


def canonical(value) -> str:
    """A deterministic text for an attribute value, for hashing and merging equal nodes."""
    if isinstance(value, np.ndarray):
        import hashlib

        return f"array({value.dtype},{value.shape},{hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()})"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{canonical(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(canonical(v) for v in value) + ")"
    if hasattr(value, "free_symbols"):  # a SymPy expression
        import sympy

        return sympy.srepr(value)
    return repr(value)
