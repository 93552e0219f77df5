"""One test per class of bad input: each raises gg.GraphError naming the node (or input), op and shapes."""
import networkx as nx
import numpy as np
import pytest

import graphgrad as gg


def small():
    g = gg.Graph("small")
    x = g.input("x", (None, 3))
    y = g.input("y", (None,), dtype="int64")
    logits = gg.nn.Dense(4, name="fc")(x)
    return g, x, y, logits, gg.softmax_cross_entropy(logits, y)


def test_shape_mismatch_names_op_node_and_shapes():
    g = gg.Graph()
    a, b = g.input("a", (2, 3)), g.input("b", (4, 5))
    with pytest.raises(gg.GraphError, match=r"matmul node 'matmul'.*\(2, 3\), \(4, 5\)"):
        a @ b
    with pytest.raises(gg.GraphError, match=r"add node 'add'.*\(2, 3\), \(4, 5\)"):
        a + b


def test_mean_of_integers_asks_for_a_cast():
    """As PyTorch: which float the mean of int64 labels is in is the caller's choice (NumPy would give float64)."""
    g = gg.Graph("m")
    y = g.input("y", (None,), dtype="int64")
    with pytest.raises(gg.GraphError, match=r"mean node 'mean'.*needs a float tensor, got int64.*astype"):
        y.mean()
    assert y.astype("float32").mean().dtype == "float32"


def test_dense_with_wrong_feature_size_names_the_layer():
    g = gg.Graph()
    layer = gg.nn.Dense(2, name="fc")
    layer(g.input("a", (None, 3)))
    with pytest.raises(gg.GraphError, match="Dense 'fc'.*3 input features"):
        layer(g.input("b", (None, 5)))


def test_missing_extra_misshaped_and_mistyped_feeds():
    g, x, y, logits, loss = small()
    f = gg.compile(loss)
    params = g.init_params()
    X, Y = np.ones((2, 3), np.float32), np.array([0, 1])
    with pytest.raises(gg.GraphError, match="missing feed for input 'y'"):
        f(params, x=X)
    with pytest.raises(gg.GraphError, match="unexpected feed 'z'"):
        f(params, x=X, y=Y, z=X)
    with pytest.raises(gg.GraphError, match=r"input 'x' expects shape \(N, 3\), got \(2, 4\)"):
        f(params, x=np.ones((2, 4)), y=Y)
    with pytest.raises(gg.GraphError, match="input 'y' expects integers"):
        f(params, x=X, y=Y.astype(np.float32))
    with pytest.raises(gg.GraphError, match="input 'x' expects numbers"):
        f(params, x=np.array([["a", "b", "c"]]), y=Y[:1])
    with pytest.raises(gg.GraphError, match="batch size 3, but input 'x' has 2"):
        f(params, x=X, y=np.array([0, 1, 2]))


def test_missing_or_misshaped_params():
    g, x, y, logits, loss = small()
    f = gg.compile(loss)
    params = g.init_params()
    X, Y = np.ones((2, 3), np.float32), np.array([0, 1])
    with pytest.raises(gg.GraphError, match="param 'fc.b'"):
        f({k: v for k, v in params.items() if k != "fc.b"}, x=X, y=Y)
    with pytest.raises(gg.GraphError, match=r"param 'fc.W' expects shape \(3, 4\)"):
        f({**params, "fc.W": np.ones((4, 3))}, x=X, y=Y)


def test_runtime_failure_names_the_node_not_a_numpy_traceback():
    g, x, y, logits, loss = small()
    f = gg.compile(loss)
    with pytest.raises(gg.GraphError, match=r"one_hot node 'one_hot'.*labels must lie in \[0, 4\)"):
        f(g.init_params(), x=np.ones((2, 3), np.float32), y=np.array([0, 7]))


def test_check_finite_reports_the_first_bad_node():
    g = gg.Graph()
    x = g.input("x", (3,))
    loss = (gg.log(x) * 2.0).sum()
    f = gg.compile(loss, check_finite=True)
    with np.errstate(all="ignore"), pytest.raises(gg.GraphError, match=r"node 'log' \(log\) produced NaN or Inf"):
        f({}, x=np.array([1.0, -1.0, 2.0], np.float32))
    assert float(f({}, x=np.ones(3, np.float32))) == 0.0


def test_grad_of_non_scalar_needs_a_seed():
    g, x, y, logits, loss = small()
    with pytest.raises(gg.GraphError, match="scalar output.*'fc/add'"):
        gg.grad(logits, [g["fc.W"]])
    with pytest.raises(gg.GraphError, match="scalar first output"):
        gg.compile(logits, wrt=g.params)


def test_tensors_from_two_graphs_do_not_mix():
    a = gg.Graph("one").input("a", (2,))
    b = gg.Graph("two").input("b", (2,))
    with pytest.raises(gg.GraphError, match="belongs to graph 'two'"):
        a + b


def written(**edges):
    return edges


def test_from_networkx_round_trip():
    g, x, y, logits, loss = small()
    rebuilt = gg.Graph.from_networkx(g.nx)
    assert nx.utils.graphs_equal(rebuilt.nx, g.nx) or sorted(rebuilt.nx.nodes) == sorted(g.nx.nodes)
    params = g.init_params(seed=3)
    X, Y = np.ones((2, 3), np.float32), np.array([0, 1])
    assert float(gg.compile(rebuilt.tensor(loss.node))(params, x=X, y=Y)) == pytest.approx(
        float(gg.compile(loss)(params, x=X, y=Y)))


def hand_written():
    G = nx.MultiDiGraph()
    G.add_node("a", op="input", shape=(2, 3), dtype="float32", attrs={})
    G.add_node("b", op="input", shape=(3, 4), dtype="float32", attrs={})
    G.add_node("m", op="matmul", shape=(2, 4), dtype="float32", attrs={})
    G.add_node("s", op="sum", shape=(), dtype="float32", attrs={"axis": (0, 1), "keepdims": False})
    G.add_edge("a", "m", index=0)
    G.add_edge("b", "m", index=1)
    G.add_edge("m", "s", index=0)
    return G


def test_from_networkx_builds_a_hand_written_graph():
    g = gg.Graph.from_networkx(hand_written())
    out = gg.compile(g.tensor("s"))({}, a=np.ones((2, 3), np.float32), b=np.ones((3, 4), np.float32))
    assert float(out) == 24.0


@pytest.mark.parametrize("damage, message", [
    (lambda G: G.add_edge("s", "m", index=2), "cycle"),
    (lambda G: G.nodes["m"].update(op="frobnicate"), "node 'm'.*unknown op 'frobnicate'"),
    (lambda G: G.remove_edge("b", "m"), "matmul node 'm' takes 2 arguments, got 1"),
    (lambda G: G.add_edge("b", "m", index=1), "node 'm' \\(matmul\\): argument indices"),
    (lambda G: G.nodes["m"].update(shape=(2, 5)), "node 'm' \\(matmul\\): declared shape \\(2, 5\\)"),
    (lambda G: G.nodes["b"].update(shape=(4, 4)), "matmul node 'm'.*\\(2, 3\\), \\(4, 4\\)"),
])
def test_from_networkx_rejects_bad_graphs(damage, message):
    G = hand_written()
    damage(G)
    with pytest.raises(gg.GraphError, match=message):
        gg.Graph.from_networkx(G)
