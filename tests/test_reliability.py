"""Reliability: bad declarations, feeds, params and files raise GraphError naming what is wrong; a step
applies all its updates or none; empty batches, batches of one, float64 graphs, exact GELU."""
import importlib.util
import inspect
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import warnings

import networkx as nx
import numpy as np
import pytest

import graphgrad as gg


def mlp():
    g = gg.Graph("mlp")
    x, y = g.input("x", (None, 3)), g.input("y", (None,), dtype="int64")
    return g, gg.softmax_cross_entropy(gg.nn.Dense(4, name="fc")(x), y)


X, Y = np.ones((2, 3), np.float32), np.array([0, 1])


# -- declaration ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, message", [
    ((None, -3), "negative dimension -3"), ((None, 2.5), "dimension 2.5"), (3, "shape must be a tuple"),
    ((None, "a"), "dimension 'a'"), ((True,), "dimension True"),
])
def test_bad_input_shapes_name_the_input(shape, message):
    with pytest.raises(gg.GraphError, match=f"input 'x'.*{message}"):
        gg.Graph().input("x", shape)


def test_bad_param_shape_dtype_init_and_name():
    g = gg.Graph()
    with pytest.raises(gg.GraphError, match="param 'w'.*concrete shape.*dimension None"):
        g.param("w", (None, 3))
    with pytest.raises(gg.GraphError, match="param 'w'.*unsupported dtype 'float33'"):
        g.param("w", (3,), dtype="float33")
    with pytest.raises(gg.GraphError, match="param 'w'.*unsupported dtype 'complex64'"):
        g.param("w", (3,), dtype="complex64")
    with pytest.raises(gg.GraphError, match="param 'w'.*unknown initializer 'glorot'"):
        g.param("w", (3,), init="glorot")
    with pytest.raises(gg.GraphError, match="param name 3"):
        g.param(3, (3,))


def test_arity_errors_name_the_node():
    g = gg.Graph()
    x = g.input("x", (3,))
    with pytest.raises(gg.GraphError, match="add node 'add' takes 2 arguments, got 1"):
        g.apply("add", [x])
    with pytest.raises(gg.GraphError, match="unknown op 'frobnicate'"):
        g.apply("frobnicate", [x])


def test_attrs_the_op_does_not_take_are_named():
    g = gg.Graph()
    x = g.input("x", (3,))
    with pytest.raises(gg.GraphError, match="sum node 'sum': missing required attr 'axis'"):
        g.apply("sum", [x])
    with pytest.raises(gg.GraphError, match="tanh node 'tanh': attrs {'alpha': 1.0} do not fit"):
        g.apply("tanh", [x], {"alpha": 1.0})


def hand_written():
    G = nx.MultiDiGraph()
    G.add_node("a", op="input", shape=(None, 3), dtype="float32", attrs={})
    G.add_node("s", op="sum", shape=(), dtype="float32", attrs={"axis": (0, 1), "keepdims": False})
    G.add_edge("a", "s", index=0)
    return G


@pytest.mark.parametrize("damage, message", [
    (lambda G: G.nodes["a"].update(shape=[None, 2.5]), "input node 'a'.*dimension 2.5"),
    (lambda G: G.nodes["a"].update(shape=3), "input node 'a'.*shape must be a tuple"),
    (lambda G: G.nodes["a"].update(dtype="float33"), "input node 'a'.*unsupported dtype 'float33'"),
    (lambda G: G.nodes["s"].update(op=["sum"]), "node 's'.*'op' must be the name of a registered op"),
    (lambda G: G.nodes["s"].update(attrs={}), "sum node 's': missing required attr 'axis'"),
    (lambda G: G.nodes["s"].update(attrs=[("axis", 0)]), "sum node 's': attrs must be a dict"),
    (lambda G: G.nodes["s"].update(attrs={"axis": (0, 1), "keepdims": object()}), "sum node 's': attr 'keepdims'"),
    (lambda G: G.edges["a", "s", 0].update(index="0"), "node 's' \\(sum\\): argument indices"),
    (lambda G: G.edges["a", "s", 0].update(index=None), "node 's' \\(sum\\): argument indices"),
    (lambda G: G.add_edge("s", "a", index=0), "cycle"),
    (lambda G: (G.add_node("b", op="input", shape=(3,), attrs={}), G.add_edge("a", "b", index=0)),
     "input node 'b' takes no arguments"),
    (lambda G: G.add_node("c", op="const", shape=(2,), attrs={"value": np.ones(3)}), "const node 'c'.*shape"),
])
def test_from_networkx_names_the_node_and_the_problem(damage, message):
    G = hand_written()
    damage(G)
    with pytest.raises(gg.GraphError, match=message):
        gg.Graph.from_networkx(G)


def test_a_cycle_made_by_editing_g_nx_is_reported_at_compile():
    g = gg.Graph()
    x = g.input("x", (3,))
    y = x * 2.0
    z = y + 1.0
    g.nx.add_edge(z.node, y.node, index=2)
    with pytest.raises(gg.GraphError, match="cycle through node"):
        gg.compile(z.sum())


# -- feeds and params -----------------------------------------------------------------------
def test_ragged_and_complex_feeds_and_params_name_the_input_or_param():
    g, loss = mlp()
    f, params = gg.compile(loss), g.init_params()
    with pytest.raises(gg.GraphError, match="input 'x' cannot be read as an array.*rectangular"):
        f(params, x=[[1, 2, 3], [1, 2]], y=Y)
    with pytest.raises(gg.GraphError, match="param 'fc.W' cannot be read as an array"):
        f({**params, "fc.W": [[1, 2, 3, 4], [1]]}, x=X, y=Y)
    with pytest.raises(gg.GraphError, match="param 'fc.W' is complex"):
        f({**params, "fc.W": params["fc.W"] * (1 + 1j)}, x=X, y=Y)
    with pytest.raises(gg.GraphError, match="input 'x' is complex"):
        f(params, x=X * 1j, y=Y)
    with pytest.raises(gg.GraphError, match="params must be a dict"):
        f([params], x=X, y=Y)


@pytest.mark.parametrize("bad, message", [
    (lambda w: w.tolist(), "must be a NumPy array, got list"),
    (lambda w: w.astype(np.int64), "must hold floats"),
    (lambda w: np.lib.stride_tricks.as_strided(w, writeable=False), "read-only"),
])
def test_a_failed_step_applies_no_update(bad, message):
    g, loss = mlp()
    step = gg.compile(loss, optimizer=gg.optim.Adam(0.1))
    params = g.init_params()
    params["fc.b"] = bad(params["fc.b"])  # the last param: fc.W would be updated before it
    before = params["fc.W"].copy()
    with pytest.raises(gg.GraphError, match=f"param 'fc.b' is updated in place.*{message}"):
        step(params, x=X, y=Y)
    np.testing.assert_array_equal(params["fc.W"], before)
    float(step(g.init_params(), x=X, y=Y))  # the optimizer state was not advanced either: a fresh call works


def test_params_only_read_may_be_lists_or_read_only():
    g, loss = mlp()
    params = {k: v.tolist() for k, v in g.init_params().items()}
    value, grads = gg.compile(loss, wrt=g.params)(params, x=X, y=Y)
    assert np.isfinite(value) and grads["fc.W"].shape == (3, 4)


# -- empty batches and batches of one -------------------------------------------------------------
def test_empty_batch_forward_is_nan_or_empty_and_grads_raise():
    g, loss = mlp()
    params, empty_x, empty_y = g.init_params(), np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(gg.compile(loss)(params, x=empty_x, y=empty_y))
        assert gg.compile(g.tensor("fc/add"))(params, x=empty_x).shape == (0, 4)
    with pytest.raises(gg.GraphError, match="empty batch.*input 'x'"):
        gg.compile(loss, wrt=g.params)(params, x=empty_x, y=empty_y)
    with pytest.raises(gg.GraphError, match="empty batch"):
        gg.compile(loss, optimizer=gg.optim.SGD(0.1))(params, x=empty_x, y=empty_y)


def batch_norm_net():
    g = gg.Graph("bn")
    x, y = g.input("x", (None, 3)), g.input("y", (None,), dtype="int64")
    h = gg.nn.BatchNorm(name="bn")(gg.nn.Dense(4, name="fc")(x))
    return g, gg.softmax_cross_entropy(h, y)


def test_batch_norm_training_on_one_value_per_channel_raises_like_pytorch():
    g, loss = batch_norm_net()
    params = g.init_params()
    with pytest.raises(gg.GraphError, match="bn/batch_norm_stats.*more than 1 value per channel"):
        gg.compile(loss, optimizer=gg.optim.SGD(0.1))(params, x=X[:1], y=Y[:1])
    np.testing.assert_array_equal(params["bn.running_var"], np.ones(4))  # nothing written
    assert np.isfinite(gg.compile(loss, training=False)(params, x=X[:1], y=Y[:1]))  # eval mode is fine


def test_fit_merges_a_last_batch_of_one_when_the_graph_has_batch_norm():
    g, loss = batch_norm_net()
    params = g.init_params()
    step = gg.compile(loss, optimizer=gg.optim.SGD(0.1))
    data = {"x": np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32), "y": np.arange(9) % 4}
    with pytest.warns(UserWarning, match="last batch of 1 example.*merged"):
        gg.fit(step, params, data, epochs=2, batch_size=4, progress=False)
    assert np.isfinite(params["bn.running_var"]).all()


# -- files -------------------------------------------------------------------------------------------------
def test_load_params_names_the_file_and_the_problem(tmp_path):
    g, _ = mlp()
    with pytest.raises(gg.GraphError, match="missing.npz.*no such file"):
        gg.load_params(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(gg.GraphError, match="junk.npz.*not a complete .npz"):
        gg.load_params(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(gg.GraphError, match="one.npy.*single array"):
        gg.load_params(tmp_path / "one.npy")
    gg.save_params(tmp_path / "p.npz", g.init_params())
    (tmp_path / "cut.npz").write_bytes((tmp_path / "p.npz").read_bytes()[:-40])
    with pytest.raises(gg.GraphError, match="cut.npz"):
        gg.load_params(tmp_path / "cut.npz", g)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    g, loss = mlp()
    old = os.umask(umask)
    try:
        gg.save_params(tmp_path / "p.npz", g.init_params())
        gg.compile(loss).save(tmp_path / "step.py")
    finally:
        os.umask(old)
    for name in ("p.npz", "step.py"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_save_killed_mid_write_leaves_the_old_file_whole(tmp_path):
    g, _ = mlp()
    path = tmp_path / "params.npz"
    gg.save_params(path, g.init_params(seed=1))
    child = textwrap.dedent(f"""
        import os, sys, time
        import graphgrad as gg
        def stall(fd):  # the new bytes are written, the rename not yet done: be killed here
            print("writing", flush=True)
            time.sleep(60)
        os.fsync = stall
        g = gg.Graph("mlp"); gg.nn.Dense(4, name="fc")(g.input("x", (None, 3)))
        gg.save_params({str(path)!r}, {{k: v + 1 for k, v in g.init_params(seed=2).items()}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    loaded = gg.load_params(path, g)
    for name, value in g.init_params(seed=1).items():
        np.testing.assert_array_equal(loaded[name], value)


# -- GELU ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_pytorch_in_float64(approximate):
    torch = pytest.importorskip("torch")
    g = gg.Graph()
    x = g.input("x", (None,), dtype="float64")
    y = gg.gelu(x, approximate=approximate) if approximate != "none" else gg.gelu(x)
    X = np.concatenate([np.linspace(-12, 12, 4001), [0.0, 1e-9, -40.0, 40.0]])
    value, grads = gg.compile([y.sum(), y], wrt=[x])({}, x=X)
    t = torch.tensor(X, requires_grad=True)
    expected = torch.nn.functional.gelu(t, approximate=approximate)
    expected.sum().backward()
    np.testing.assert_allclose(value[1], expected.detach().numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(grads["x"], t.grad.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_finite_at_huge_float32_values(approximate):
    g = gg.Graph()
    x = g.input("x", (None,))
    y = gg.gelu(x, approximate=approximate)
    X = np.array([1e30, -1e30, 1e20, -1e20, 0.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grads = gg.compile([y.sum(), y], wrt=[x], check_finite=True)({}, x=X)
    np.testing.assert_array_equal(value[1], np.array([1e30, 0, 1e20, 0, 0], np.float32))
    np.testing.assert_array_equal(grads["x"], [1, 0, 1, 0, 0.5])
    assert value[1].dtype == grads["x"].dtype == np.float32


def test_erf_kernel_is_float64_accurate():
    import math

    from graphgrad.ops.special_kernels import erf

    z = np.concatenate([np.linspace(-7, 7, 20001), [1e-300, np.inf, -np.inf]])
    np.testing.assert_allclose(erf(z), [math.erf(v) for v in z], rtol=2e-15, atol=1e-300)


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(gg.GraphError, match="approximate must be 'none' or 'tanh'"):
        gg.gelu(gg.Graph().input("x", (3,)), approximate="sigmoid")


# -- float64 end to end --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_params_constants_values_and_grads_keep_the_graph_dtype(dtype):
    g = gg.Graph()
    x, y = g.input("x", (None, 2, 6, 6), dtype=dtype), g.input("y", (None,), dtype="int64")
    h = gg.nn.BatchNorm(name="bn")(gg.nn.Conv2D(3, 3, name="conv")(x))
    h = gg.nn.Flatten()(h) * g.const(np.full(48, 0.5))
    loss = gg.softmax_cross_entropy(gg.nn.Dense(4, name="fc")(h), y)
    params = g.init_params()
    assert {v.dtype.name for v in params.values()} == {dtype}
    assert {d["dtype"] for _, d in g.nx.nodes(data=True) if d["op"] == "const"} == {dtype}
    value, grads = gg.compile(loss, wrt=g.params)(params, x=np.ones((3, 2, 6, 6), dtype), y=np.arange(3))
    assert np.asarray(value).dtype == dtype and {v.dtype.name for v in grads.values()} == {dtype}


# -- check_finite on every model the library builds ---------------------------------------------------------------
def feeds_for(g, rng):
    return {t.node: rng.integers(0, 2, [4 if d is None else d for d in t.shape]) if t.dtype.startswith("int")
            else rng.normal(size=[4 if d is None else d for d in t.shape]).astype(t.dtype) for t in g.inputs}


@pytest.mark.parametrize("name", sorted(gg.models.MODELS))
def test_check_finite_compiles_and_runs_every_model(name):
    g, loss, logits = gg.models.MODELS[name]()
    params, feeds = g.init_params(), feeds_for(g, np.random.default_rng(0))
    assert np.isfinite(gg.compile(loss, optimizer=gg.optim.Adam(), check_finite=True)(params, **feeds))
    value, grads = gg.compile(loss, wrt=g.params, check_finite=True)(params, **feeds)
    assert np.isfinite(value) and all(np.isfinite(v).all() for v in grads.values())
    assert np.isfinite(gg.compile(logits, training=False, check_finite=True)(params, **feeds)).all()


EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("example", sorted(p.stem for p in EXAMPLES.glob("[!_]*.py")))
def test_every_example_runs_with_check_finite_on(example, tmp_path, monkeypatch):
    """GRAPHGRAD_CHECK_FINITE=1 turns the check on for every compile of a program: each example's quick run."""
    monkeypatch.setenv("GRAPHGRAD_CHECK_FINITE", "1")
    monkeypatch.setenv("GRAPHGRAD_CACHE", str(tmp_path / "cache"))
    checked = []
    build = gg.runtime._build
    monkeypatch.setattr(gg.runtime, "_build", lambda *a, **k: checked.append(a[6]) or build(*a, **k))
    spec = importlib.util.spec_from_file_location(f"checked_{example}", EXAMPLES / f"{example}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kwargs = {"quick": True, "out": tmp_path}
    module.main(**{k: v for k, v in kwargs.items() if k in inspect.signature(module.main).parameters})
    assert checked and all(checked)


# -- gradients through indexing ----------------------------------------------------------------------------------
def test_gradient_of_a_scalar_index():
    g = gg.Graph()
    w = g.param("w", (3,))
    value, grads = gg.compile((w * w)[0], wrt=[w])({"w": np.array([2.0, 3.0, 4.0], np.float32)})
    assert float(value) == 4.0 and grads["w"].dtype == np.float32
    np.testing.assert_array_equal(grads["w"], [4.0, 0.0, 0.0])
    gg.check_grad((w * w)[1] * 3.0, {"w": np.array([2.0, 3.0, 4.0])}, {})
