"""Registry-driven op tests: every registered op gets a float64 finite-difference check,
and a PyTorch cross-check where PyTorch has the same op.  An op added without a
test case (test_shapes / test_attrs / domain in its registry entry) fails here."""
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphgrad as gg
from graphgrad.ops import get_op

# Ops that are not functions of their arguments in the usual sense, and why.
NOT_DIFFERENTIATED = {
    "input": "a source", "param": "a source", "const": "a source", "state": "a source",
    "output": "marks a result", "assign": "writes state", "train_eval": "resolved before differentiation",
    "recurrent_scan_grad": "the reverse loop of a scan: its own vjp raises and points to lowering='unrolled'",
}


def sample(domain, shape, rng, attrs):
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)
    if domain == "distinct":
        return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.37 - 1.0
    if domain == "labels":
        return rng.integers(0, attrs.get("num_classes", 3), shape)
    return rng.normal(size=shape)


def case_shapes(op):
    """The argument shapes of op's test case."""
    n_args = op.arity if op.arity is not None else len(op.test_shapes or ((3, 4), (3, 4)))
    return op.test_shapes or ((3, 4),) * n_args


def op_case(name, seed=0):
    """A graph applying op ``name`` to fresh inputs, the feeds, and the output."""
    op = get_op(name)
    rng = np.random.default_rng(seed)
    g = gg.Graph(f"test_{name}")
    inputs, feeds = [], {}
    for i, shape in enumerate(case_shapes(op)):
        domain = op.domain[i] if i < len(op.domain) else "real"
        value = sample(domain, shape, rng, op.test_attrs)
        dtype = "int64" if domain == "labels" else "float64"
        inputs.append(g.input(f"x{i}", shape, dtype=dtype))
        feeds[f"x{i}"] = value.astype(dtype)
    out = g.apply(name, inputs, dict(op.test_attrs))
    return g, inputs, feeds, out


DIFFERENTIABLE = [n for n in gg.ops() if n not in NOT_DIFFERENTIATED]


def test_every_op_is_tested_or_exempt():
    assert set(NOT_DIFFERENTIATED) <= set(gg.ops()), "an exemption names an op that no longer exists"
    for name in gg.ops():
        op = get_op(name)
        assert name in NOT_DIFFERENTIATED or op.shape is not None and op.emit is not None, name
        # every other op gets a finite-difference case built from its registry entry
        assert name in NOT_DIFFERENTIATED or op_case(name)[3].shape is not None, name


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_op_gradient_matches_finite_differences(name):
    g, inputs, feeds, out = op_case(name)
    float_inputs = [t for t in inputs if t.dtype.startswith("float")]
    differentiable = [t for i, t in enumerate(inputs) if get_op(name).vjp(i) is not None and t.dtype.startswith("float")]
    if not out.dtype.startswith("float") or not differentiable:
        # boolean and label ops: no gradient flows, and grad says zero
        if float_inputs and out.dtype.startswith("float"):
            loss = out.sum()
            _, grads = gg.compile(loss, wrt=float_inputs, dtype="float64")({}, **feeds)
            assert all(not np.any(v) for v in grads.values())
        return
    projection = np.random.default_rng(1).normal(size=[d for d in out.shape])
    loss = (out * g.const(projection)).sum()
    gg.check_grad(loss, {}, feeds, wrt=differentiable)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_op_shape_rule_matches_numpy(name):
    g, inputs, feeds, out = op_case(name, seed=3)
    value = gg.compile(out, dtype="float64")({}, **feeds)
    assert np.shape(value) == out.shape, f"{name}: shape rule {out.shape}, NumPy gave {np.shape(value)}"


torch = None


def _torch_fns():
    import torch
    import torch.nn.functional as TF

    return {
        "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow, "neg": torch.neg,
        "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1, "sqrt": torch.sqrt,
        "abs": torch.abs, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "softplus": TF.softplus,
        "leaky_relu": lambda x: TF.leaky_relu(x, 0.1), "elu": TF.elu, "silu": TF.silu,
        "gelu": TF.gelu, "maximum": torch.maximum, "minimum": torch.minimum,
        "where": lambda c, a, b: torch.where(c > 0, a, b), "matmul": torch.matmul,
        "transpose": lambda x: x.permute(1, 0), "reshape": lambda x: x.reshape(2, 6),
        "sum": lambda x: x.sum(1), "mean": lambda x: x.mean(0), "max": lambda x: x.amax(1),
        "getitem": lambda x: x[1:, 2], "concat": lambda a, b: torch.cat([a, b], 1),
        "stack": lambda a, b: torch.stack([a, b], 1), "softmax": lambda x: torch.softmax(x, 1),
        "log_softmax": lambda x: torch.log_softmax(x, 1),
    }


@pytest.mark.parametrize("name", sorted(set(DIFFERENTIABLE) & {
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "log1p", "expm1", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "softplus", "leaky_relu", "elu", "silu", "gelu", "maximum", "minimum", "where", "matmul", "transpose",
    "reshape", "sum", "mean", "max", "getitem", "concat", "stack", "softmax", "log_softmax"}))
def test_op_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    g, inputs, feeds, out = op_case(name, seed=5)
    projection = np.random.default_rng(2).normal(size=out.shape)
    loss = (out * g.const(projection)).sum()
    wrt = [t for i, t in enumerate(inputs) if get_op(name).vjp(i) is not None]
    f = gg.compile([loss, out], wrt=wrt, dtype="float64")
    (value, forward), grads = f({}, **feeds)
    tensors = [torch.tensor(feeds[t.node], requires_grad=t in wrt) for t in inputs]
    expected = _torch_fns()[name](*tensors)
    np.testing.assert_allclose(forward, expected.detach().numpy(), rtol=1e-6, atol=1e-10)
    (expected * torch.tensor(projection)).sum().backward()
    for t, tt in zip(inputs, tensors):
        if t in wrt:
            expected_grad = np.zeros(tt.shape) if tt.grad is None else tt.grad.numpy()
            np.testing.assert_allclose(grads[t.node], expected_grad, rtol=1e-6, atol=1e-10, err_msg=f"{name} {t.node}")


# -- dtypes: PyTorch's type promotion ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in gg.ops() if get_op(n).elementwise])
def test_elementwise_op_on_integers_returns_its_declared_dtype(name):
    """On int64 arguments an op closed over the integers stays int64 and any other gives float32, as in
    PyTorch; the compiled value has the declared dtype, and PyTorch's dtype and values where it has the op."""
    op = get_op(name)
    rng = np.random.default_rng(0)
    g = gg.Graph(f"int_{name}")
    inputs = [g.input(f"x{i}", shape, dtype="int64") for i, shape in enumerate(case_shapes(op))]
    feeds = {t.node: rng.integers(1, 4, t.shape) for t in inputs}  # positive: in every op's domain, pow's too
    out = g.apply(name, inputs, dict(op.test_attrs))
    value = gg.compile(out)({}, **feeds)
    assert value.dtype == out.dtype, f"{name}: declared {out.dtype}, computed {value.dtype}"
    torch = pytest.importorskip("torch")
    if name not in _torch_fns():
        return
    tensors = [torch.tensor(v) for v in feeds.values()]
    try:
        expected = _torch_fns()[name](*tensors)
    except NotImplementedError:  # softplus, gelu, elu, silu, leaky_relu take no integers: what floats give
        expected = _torch_fns()[name](*[t.to(torch.get_default_dtype()) for t in tensors])
    assert str(expected.dtype) == f"torch.{out.dtype}", name
    np.testing.assert_allclose(value, expected.numpy(), rtol=1e-5, err_msg=name)


def _graph_with_int_and_float():
    g = gg.Graph("promotion")
    return g.input("x", (None, 3), dtype="int64"), g.input("f", (None, 3))


# what PyTorch gives for x an int64 tensor and f a float32 tensor
PROMOTIONS = {
    "x * 2": (lambda x, f: x * 2, "int64"),
    "x.astype(int32) * 2 + 1": (lambda x, f: x.astype("int32") * 2 + 1, "int32"),
    "relu(x * 2 - 3) + abs(-x)": (lambda x, f: gg.relu(x * 2 - 3) + gg.abs(-x), "int64"),
    "x - x": (lambda x, f: x - x, "int64"),
    "x ** 2": (lambda x, f: x ** 2, "int64"),
    "maximum(x, 0)": (lambda x, f: gg.maximum(x, 0), "int64"),
    "where(f, x, 0)": (lambda x, f: gg.where(f, x, 0), "int64"),
    "x * 2.5": (lambda x, f: x * 2.5, "float32"),
    "x / 2": (lambda x, f: x / 2, "float32"),
    "x ** 0.5": (lambda x, f: gg.abs(x) ** 0.5, "float32"),
    "x + f": (lambda x, f: x + f, "float32"),
    "exp(x - 2) * f + relu(x)": (lambda x, f: gg.exp(x - 2) * f + gg.relu(x), "float32"),
    "where(x, f, 0)": (lambda x, f: gg.where(x, f, 0), "float32"),
    "sigmoid(x) * (x > 0)": (lambda x, f: gg.sigmoid(x) * (x > 0), "float32"),
    "const: relu(c) * 2": (lambda x, f: gg.relu(x.graph.const(np.array([1, -2, 3]))) * 2 + x, "int64"),
    "const: exp(c)": (lambda x, f: gg.exp(x.graph.const(np.array([1, -2, 3]))) + x, "float32"),
}


@pytest.mark.parametrize("case", PROMOTIONS)
def test_integer_promotion_follows_pytorch_fused_folded_and_in_float64(case):
    build, expected = PROMOTIONS[case]
    out = build(*_graph_with_int_and_float())
    assert out.dtype == expected
    feeds = {"x": np.array([[1, -2, 3], [0, 5, -1]]), "f": np.array([[0.5, -1.0, 2.0], [1.0, 1.0, -3.0]], np.float32)}
    reference = gg.compile(out, check_finite=True)({}, **feeds)  # unfused, one line per node
    for kwargs in ({}, {"dtype": "float64"}, {"target": "array_api"}):
        value = np.asarray(gg.compile(out, **kwargs)({}, **feeds))
        assert value.dtype == (kwargs.get("dtype", expected) if expected.startswith("float") else expected), kwargs
        np.testing.assert_allclose(value, reference, rtol=1e-6, err_msg=str(kwargs))
    assert reference.dtype == expected


def test_gradients_flow_past_integer_inputs():
    """An int input times a float param: the param's gradient is float32, as PyTorch's."""
    x, f = _graph_with_int_and_float()
    w = x.graph.param("w", (3,))
    loss = gg.relu(x * w + f).sum()
    params = x.graph.init_params()
    feeds = {"x": np.array([[1, -2, 3]]), "f": np.ones((1, 3), np.float32)}
    _, grads = gg.compile(loss, wrt=[w])(params, **feeds)
    assert grads["w"].dtype == np.float32
    np.testing.assert_allclose(grads["w"], np.where(feeds["x"] * params["w"] + 1 > 0, feeds["x"], 0)[0], rtol=1e-6)


@pytest.mark.parametrize("target", ["numpy", "array_api"])
def test_an_integer_feed_is_read_as_its_input_declares(target):
    """An int64 input fed int32 (or uint8) labels computes in int64, the dtype it declares."""
    x, _ = _graph_with_int_and_float()
    out = x * 3
    f = gg.compile(out, target=target)
    for fed in (np.int32, np.uint8):
        value = np.asarray(f({}, x=np.array([[1, 2, 3]], dtype=fed)))
        assert value.dtype == out.dtype == "int64"
        np.testing.assert_array_equal(value, [[3, 6, 9]])


# A SymPy function printed by its own method is an atom to SymPy's printer, so what it prints (a sum,
# a product, a power) must keep its grouping under the operators around it: a power of it, a divisor,
# a factor of its own derivative.  a and b are positive; c has both signs.
FUSED = {
    "gelu_tanh": (lambda a, b, c: b / gg.gelu(a, approximate="tanh") ** 2,
                  lambda t, a, b, c: b / t.nn.functional.gelu(a, approximate="tanh") ** 2),
    "pow_of_pow": (lambda a, b, c: (a ** 3) ** 1.5 + (a ** b) ** 2, lambda t, a, b, c: (a ** 3) ** 1.5 + (a ** b) ** 2),
    "masked_where": (lambda a, b, c: gg.where(c, a, 0.0) ** 3 * b, lambda t, a, b, c: t.where(c > 0, a, 0.0) ** 3 * b),
}


@pytest.mark.parametrize("target", ["numpy", "array_api"])
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_expressions_keep_their_grouping(name, target):
    torch = pytest.importorskip("torch")
    if target == "array_api":
        pytest.importorskip("array_api_compat")
    ours, theirs = FUSED[name]
    rng = np.random.default_rng(4)
    feeds = {"a": rng.uniform(0.5, 2.0, (3, 4)), "b": rng.uniform(0.5, 2.0, (3, 4)), "c": rng.normal(size=(3, 4))}
    g = gg.Graph(name)
    a, b, c = (g.input(k, (3, 4), dtype="float64") for k in feeds)
    out = ours(a, b, c)
    projection = rng.normal(size=out.shape)
    f = gg.compile([(out * g.const(projection)).sum(), out], wrt=[a, b], dtype="float64", target=target)
    (_, value), grads = f({}, **feeds)
    ta, tb, tc = (torch.tensor(v, requires_grad=k != "c") for k, v in feeds.items())
    expected = theirs(torch, ta, tb, tc)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-10)
    (expected * torch.tensor(projection)).sum().backward()
    np.testing.assert_allclose(grads["a"], ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shapes", [((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,))])
def test_matmul_takes_vectors_as_torch_does(shapes):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    feeds = {"a": rng.normal(size=shapes[0]), "b": rng.normal(size=shapes[1])}
    g = gg.Graph("vectors")
    a, b = (g.input(k, v.shape, dtype="float64") for k, v in feeds.items())
    out = a @ b
    projection = rng.normal(size=out.shape)
    (_, value), grads = gg.compile([(out * g.const(projection)).sum(), out], wrt=[a, b], dtype="float64")({}, **feeds)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in feeds.values())
    expected = ta @ tb
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12)
    (expected * torch.tensor(projection)).sum().backward()
    np.testing.assert_allclose(grads["a"], ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "array_api"])
def test_an_empty_slice_and_an_empty_const_keep_their_shapes(target):
    """x[2:-1] of 3 rows is (0, 4, 5), as in PyTorch; a const of that shape is emitted with it."""
    if target == "array_api":
        pytest.importorskip("array_api_compat")
    g = gg.Graph("empty")
    x = g.input("x", (3, 4, 5), dtype="float64")
    out = x[2:-1, :, ::2]
    assert out.shape == (0, 4, 3)
    loss = (out * g.const(np.ones(out.shape))).sum() + (x * x).sum()
    (value, empty), grads = gg.compile([loss, out], wrt=[x], dtype="float64", target=target)({}, x=np.ones((3, 4, 5)))
    assert empty.shape == (0, 4, 3) and value == 60
    np.testing.assert_array_equal(grads["x"], 2 * np.ones((3, 4, 5)))


@pytest.mark.parametrize("name", ["abs", "abs_pow"])
def test_second_derivative_through_abs_matches_torch(name):
    """|x|'' is sign' = 0 where it exists (PyTorch's value); SymPy's DiracDelta could not be emitted."""
    torch = pytest.importorskip("torch")
    ours, theirs = {"abs": (gg.abs, torch.abs), "abs_pow": (lambda x: gg.abs(x) ** 1.5, lambda x: x.abs() ** 1.5)}[name]
    xv, wv = np.linspace(-3, 3, 6) + 0.1, np.linspace(0.5, 2, 6)
    g = gg.Graph(name)
    x, w = g.input("x", (6,), dtype="float64"), g.input("w", (6,), dtype="float64")
    y = ours(x * w)
    (gx,) = gg.grad((y * y).sum(), [x])
    value, grads = gg.compile((gx * gx).sum(), wrt=[x, w], dtype="float64")({}, x=xv, w=wv)
    tx, tw = torch.tensor(xv, requires_grad=True), torch.tensor(wv, requires_grad=True)
    ty = theirs(tx * tw)
    (tgx,) = torch.autograd.grad((ty * ty).sum(), [tx], create_graph=True)
    expected = (tgx * tgx).sum()
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["w"], tw.grad.numpy(), rtol=1e-12)


ACTIVATIONS = {  # non-default settings, on (2, 3, 4) inputs
    "leaky_relu 0.2": (lambda x: gg.leaky_relu(x, alpha=0.2), lambda F, x: F.leaky_relu(x, 0.2)),
    "leaky_relu -0.5": (lambda x: gg.leaky_relu(x, -0.5), lambda F, x: F.leaky_relu(x, -0.5)),
    "elu 0.5": (lambda x: gg.elu(x, alpha=0.5), lambda F, x: F.elu(x, 0.5)),
    "gelu tanh": (lambda x: gg.gelu(x, approximate="tanh"), lambda F, x: F.gelu(x, approximate="tanh")),
    "softmax axis 0": (lambda x: gg.softmax(x, axis=0), lambda F, x: F.softmax(x, 0)),
    "softmax axis -2": (lambda x: gg.softmax(x, axis=-2), lambda F, x: F.softmax(x, -2)),
    "log_softmax axis 1": (lambda x: gg.log_softmax(x, axis=1), lambda F, x: F.log_softmax(x, 1)),
    "log_softmax default": (gg.log_softmax, lambda F, x: F.log_softmax(x, -1)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_settings_match_torch(name):
    torch = pytest.importorskip("torch")
    ours, theirs = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    xv, projection = 3 * rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    g = gg.Graph("activation")
    x = g.input("x", xv.shape, dtype="float64")
    out = ours(x)
    (_, value), grads = gg.compile([(out * g.const(projection)).sum(), out], wrt=[x], dtype="float64")({}, x=xv)
    tx = torch.tensor(xv, requires_grad=True)
    expected = theirs(torch.nn.functional, tx)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    (expected * torch.tensor(projection)).sum().backward()
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), rtol=1e-10, atol=1e-12)


LOSSES = {  # (ours, torch's; z: logits (2, 3, 4), t: targets like z in [0, 1], y: labels (2, 3))
    "mse": (lambda z, t, y: gg.mse(z, t), lambda F, z, t, y: F.mse_loss(z, t)),
    "binary_cross_entropy": (lambda z, t, y: gg.binary_cross_entropy(30 * z, t),
                             lambda F, z, t, y: F.binary_cross_entropy_with_logits(30 * z, t)),
    "softmax_cross_entropy labels": (lambda z, t, y: gg.softmax_cross_entropy(z, y),
                                     lambda F, z, t, y: F.cross_entropy(z.reshape(6, 4), y.reshape(6))),
    "softmax_cross_entropy probabilities": (
        lambda z, t, y: gg.softmax_cross_entropy(z, t / t.sum(-1, keepdims=True)),
        lambda F, z, t, y: F.cross_entropy(z.reshape(6, 4), (t / t.sum(-1, keepdim=True)).reshape(6, 4))),
    "l1": (lambda z, t, y: gg.l1([z, t]), lambda F, z, t, y: z.abs().sum() + t.abs().sum()),
    "l2": (lambda z, t, y: gg.l2(z), lambda F, z, t, y: (z ** 2).sum()),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_match_torch(name):
    torch = pytest.importorskip("torch")
    ours, theirs = LOSSES[name]
    rng = np.random.default_rng(8)
    feeds = {"z": rng.normal(size=(2, 3, 4)), "t": rng.uniform(0.1, 1, (2, 3, 4)), "y": rng.integers(0, 4, (2, 3))}
    g = gg.Graph(name)
    z, t = (g.input(k, (2, 3, 4), dtype="float64") for k in "zt")
    value, grads = gg.compile(ours(z, t, g.input("y", (2, 3), dtype="int64")), wrt=[z, t], dtype="float64")({}, **feeds)
    tz, tt = (torch.tensor(feeds[k], requires_grad=True) for k in "zt")
    expected = theirs(torch.nn.functional, tz, tt, torch.tensor(feeds["y"]))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-10)
    np.testing.assert_allclose(grads["z"], tz.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["t"], np.zeros((2, 3, 4)) if tt.grad is None else tt.grad.numpy(),
                               rtol=1e-9, atol=1e-12)


def matches_torch(ours, theirs, feeds):
    """Value and input gradients of ``ours`` (graph ops) and ``theirs`` (torch ops) on float64 ``feeds``."""
    torch = pytest.importorskip("torch")
    g = gg.Graph("tensor_ops")
    inputs = [g.input(k, v.shape, dtype="float64") for k, v in feeds.items()]
    out = ours(*inputs)
    projection = np.random.default_rng(9).normal(size=out.shape)
    (_, value), grads = gg.compile([(out * g.const(projection)).sum(), out], wrt=inputs, dtype="float64")({}, **feeds)
    tensors = [torch.tensor(v, requires_grad=True) for v in feeds.values()]
    expected = theirs(*tensors)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    (expected * torch.tensor(projection)).sum().backward()
    for k, t in zip(feeds, tensors):
        np.testing.assert_allclose(grads[k], np.zeros(t.shape) if t.grad is None else t.grad.numpy(), rtol=1e-12,
                                   atol=1e-12, err_msg=k)


BOUNDS = st.one_of(st.none(), st.integers(-5, 5))
INDEX_ITEMS = st.one_of(st.integers(-2, 1), st.builds(slice, BOUNDS, BOUNDS, st.one_of(st.none(), st.integers(1, 3))))


@settings(max_examples=20, deadline=None)
@given(index=st.lists(INDEX_ITEMS, min_size=1, max_size=3).map(tuple))
def test_indexing_matches_torch(index):
    """Ints and slices (steps ≥ 1, as torch takes), empty selections included."""
    matches_torch(lambda x: x[index], lambda x: x[index], {"x": np.random.default_rng(1).normal(size=(2, 4, 5))})


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["sum", "mean"]), axis=st.one_of(st.integers(-3, 2), st.lists(
    st.integers(-3, 2), min_size=1, max_size=3, unique_by=lambda a: a % 3).map(tuple)), keepdims=st.booleans(),
    shape=st.sampled_from([(3, 1, 5), (4, 5), (1,), ()]), op=st.sampled_from(["add", "sub", "mul", "truediv"]),
    power=st.sampled_from([2, 3, 0.5, -1, 1.5]))
def test_reductions_broadcasting_and_powers_match_torch(kind, axis, keepdims, shape, op, power):
    """(a ** p) op b, a broadcast against b (3, 4, 5), reduced along int, negative and tuple axes."""
    rng = np.random.default_rng(2)
    feeds = {"a": rng.uniform(0.5, 2, shape), "b": rng.uniform(0.5, 2, (3, 4, 5))}
    combine = getattr(operator, op)
    matches_torch(lambda a, b: getattr(combine(a ** power, b), kind)(axis, keepdims=keepdims),
                  lambda a, b: getattr(combine(a ** power, b), kind)(axis, keepdim=keepdims), feeds)


def test_reshape_infers_minus_one_beside_the_batch_as_torch():
    """x.reshape(x.shape[0], -1) and x.reshape(-1, 12) of an (N, 3, 4) batch, written with gg's None."""
    g = gg.Graph("flatten")
    x = g.input("x", (None, 3, 4), dtype="float64")
    flat, rows, split = x.reshape((None, -1)), x.reshape(-1, 12), x.reshape((None, 2, -1))
    assert (flat.shape, rows.shape, split.shape) == ((None, 12), (None, 12), (None, 2, 6))
    xv = np.arange(60.0).reshape(5, 3, 4)
    (_, *values), grads = gg.compile([(flat * rows).sum() + split.sum(), flat, rows, split], wrt=[x])({}, x=xv)
    for value, shape in zip(values, [(5, 12), (5, 12), (5, 2, 6)]):
        np.testing.assert_array_equal(value, xv.reshape(shape))
    np.testing.assert_array_equal(grads["x"], 2 * xv + 1)
