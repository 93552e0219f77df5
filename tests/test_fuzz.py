"""Fuzzing the boundary: malformed networkx graphs, feeds, params and files.

Whatever is thrown at `Graph.from_networkx`, `compile`, a compiled call or
`load_params`, the only exception that may escape is `gg.GraphError`; a step
that raises leaves every param as it was.
"""
import os

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphgrad as gg

FUZZ = settings(max_examples=int(os.environ.get("GRAPHGRAD_FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=True)


# -- well-formed graphs to damage ---------------------------------------------------------
def _mlp():
    g = gg.Graph("mlp")
    x, y = g.input("x", (None, 3)), g.input("y", (None,), dtype="int64")
    h = gg.nn.Dense(4, activation="relu", name="fc1")(x)
    return g, gg.softmax_cross_entropy(gg.nn.Dense(3, name="fc2")(h), y)


def _elementwise():
    g = gg.Graph("ew")
    a, b = g.input("a", (2, 3)), g.input("b", (3,))
    w = g.param("w", (3,))
    return g, (gg.tanh(a * w) + gg.exp(b) / 2.0 - gg.log1p(gg.sigmoid(a))).mean(axis=0).sum()


def _batch_norm():
    g = gg.Graph("bn")
    x = g.input("x", (None, 2, 3, 3))
    h = gg.nn.Conv2D(2, 2, name="conv")(x)
    h = gg.nn.BatchNorm(name="bn")(h)
    return g, gg.nn.Flatten()(gg.nn.MaxPool2D(2)(h)).max(axis=1).mean()


def _recurrent():
    g = gg.Graph("rnn")
    x = g.input("x", (None, 4, 2))
    h = gg.nn.GRU(3, name="gru")(x)
    return g, gg.mse(gg.nn.Dense(1, name="fc")(h), 0.5)


BASES = [_mlp, _elementwise, _batch_norm, _recurrent]

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=4),
    st.just("float33"), st.just(1j), st.just([1, [2]]), st.just(object()), st.just({"axis": 0}),
    st.tuples(st.one_of(st.none(), st.integers(-2, 4), st.floats(0, 3), st.text(max_size=1)), st.integers(0, 3)),
    st.lists(st.integers(0, 3), max_size=3), st.just(np.ones(2)), st.just(np.array(["a"])),
)

# values that look right but may not fit where they land: other shapes, axes, indices, op names
PLAUSIBLE = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=4).map(tuple), st.integers(-3, 5),
    st.lists(st.integers(-2, 4), max_size=3).map(tuple), st.sampled_from(["float64", "int64", "bool", "relu", "lstm"]),
    st.tuples(st.tuples(st.just("slice"), st.integers(-3, 3), st.none(), st.none())), st.floats(-2, 2),
)


@st.composite
def damaged_graphs(draw):
    """A well-formed graph's ``g.nx`` with one to three random damages."""
    g, loss = draw(st.sampled_from(BASES))()
    G = g.nx.copy()
    nodes = sorted(G.nodes)
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.sampled_from(nodes))
        kind = draw(st.sampled_from(["shape", "dtype", "op", "attrs", "attr", "drop_attr", "index", "edge",
                                     "unedge", "unnode", "newnode", "data"]))
        data = G.nodes[node] if node in G else {}
        if kind in ("shape", "dtype", "op", "attrs") and node in G:
            data[kind] = draw(st.one_of(JUNK, st.sampled_from(gg.ops()))) if kind == "op" else \
                draw(st.one_of(JUNK, PLAUSIBLE))
        elif kind == "attr" and isinstance(data.get("attrs"), dict):
            key = draw(st.sampled_from(sorted(data["attrs"]) + ["axis", "index", "shape", "alpha", "keepdims"]))
            data["attrs"] = {**data["attrs"], key: draw(st.one_of(JUNK, PLAUSIBLE))}
        elif kind == "drop_attr" and isinstance(data.get("attrs"), dict) and data["attrs"]:
            data["attrs"] = dict(list(data["attrs"].items())[1:])
        elif kind == "index" and node in G and G.in_degree(node):
            u, v, k = draw(st.sampled_from(sorted(G.in_edges(node, keys=True), key=str)))
            G.edges[u, v, k]["index"] = draw(JUNK)
        elif kind == "edge":
            G.add_edge(draw(st.sampled_from(nodes)), node, index=draw(st.one_of(st.integers(0, 3), JUNK)))
        elif kind == "unedge" and node in G and G.in_degree(node):
            G.remove_edge(*draw(st.sampled_from(sorted(G.in_edges(node, keys=True), key=str))))
        elif kind == "unnode" and node in G:
            G.remove_node(node)
        elif kind == "newnode":
            G.add_node(draw(st.one_of(st.text(max_size=3), st.integers())), **draw(
                st.dictionaries(st.sampled_from(["op", "shape", "dtype", "attrs"]), JUNK)))
        elif kind == "data" and node in G:
            data.pop(draw(st.sampled_from(["op", "shape", "dtype", "attrs"])), None)
    return G


def feeds_for(g, batch=2, rng=np.random.default_rng(0)):
    feeds = {}
    for t in g.inputs:
        shape = tuple(batch if d is None else d for d in t.shape)
        feeds[t.node] = rng.integers(0, 2, shape) if t.dtype.startswith("int") else rng.normal(size=shape)
    return feeds


def exercise(G):
    """Build, compile and run a networkx graph the way a user would; returns what escaped (None: nothing)."""
    try:
        g = gg.Graph.from_networkx(G)
        sinks = [g.tensor(n) for n in g.nx if g.nx.out_degree(n) == 0 and g.nx.nodes[n]["op"] not in
                 ("input", "param", "const", "assign")]
        if not sinks:
            return None
        params, feeds = g.init_params(), feeds_for(g)
        with np.errstate(all="ignore"):
            gg.compile(sinks)(params, **feeds)
            if sinks[0].shape == () and g.params:
                gg.compile(sinks[0], optimizer=gg.optim.SGD(0.1), check_finite=True)(params, **feeds)
    except gg.GraphError:
        return None
    except Exception as e:  # noqa: BLE001 -- what the fuzzing looks for
        return e
    return None


@FUZZ
@given(damaged_graphs())
def test_malformed_networkx_graphs_raise_only_graph_error(G):
    escaped = exercise(G)
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"


def test_the_undamaged_bases_run():
    for base in BASES:
        g, loss = base()
        rebuilt = gg.Graph.from_networkx(g.nx)
        assert np.isfinite(gg.compile(rebuilt.tensor(loss.node))(g.init_params(), **feeds_for(g)))


# -- feeds and params ---------------------------------------------------------------------
VALUES = st.one_of(
    JUNK, st.just([[1.0, 2.0, 3.0], [1.0, 2.0]]), st.just(np.ones((2, 3), complex)), st.just(np.ones((2, 3), object)),
    st.just(np.zeros((0, 3))), st.just(np.ones((2, 3), np.float16)), st.just(np.ones((2, 3), bool)),
    st.just(np.full((2, 3), np.nan)), st.just(np.ones((3, 2))), st.just(np.ones((2, 3, 1))), st.just("x"),
    st.just(np.ones((2, 3), np.int8)), st.just([0, 1]), st.just(np.array([0, 7])), st.just(np.array([-1, 0])),
)


def read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


@st.composite
def damaged_params(draw, good):
    params = {k: v.copy() for k, v in good.items()}
    for name in draw(st.lists(st.sampled_from(sorted(good)), min_size=1, max_size=3, unique=True)):
        params[name] = draw(st.one_of(VALUES, st.just(read_only(good[name].shape)),
                                      st.just(good[name].tolist()), st.just(good[name].astype(np.float64)),
                                      st.just(good[name].astype(np.int64))))
    return params


@FUZZ
@given(st.data())
def test_malformed_feeds_and_params_raise_only_graph_error_and_change_nothing(data):
    g, loss = data.draw(st.sampled_from([_mlp, _batch_norm, _recurrent]))()
    good = g.init_params()
    feeds = feeds_for(g)
    for name in data.draw(st.lists(st.sampled_from(sorted(feeds)), max_size=2, unique=True)):
        feeds[name] = data.draw(VALUES)
    params = data.draw(damaged_params(good)) if data.draw(st.booleans()) else {k: v.copy() for k, v in good.items()}
    with np.errstate(all="ignore"):
        try:
            gg.compile(loss, training=False)(params, **feeds)
        except gg.GraphError:
            pass
    before = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in params.items()}
    try:
        with np.errstate(all="ignore"):
            gg.compile(loss, optimizer=gg.optim.Adam(0.1))(params, **feeds)
    except gg.GraphError:
        for name, value in params.items():  # a failed step wrote nothing
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.shape == np.shape(before[name]):
                assert np.array_equal(value, before[name], equal_nan=True), f"param {name!r} was changed"


# -- files ----------------------------------------------------------------------------------
@FUZZ
@given(st.sampled_from(["bytes", "truncated", "empty", "npy", "object", "directory", "missing", "text"]),
       st.binary(max_size=64), st.integers(1, 400))
def test_malformed_params_files_raise_only_graph_error_naming_the_file(tmp_path_factory, kind, junk, cut):
    path = tmp_path_factory.mktemp("files") / "params.npz"
    g, _ = _mlp()
    params = g.init_params()
    if kind == "bytes":
        path.write_bytes(junk)
    elif kind in ("truncated", "empty"):
        gg.save_params(path, params)
        whole = path.read_bytes()
        path.write_bytes(whole[:min(cut, len(whole) - 1) if kind == "truncated" else 0])
    elif kind == "npy":
        np.save(open(path, "wb"), params["fc1.W"])
    elif kind == "object":
        np.savez(open(path, "wb"), **{"fc1.W": np.array([{"a": 1}], dtype=object)})
    elif kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("fc1.W = [1, 2]")
    with pytest.raises(gg.GraphError, match="params.npz"):
        gg.load_params(path, g)
