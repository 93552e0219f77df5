"""The core pipeline end to end: the snippets of the API contract (docs/api.md), PyTorch parity, second
derivatives, numerical stability, the standalone module and the compile cache."""
import ast
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import graphgrad as gg
from standalone import run_without_graphgrad


def mlp_graph(features=784, hidden=256):
    g = gg.Graph("mlp")
    x = g.input("x", (None, features))
    y = g.input("y", (None,), dtype="int64")
    h = gg.nn.Dense(hidden, activation="relu", name="fc1")(x)
    logits = gg.nn.Dense(10, name="fc2")(h)
    loss = gg.softmax_cross_entropy(logits, y)
    return g, x, y, h, logits, loss


def batch(n=16, features=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, 10, n)


def test_api_snippets_run_verbatim(tmp_path):
    g, x, y, h, logits, loss = mlp_graph()
    assert g.nx.number_of_edges() >= g.nx.number_of_nodes() - len(g.inputs) - len(g.params)
    gW1, gb1 = gg.grad(loss, [g["fc1.W"], g["fc1.b"]])
    assert gW1.shape == (784, 256) and gb1.shape == (256,)
    assert str(gg.formula(h)) == "relu(fc1_b + fc1_matmul)"
    params = g.init_params(seed=0)
    X, Y = batch()
    f = gg.compile(loss, wrt=g.params)
    value, grads = f(params, x=X, y=Y)
    assert np.isfinite(value) and set(grads) == {"fc1.W", "fc1.b", "fc2.W", "fc2.b"}
    assert "def step" in f.source
    f.save(tmp_path / "mlp_step.py")
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))
    before = params["fc1.W"].copy()
    first = step(params, x=X, y=Y)
    assert not np.array_equal(before, params["fc1.W"])  # updated in place
    for _ in range(20):
        last = step(params, x=X, y=Y)
    assert last < first
    pred = gg.compile(logits, training=False)
    assert pred(params, x=X).shape == (16, 10)


def test_graph_attributes_follow_the_contract():
    g, x, y, h, logits, loss = mlp_graph(8, 4)
    sq = x * x
    assert g.nx.number_of_edges(x.node, sq.node) == 2
    indices = sorted(d["index"] for _, _, d in g.nx.in_edges(sq.node, data=True))
    assert indices == [0, 1]
    for _, data in g.nx.nodes(data=True):
        assert {"op", "shape", "dtype", "attrs"} <= set(data)
    assert x.graph is g and x.node == "x" and x.shape == (None, 8) and x.dtype == "float32" and x.name == "x"
    assert [p.name for p in g.params] == ["fc1.W", "fc1.b", "fc2.W", "fc2.b"]


def test_tensor_operators_build_the_expected_ops():
    g = gg.Graph()
    a, b = g.input("a", (3, 4)), g.input("b", (4, 2))
    cases = {"add": a + 1, "sub": 1 - a, "mul": a * a, "div": a / 2, "pow": a ** 2, "neg": -a, "matmul": a @ b,
             "getitem": a[1:, :2], "transpose": a.T, "sum": a.sum(0), "mean": a.mean(), "reshape": a.reshape(12)}
    for op, t in cases.items():
        assert t.op == op
    assert a.T.shape == (4, 3) and a[1:, :2].shape == (2, 2) and a.sum(0).shape == (4,) and a.mean().shape == ()


def test_mlp_matches_pytorch_in_float64():
    torch = pytest.importorskip("torch")
    g, x, y, h, logits, loss = mlp_graph(20, 16)
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=1).items()}
    X, Y = batch(8, 20, seed=2)
    value, grads = gg.compile(loss, wrt=g.params, dtype="float64")(params, x=X.astype(np.float64), y=Y)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    hidden = torch.relu(torch.tensor(X, dtype=torch.float64) @ t["fc1.W"] + t["fc1.b"])
    expected = torch.nn.functional.cross_entropy(hidden @ t["fc2.W"] + t["fc2.b"], torch.tensor(Y))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(grads[name], t[name].grad.numpy(), rtol=1e-6, atol=1e-12)


def test_check_grad_passes_and_catches_a_wrong_gradient(monkeypatch):
    import dataclasses

    from graphgrad.ops import registry

    g, x, y, h, logits, loss = mlp_graph(6, 5)
    params = g.init_params(seed=0)
    X, Y = batch(4, 6)
    gg.check_grad(loss, params, {"x": X, "y": Y})
    wrong = lambda index: lambda g, args, out, attrs: g * 2.0  # noqa: E731  (tanh' is not 2)
    monkeypatch.setitem(registry._REGISTRY, "tanh", dataclasses.replace(registry.get_op("tanh"), vjps=wrong))
    bad = gg.tanh(logits).sum() * 1.2345  # a graph no earlier compile has cached
    with pytest.raises(AssertionError, match="gradient mismatch at fc"):
        gg.check_grad(bad, params, {"x": X, "y": Y})


def test_hessian_vector_product_of_a_tanh_network():
    g = gg.Graph("hvp")
    x = g.input("x", (5, 3))
    w = g.param("w", (3, 4))
    v = g.input("v", (3, 4))
    loss = gg.tanh(gg.tanh(x @ w) @ g.const(np.ones((4, 1)))).sum()
    (gw,) = gg.grad(loss, [w])
    (hv,) = gg.grad((gw * v).sum(), [w])
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 4))}
    feeds = {"x": rng.normal(size=(5, 3)), "v": rng.normal(size=(3, 4))}
    grad_at = gg.compile(gw, dtype="float64")
    eps = 1e-5
    numeric = (grad_at({"w": params["w"] + eps * feeds["v"]}, x=feeds["x"], v=feeds["v"])
               - grad_at({"w": params["w"] - eps * feeds["v"]}, x=feeds["x"], v=feeds["v"])) / (2 * eps)
    analytic = gg.compile(hv, dtype="float64")(params, **feeds)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_extreme_logits_give_finite_values_and_no_warnings():
    g = gg.Graph("stable")
    z = g.input("z", (None, 3))
    labels = g.input("labels", (None,), dtype="int64")
    targets = g.input("t", (None, 3))
    losses = [gg.sigmoid(z).sum(), gg.softmax_cross_entropy(z, labels), gg.binary_cross_entropy(z, targets),
              gg.log(gg.sigmoid(z)).sum(), gg.log(gg.softmax(z)).sum(), gg.softplus(z).sum()]
    feeds = {"z": np.array([[1000.0, -1000.0, 0.0], [1e4, -1e4, 3.0]], np.float32),
             "labels": np.array([1, 2]), "t": np.array([[1, 0, 1], [0, 1, 0]], np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss in losses:
            value, grads = gg.compile(loss, wrt=[z])(
                {}, **{k: v for k, v in feeds.items() if k in {n.node for n in [z, labels, targets]}
                       and k in _inputs_of(loss)})
            assert np.isfinite(value) and np.all(np.isfinite(grads["z"])), loss.node


def _inputs_of(t):
    import networkx as nx

    return {n for n in nx.ancestors(t.graph.nx, t.node) if t.graph.nx.nodes[n]["op"] == "input"}


def test_sigmoid_at_extremes_is_exact():
    g = gg.Graph()
    z = g.input("z", (2,))
    out, grads = gg.compile(gg.sigmoid(z).sum(), wrt=[z])({}, z=np.array([1000.0, -1000.0], np.float32))
    np.testing.assert_array_equal(grads["z"], [0.0, 0.0])
    assert out == 1.0


def test_saved_module_runs_where_graphgrad_cannot_be_imported(tmp_path):
    g, x, y, h, logits, loss = mlp_graph(10, 8)
    params = g.init_params(seed=0)
    X, Y = batch(4, 10)
    f = gg.compile(loss, wrt=g.params)
    value, grads = f(params, x=X, y=Y)
    path = tmp_path / "step_module.py"
    f.save(path)
    out_value, out_grads = run_without_graphgrad(path, params, {"x": X, "y": Y})
    assert float(out_value) == pytest.approx(float(value), rel=1e-6)
    assert float(out_grads["fc1.W"].sum()) == pytest.approx(float(grads["fc1.W"].sum()), rel=1e-5, abs=1e-6)
    assert "graphgrad" not in "".join(line for line in path.read_text().splitlines() if line.startswith("import"))


def test_second_compile_is_served_from_the_cache(tmp_path):
    g, x, y, h, logits, loss = mlp_graph(12, 8)
    first = gg.compile(loss, wrt=g.params)
    second = gg.compile(loss, wrt=g.params)
    assert second.module is first.module and second.state is not first.state and second.cached
    X, Y = batch(4, 12)
    params = g.init_params()
    first(params, x=X, y=Y), second(params, x=X, y=Y)
    assert first.state["_workspace"] is not second.state["_workspace"]  # reused buffers are per function
    script = textwrap.dedent("""
        import time, sys
        sys.path.insert(0, %r)
        from test_core import mlp_graph
        import graphgrad as gg
        g, x, y, h, logits, loss = mlp_graph(12, 8)
        start = time.perf_counter(); f = gg.compile(loss, wrt=g.params)
        print(f.cached)
    """ % os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # built nothing: loaded from the on-disk cache


def test_generated_source_is_vectorized_and_commented():
    g, x, y, h, logits, loss = mlp_graph(8, 4)
    source = gg.compile(loss, wrt=g.params).source
    body = source[source.index("def step"):source.index("def new_state")]
    assert "for " not in body and "while " not in body
    lines = body.splitlines()
    for statement in ast.parse(body).body[0].body[1:]:
        # one commented statement per node (the comment above a long one); a fused node's further steps write
        # in place
        text = " ".join(part.strip() for part in lines[statement.lineno - 1:statement.end_lineno])
        if re.match(r"\w+_t\d+ = ", text):
            continue
        in_place_step = re.match(r"(\w+ = )?np\.\w+\(.*, out=(\w+|buffer\(.*\))\)$", text)
        commented = "#" in lines[statement.lineno - 1] or lines[statement.lineno - 2].strip().startswith("#")
        assert commented or in_place_step or text.startswith(("results", "return")), text
    assert "fc1_matmul = np.matmul(x, fc1_W, out=buffer(" in body  # into a buffer reused by every call


def test_float64_compile_computes_in_float64():
    g, x, y, h, logits, loss = mlp_graph(8, 4)
    params = g.init_params()
    X, Y = batch(3, 8)
    value, grads = gg.compile(loss, wrt=g.params, dtype="float64")(params, x=X, y=Y)
    assert np.asarray(value).dtype == np.float64 and grads["fc1.W"].dtype == np.float64
    value32, grads32 = gg.compile(loss, wrt=g.params)(params, x=X, y=Y)
    assert np.asarray(value32).dtype == np.float32 and grads32["fc1.W"].dtype == np.float32


def test_multiple_outputs_come_back_in_order():
    g, x, y, h, logits, loss = mlp_graph(8, 4)
    out = gg.compile([logits, loss, h], training=False)(g.init_params(), x=batch(3, 8)[0], y=np.zeros(3, int))
    assert [np.shape(o) for o in out] == [(3, 10), (), (3, 4)]


def test_buffers_whose_lifetimes_do_not_overlap_share_a_workspace_slot():
    g = gg.Graph("deep")
    x = g.input("x", (None, 32))
    h = x
    for k in range(6):  # forward activations stay alive for the backward; backward temporaries do not
        h = gg.nn.Dense(32, activation="tanh", name=f"fc{k}")(h)
    loss = (h * h).mean()
    f = gg.compile(loss, optimizer=gg.optim.SGD(0.1))
    names = re.findall(r"buffer\(state, '(\w+)'", f.source)
    assert len(set(names)) < len(names)
    params = g.init_params(seed=0)
    expected = gg.compile(loss, wrt=g.params)(params, x=np.ones((4, 32), np.float32))[1]
    before = {k: v.copy() for k, v in params.items()}
    f(params, x=np.ones((4, 32), np.float32))
    for k in expected:  # one SGD step moved every param by exactly lr * grad
        np.testing.assert_allclose(before[k] - params[k], 0.1 * expected[k], rtol=1e-4, atol=1e-7)


def test_saved_module_carries_the_helpers_its_kernels_share(tmp_path):
    # the loop and batch-norm kernels take work_array from ops/helpers: it is pasted beside them
    g = gg.Graph("shared_helpers")
    x, c = g.input("x", (None, 20, 3)), g.input("c", (None, 2, 4, 4))
    h = gg.nn.LSTM(8, name="lstm", lowering="loop")(x)
    loss = (h * h).mean() + (gg.nn.BatchNorm(name="bn")(c) ** 2).mean()
    f = gg.compile(loss, dtype="float64")
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=0).items()}
    feeds = {"x": np.linspace(-1, 1, 120).reshape(2, 20, 3), "c": np.arange(64.0).reshape(2, 2, 4, 4)}
    path = tmp_path / "shared_module.py"
    f.save(path)
    assert "from ." not in path.read_text()
    np.savez(tmp_path / "data.npz", **feeds, **{k.replace(".", "__"): v for k, v in params.items()})
    script = textwrap.dedent(f"""
        import sys
        sys.modules["graphgrad"] = None
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np, shared_module
        d = np.load({str(tmp_path / 'data.npz')!r})
        params = {{k.replace("__", "."): d[k] for k in d.files if k not in ("x", "c")}}
        print(repr(float(shared_module.run(params, x=d["x"], c=d["c"]))))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert float(out) == pytest.approx(float(f(params, **feeds)), rel=1e-12)
