"""Registry-driven op tests: every registered op gets a float64 finite-difference check,
and a PyTorch cross-check where PyTorch has the same op.  An op added without a
test case (test_shapes / test_attrs / domain in its registry entry) fails here."""
import numpy as np
import pytest

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
