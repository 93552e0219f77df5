"""Layers: finite-difference gradients of every layer, PyTorch cross-checks (float64), modes and state,
and the errors a user sees for bad shapes."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import graphgrad as gg
from graphgrad import nn

RNG = np.random.default_rng(0)


def build(layer_fn, shape, dtype="float64"):
    """A graph applying ``layer_fn`` to an input of ``shape``; the loss is a fixed random projection."""
    g = gg.Graph("layer")
    x = g.input("x", shape, dtype=dtype)
    out = layer_fn(x)
    loss = (out * g.const(np.random.default_rng(1).normal(size=out.shape), dtype="float64")).sum()
    return g, x, out, loss


def jittered_params(g, seed=0):
    """Params with nonzero biases, so no ReLU or max sits exactly on its kink."""
    rng = np.random.default_rng(seed)
    return {k: v.astype(np.float64) + (0.1 * rng.normal(size=v.shape) if k.endswith((".b", ".beta")) else 0)
            for k, v in g.init_params(seed=seed).items()}


LAYERS = {
    "conv2d": (lambda x: nn.Conv2D(3, 3, stride=2, padding=1, dilation=2)(x), (2, 2, 7, 6)),
    "conv2d_same": (lambda x: nn.Conv2D(2, 3, padding="same", activation="tanh")(x), (2, 2, 5, 4)),
    "conv1x1": (lambda x: nn.Conv2D(3, 1, bias=False)(x), (2, 2, 3, 4)),
    "conv_transpose2d": (lambda x: nn.ConvTranspose2D(2, 3, stride=2, padding=1, output_padding=1)(x), (2, 3, 3, 4)),
    "conv1d": (lambda x: nn.Conv1D(3, 3, stride=2, padding=1, dilation=2)(x), (2, 2, 9)),
    "tdnn": (lambda x: nn.TDNN(3, context_size=3, dilation=2, activation="tanh")(x), (2, 7, 2)),
    "maxpool2d": (lambda x: nn.MaxPool2D(2)(x), (2, 2, 4, 6)),
    "maxpool2d_overlapping": (lambda x: nn.MaxPool2D(3, stride=2)(x), (2, 2, 5, 5)),
    "avgpool2d": (lambda x: nn.AvgPool2D((2, 3), stride=1)(x), (2, 2, 4, 5)),
    "upsample_nearest": (lambda x: nn.Upsample2D(2)(x), (2, 2, 3, 2)),
    "upsample_bilinear": (lambda x: nn.Upsample2D(2, mode="bilinear")(x), (2, 2, 3, 2)),
    "flatten": (lambda x: nn.Flatten()(x), (2, 2, 3, 2)),
    "prelu": (lambda x: nn.PReLU()(x), (3, 4)),
    "prelu_channels": (lambda x: nn.PReLU(2)(x), (2, 2, 3, 3)),
    "maxout": (lambda x: nn.Maxout(3, pieces=3)(x), (4, 5)),
    "batchnorm2d": (lambda x: nn.BatchNorm()(x), (3, 2, 2, 3)),
    "batchnorm1d": (lambda x: nn.BatchNorm()(x), (5, 3)),
    "dropout": (lambda x: nn.Dropout(0.5, seed=3)(x), (3, 4)),
    "residual_identity": (lambda x: nn.Residual(nn.Dense(4, activation="tanh"), nn.Dense(4))(x), (3, 4)),
    "residual_projection": (lambda x: nn.Residual(nn.Conv2D(3, 3, stride=2, padding=1))(x), (2, 2, 4, 4)),
    "bottleneck": (lambda x: nn.Bottleneck(4, stride=2)(x), (3, 2, 4, 4)),
    "unet": (lambda x: nn.UNet(depth=1, base_channels=2, batch_norm=True)(x), (2, 1, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"dropout"}))
def test_layer_gradients_match_finite_differences(name):
    layer_fn, shape = LAYERS[name]
    g, x, out, loss = build(layer_fn, shape)
    feeds = {"x": RNG.normal(size=shape)}
    gg.check_grad(loss, jittered_params(g), feeds, wrt=g.params + [x], max_entries=24)


def test_dropout_gradient_is_the_mask():
    g, x, out, _ = build(LAYERS["dropout"][0], (50, 40))
    (dx,) = gg.grad(out.sum(), [x])
    f = gg.compile([out, dx], dtype="float64")
    value, grad = f({}, x=np.ones((50, 40)))
    np.testing.assert_array_equal(grad, value)  # out = x * mask with x = 1
    assert set(np.unique(value)) == {0.0, 2.0}
    assert abs(value.mean() - 1.0) < 0.1  # inverted dropout keeps the expectation


def test_dropout_is_seeded_and_identity_in_eval():
    g, x, out, _ = build(lambda x: nn.Dropout(0.3, seed=7)(x), (20, 30))
    ones = np.ones((20, 30))
    steps = [gg.compile(out, dtype="float64") for _ in range(2)]
    masks = [[f({}, x=ones) for _ in range(2)] for f in steps]
    np.testing.assert_array_equal(masks[0], masks[1])  # each compiled function draws the same sequence
    assert not np.array_equal(masks[0][0], masks[0][1])  # a new mask on every call
    np.testing.assert_array_equal(gg.compile(out, training=False)({}, x=ones), ones)


def test_dropout_masks_repeat_for_a_fresh_module(tmp_path):
    g, x, out, _ = build(lambda x: nn.Dropout(0.5, seed=11)(x), (6, 7))
    f = gg.compile(out, dtype="float64")
    path = tmp_path / "drop.py"
    f.save(path)
    runs = []
    for _ in range(2):
        namespace = {}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        runs.append([namespace["run"]({}, x=np.ones((6, 7))) for _ in range(3)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[0][1])  # a new mask on every call


# -- PyTorch cross-checks, float64 ------------------------------------------------------
def torch_check(layer_fn, shape, torch_fn, training=True, feed=None):
    """Forward and every gradient (input and params) against PyTorch, at ``feed`` (default: random)."""
    torch = pytest.importorskip("torch")
    g, x, out, loss = build(layer_fn, shape)
    params = jittered_params(g)
    xv = RNG.normal(size=shape) if feed is None else feed
    names = [p.node for p in g.params]
    f = gg.compile([loss, out], wrt=[x] + g.params, dtype="float64", training=training)
    (_, value), grads = f(params, x=xv)
    tx = torch.tensor(xv, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=k in names) for k, v in params.items()}
    expected = torch_fn(torch, tx, tp)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-7, atol=1e-10)
    (expected * torch.tensor(np.random.default_rng(1).normal(size=out.shape))).sum().backward()
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), rtol=1e-7, atol=1e-10)
    for k in names:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=k)
    return out, params


def test_conv2d_matches_torch():
    torch_check(lambda x: nn.Conv2D(4, 3, stride=2, padding=1, dilation=2, name="c")(x), (2, 3, 9, 8),
                lambda t, x, p: t.nn.functional.conv2d(x, p["c.W"], p["c.b"], stride=2, padding=1, dilation=2))


def test_conv_transpose2d_matches_torch():
    torch_check(lambda x: nn.ConvTranspose2D(3, 3, stride=2, output_padding=1, name="ct")(x), (2, 4, 4, 5),
                lambda t, x, p: t.nn.functional.conv_transpose2d(x, p["ct.W"], p["ct.b"], stride=2, output_padding=1))


def test_conv1d_matches_torch():
    torch_check(lambda x: nn.Conv1D(3, 3, stride=2, padding=2, dilation=2, name="c")(x), (2, 2, 11),
                lambda t, x, p: t.nn.functional.conv1d(x, p["c.W"], p["c.b"], stride=2, padding=2, dilation=2))


def test_pools_match_torch():
    torch_check(lambda x: nn.MaxPool2D(3, stride=2)(x), (2, 3, 7, 6),
                lambda t, x, p: t.nn.functional.max_pool2d(x, 3, stride=2))
    torch_check(lambda x: nn.AvgPool2D(2)(x), (2, 3, 6, 4), lambda t, x, p: t.nn.functional.avg_pool2d(x, 2))


DENSE_LIKE = {  # layer, input shape, torch's computation with the same weights
    "dense_3d_no_bias": (lambda x: nn.Dense(3, activation="gelu", bias=False, name="d")(x), (2, 3, 4),
                         lambda t, x, p: t.nn.functional.gelu(x @ p["d.W"])),
    "dense_batch_of_one": (lambda x: nn.Dense(2, activation="softmax", name="d")(x), (1, 4),
                           lambda t, x, p: t.softmax(x @ p["d.W"] + p["d.b"], -1)),
    "maxout": (lambda x: nn.Maxout(2, pieces=3, name="m")(x), (3, 4),
               lambda t, x, p: (x @ p["m.W"] + p["m.b"]).reshape(3, 2, 3).amax(-1)),
    "tdnn": (lambda x: nn.TDNN(3, context_size=2, dilation=3, activation="tanh", name="t")(x), (2, 8, 2),
             lambda t, x, p: t.tanh(t.nn.functional.conv1d(x.transpose(1, 2), p["t.W"], p["t.b"], dilation=3))
             .transpose(1, 2)),
    "flatten": (lambda x: nn.Flatten()(x), (2, 3, 2, 2), lambda t, x, p: t.flatten(x, 1)),
}


@pytest.mark.parametrize("name", sorted(DENSE_LIKE))
def test_dense_like_layers_match_torch(name):
    torch_check(*DENSE_LIKE[name])


@pytest.mark.parametrize("scale,hw", [(2, (3, 5)), ((3, 2), (1, 4)), ((1, 3), (2, 1))])
def test_upsampling_matches_torch(scale, hw):
    """nn.Upsample's defaults: align_corners=False for bilinear; one-pixel sides and a factor of 1 too."""
    for mode in ("bilinear", "nearest"):
        torch_check(lambda x: nn.Upsample2D(scale, mode=mode)(x), (2, 2) + hw,
                    lambda t, x, p: t.nn.Upsample(scale_factor=scale, mode=mode)(x))


def test_batchnorm_matches_torch_in_training_and_eval():
    torch = pytest.importorskip("torch")
    ref = torch.nn.BatchNorm2d(3).double()

    def torch_bn(t, x, p):
        with torch.no_grad():
            ref.weight.copy_(p["bn.gamma"]), ref.bias.copy_(p["bn.beta"])
        ref.weight.grad = ref.bias.grad = None
        return t.nn.functional.batch_norm(x, ref.running_mean, ref.running_var, p["bn.gamma"], p["bn.beta"],
                                          training=True, momentum=0.1, eps=1e-5)

    out, params = torch_check(lambda x: nn.BatchNorm(name="bn")(x), (4, 3, 3, 2), torch_bn)
    # the training call above updated the running statistics in place, as torch did
    np.testing.assert_allclose(params["bn.running_mean"], ref.running_mean.numpy(), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(params["bn.running_var"], ref.running_var.numpy(), rtol=1e-7, atol=1e-12)
    # evaluation mode normalizes by the running statistics and leaves them alone
    evaluate = gg.compile(out, training=False, dtype="float64")
    xv = RNG.normal(size=(4, 3, 3, 2))
    before = params["bn.running_var"].copy()
    value = evaluate(params, x=xv)
    expected = torch.nn.functional.batch_norm(torch.tensor(xv), ref.running_mean, ref.running_var,
                                              torch.tensor(params["bn.gamma"]), torch.tensor(params["bn.beta"]),
                                              training=False, eps=1e-5)
    np.testing.assert_allclose(value, expected.numpy(), rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(params["bn.running_var"], before)


# -- geometries drawn at random, against PyTorch ----------------------------------------------
SIZES = st.integers(1, 3)
PAIRS = st.one_of(SIZES, st.tuples(SIZES, SIZES))


def per_axis(v):
    return v if isinstance(v, tuple) else (v, v)


@settings(max_examples=12, deadline=None)
@given(kernel=st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))), stride=PAIRS,
       dilation=PAIRS, padding=st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
       bias=st.booleans(), channels=st.tuples(SIZES, SIZES), extra=st.tuples(st.integers(0, 4), st.integers(0, 4)))
def test_conv2d_geometry_matches_torch(kernel, stride, dilation, padding, bias, channels, extra):
    # the smallest input the dilated kernel fits in, plus a few rows and columns (odd sizes included)
    hw = tuple(max(1, d * (k - 1) + 1 - 2 * p) + e
               for k, d, p, e in zip(per_axis(kernel), per_axis(dilation), per_axis(padding), extra))
    torch_check(lambda x: nn.Conv2D(channels[1], kernel, stride, padding, dilation, bias=bias, name="c")(x),
                (2, channels[0]) + hw,
                lambda t, x, p: t.nn.functional.conv2d(x, p["c.W"], p.get("c.b"), stride, padding, dilation))


@settings(max_examples=12, deadline=None)
@given(kernel=st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))), stride=PAIRS,
       dilation=PAIRS, padding=st.integers(0, 2), bias=st.booleans(), data=st.data(),
       hw=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_conv_transpose2d_geometry_matches_torch(kernel, stride, dilation, padding, bias, data, hw):
    # PyTorch takes any output_padding below the stride or the dilation: past the stride, it adds
    # output rows no input row reaches
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(per_axis(stride), per_axis(dilation)))
    assume(all((n - 1) * s - 2 * padding + d * (k - 1) + op >= 0 for n, k, s, d, op in
               zip(hw, per_axis(kernel), per_axis(stride), per_axis(dilation), output_padding)))
    torch_check(lambda x: nn.ConvTranspose2D(2, kernel, stride, padding, output_padding, dilation, bias=bias,
                                             name="ct")(x), (2, 3) + hw,
                lambda t, x, p: t.nn.functional.conv_transpose2d(x, p["ct.W"], p.get("ct.b"), stride, padding,
                                                                 output_padding, 1, dilation))


@settings(max_examples=12, deadline=None)
@given(kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 3), padding=st.integers(0, 2),
       bias=st.booleans(), extra=st.integers(0, 4))
def test_conv1d_geometry_matches_torch(kernel, stride, dilation, padding, bias, extra):
    length = max(1, dilation * (kernel - 1) + 1 - 2 * padding) + extra
    torch_check(lambda x: nn.Conv1D(3, kernel, stride, padding, dilation, bias=bias, name="c")(x), (2, 2, length),
                lambda t, x, p: t.nn.functional.conv1d(x, p["c.W"], p.get("c.b"), stride, padding, dilation))


@settings(max_examples=16, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.one_of(st.none(), PAIRS), data=st.data(), extra=st.tuples(st.integers(0, 4), st.integers(0, 4)))
def test_pool_geometry_matches_torch(kind, kernel, stride, data, extra):
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)  # PyTorch's bound: half the kernel
    hw = tuple(max(1, k - 2 * p) + e for k, p, e in zip(kernel, padding, extra))
    layer = {"max": nn.MaxPool2D, "avg": nn.AvgPool2D}[kind]
    torch_check(lambda x: layer(kernel, stride, padding)(x), (2, 2) + hw,
                lambda t, x, p: getattr(t.nn.functional, f"{kind}_pool2d")(x, kernel, stride, padding))


@pytest.mark.parametrize("momentum", [0.7, None])  # None: PyTorch's cumulative average
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5), (3, 3, 2, 4)])
def test_batchnorm_running_statistics_follow_torch_over_steps(shape, momentum):
    torch = pytest.importorskip("torch")
    g = gg.Graph("bn")
    out = nn.BatchNorm(momentum=momentum, eps=1e-3, name="bn")(g.input("x", (None,) + shape[1:], dtype="float64"))
    params = {k: v.astype(np.float64) for k, v in g.init_params().items()}
    params["bn.gamma"] += RNG.normal(size=3) * 0.1
    params["bn.beta"] += RNG.normal(size=3) * 0.1
    ref = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)](
        shape[1], eps=1e-3, momentum=momentum).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(params["bn.gamma"])), ref.bias.copy_(torch.tensor(params["bn.beta"]))
    train, evaluate = (gg.compile(out, training=mode, dtype="float64") for mode in (True, False))
    for step in range(3):
        xv = 2 * RNG.normal(size=shape) + step
        ref.train()
        np.testing.assert_allclose(train(params, x=xv), ref(torch.tensor(xv)).detach().numpy(), rtol=1e-7, atol=1e-10)
        for stat in ("running_mean", "running_var"):
            np.testing.assert_allclose(params[f"bn.{stat}"], getattr(ref, stat).numpy(), rtol=1e-10, err_msg=stat)
        ref.eval()
        expected = ref(torch.tensor(xv)).detach().numpy()
        np.testing.assert_allclose(evaluate(params, x=xv), expected, rtol=1e-7, atol=1e-10)
    if momentum is None:
        assert params["bn.num_batches_tracked"] == ref.num_batches_tracked.item() == 3


@pytest.mark.parametrize("slopes", [1, 3])
def test_prelu_matches_torch_at_zero_too(slopes):
    """torch's prelu has slope α at x = 0 (as after a ReLU or zero padding): the input gets α·ḡ there."""
    xv = np.where(RNG.random((4, 3, 2)) < 0.5, 0.0, RNG.normal(size=(4, 3, 2)))
    torch_check(lambda x: nn.PReLU(slopes, init=0.3, name="p")(x), xv.shape,
                lambda t, x, p: t.nn.functional.prelu(x, p["p.W"]), feed=xv)


def test_conv_transpose_is_the_input_gradient_of_conv2d():
    g = gg.Graph("adjoint")
    x = g.input("x", (2, 3, 9, 8), dtype="float64")
    gy = g.input("gy", (2, 4, 5, 4), dtype="float64")
    conv = nn.Conv2D(4, 3, stride=2, padding=1, bias=False, name="c")
    (dx,) = gg.grad((conv(x) * gy).sum(), [x])
    convt = nn.ConvTranspose2D(3, 3, stride=2, padding=1, output_padding=(0, 1), bias=False, name="ct")(gy)
    assert convt.shape == dx.shape
    params = g.init_params()
    params["ct.W"] = params["c.W"]  # (out, in, kh, kw) of the conv is (in, out, kh, kw) of its transpose
    feeds = {"x": RNG.normal(size=x.shape), "gy": RNG.normal(size=gy.shape)}
    a, b = gg.compile([dx, convt], dtype="float64")(params, **feeds)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_second_derivative_through_conv_and_pool():
    g = gg.Graph("hessian")
    x = g.input("x", (1, 1, 6, 6), dtype="float64")
    h = nn.MaxPool2D(2)(gg.tanh(nn.Conv2D(2, 3, padding=1, name="c")(x)))
    (gw,) = gg.grad((h * h).sum(), [g["c.W"]])
    params = jittered_params(g)
    gg.check_grad((gw * gw).sum(), params, {"x": RNG.normal(size=x.shape)})


def test_float32_stays_float32():
    g = gg.Graph("f32")
    x = g.input("x", (None, 1, 8, 8))
    h = nn.BatchNorm()(nn.Conv2D(4, 3, padding=1)(x))
    h = nn.Upsample2D(2, mode="bilinear")(nn.MaxPool2D(2)(nn.Dropout(0.2)(h)))
    out = nn.ConvTranspose2D(2, 2, stride=2)(nn.AvgPool2D(2)(h))
    params = g.init_params()
    value, grads = gg.compile(out.sum(), wrt=g.params)(params, x=np.ones((2, 1, 8, 8), np.float32))
    assert value.dtype == np.float32 and all(v.dtype == np.float32 for v in grads.values())
    assert all(v.dtype == np.float32 for v in params.values())


def test_batchnorm_running_stats_are_params_but_not_trainable():
    g = gg.Graph("bn")
    nn.BatchNorm(name="bn")(g.input("x", (None, 3)))
    assert {p.node for p in g.params} == {"bn.gamma", "bn.beta"}
    assert {"bn.running_mean", "bn.running_var"} <= set(g.init_params())


def test_layers_get_unique_names_and_pytorch_layouts():
    g = gg.Graph("names")
    x = g.input("x", (None, 3, 8, 8))
    nn.Conv2D(5, (3, 2))(x)
    nn.Conv2D(5, 1)(x)
    nn.ConvTranspose2D(6, 2, stride=2)(x)
    shapes = {p.node: p.shape for p in g.params}
    assert shapes["conv2d.W"] == (5, 3, 3, 2) and shapes["conv2d_1.W"] == (5, 3, 1, 1)
    assert shapes["convtranspose2d.W"] == (3, 6, 2, 2)


def test_unet_shapes_and_skip_connections():
    g = gg.Graph("unet")
    x = g.input("x", (None, 1, 16, 12))
    out = nn.UNet(depth=2, base_channels=4, out_channels=3, name="u")(x)
    assert out.shape == (None, 3, 16, 12)
    assert sum(d["op"] == "concat" for _, d in g.nx.nodes(data=True)) == 2
    assert g["u.up0.W"].shape == (8, 4, 2, 2)


# -- bad input: errors name the layer and the shapes ---------------------------------------
def test_kernel_larger_than_padded_input():
    g = gg.Graph("bad")
    with pytest.raises(gg.GraphError, match=r"Conv2D 'big'.*larger than the padded input.*\(N, 1, 3, 3\)"):
        nn.Conv2D(2, 5, padding=0, name="big")(g.input("x", (None, 1, 3, 3)))


def test_channel_mismatch():
    g = gg.Graph("bad")
    conv = nn.Conv2D(2, 3, name="shared")
    conv(g.input("a", (None, 3, 8, 8)))
    with pytest.raises(gg.GraphError, match=r"Conv2D 'shared'.*channel mismatch.*\(N, 4, 8, 8\), \(2, 3, 3, 3\)"):
        conv(g.input("b", (None, 4, 8, 8)))


def test_odd_sized_unet_input():
    g = gg.Graph("bad")
    with pytest.raises(gg.GraphError, match=r"UNet 'u'.*divisible by 4.*\(None, 1, 10, 12\)"):
        nn.UNet(depth=2, name="u")(g.input("x", (None, 1, 10, 12)))


def test_other_bad_shapes():
    g = gg.Graph("bad")
    with pytest.raises(gg.GraphError, match="NCHW"):
        nn.Conv2D(2, 3)(g.input("x", (None, 8)))
    with pytest.raises(gg.GraphError, match="padding='same' needs stride 1, got"):
        nn.Conv2D(2, 3, stride=2, padding="same")(g.input("y", (None, 1, 8, 8)))
    with pytest.raises(gg.GraphError, match=r"ConvTranspose2D 'ct'.*output_padding \(2, 2\) must be smaller than "
                                            r"the stride \(2, 2\) or the dilation \(1, 1\)"):
        nn.ConvTranspose2D(2, 3, stride=2, output_padding=2, name="ct")(g.input("v", (None, 1, 4, 4)))
    with pytest.raises(gg.GraphError, match=r"MaxPool2D 'p'.*padding \(2, 2\) must be at most half the kernel"):
        nn.MaxPool2D(3, padding=2, name="p")(g.input("u", (None, 1, 8, 8)))
    with pytest.raises(gg.GraphError, match="Upsample2D mode"):
        nn.Upsample2D(2, mode="cubic")
    with pytest.raises(gg.GraphError, match="BatchNorm 'bn' normalizes 3 channels"):
        bn = nn.BatchNorm(name="bn")
        bn(g.input("z", (None, 3)))
        bn(g.input("w", (None, 4)))


# configurations torch rejects: a GraphError naming the layer (and the node and shapes, past the layer's checks)
INVALID = {
    "stride 0": (lambda: nn.Conv2D(2, 3, stride=0, name="c"), 4, r"Conv2D 'c'.*conv2d node.*stride \(0, 0\) must be at "
                                                                 r"least 1; input shapes \(N, 1, 6, 6\)"),
    "dilation 0": (lambda: nn.Conv2D(2, 3, dilation=(1, 0), name="c"), 4, r"Conv2D 'c'.*dilation \(1, 0\) must be"),
    "negative padding": (lambda: nn.Conv2D(2, 3, padding=-1, name="c"), 4, r"Conv2D 'c'.*padding \(-1, -1\) must"),
    "kernel 0": (lambda: nn.Conv2D(2, 0, name="c"), 4, r"Conv2D 'c'.*kernel \(0, 0\) must be at least 1"),
    "fractional kernel": (lambda: nn.Conv2D(2, 2.5, name="c"), 4, r"Conv2D 'c': kernel_size must be an int or a "
                                                                   r"tuple of 2 ints, got 2.5"),
    "three kernel sizes": (lambda: nn.Conv2D(2, (3, 3, 3), name="c"), 4, r"kernel_size must be an int or a tuple"),
    "unknown padding": (lambda: nn.Conv2D(2, 3, padding="full", name="c"), 4, r"padding must be ints, 'valid' or"),
    "conv1d stride 0": (lambda: nn.Conv1D(2, 3, stride=0, name="c"), 3, r"Conv1D 'c'.*stride \(1, 0\) must be"),
    "transposed stride 0": (lambda: nn.ConvTranspose2D(2, 3, stride=0, name="c"), 4, r"ConvTranspose2D 'c'.*stride"),
    "transposed negative padding": (lambda: nn.ConvTranspose2D(2, 3, padding=-1, name="c"), 4, r"padding \(-1, -1\)"),
    "pool stride 0": (lambda: nn.MaxPool2D(2, stride=0, name="p"), 4, r"MaxPool2D 'p'.*stride \(0, 0\) must be"),
    "pool kernel 0": (lambda: nn.AvgPool2D(0, name="p"), 4, r"AvgPool2D 'p'.*kernel \(0, 0\) must be at least 1"),
    "hidden size 0": (lambda: nn.LSTM(0, name="r"), 3, r"LSTM: hidden_size must be a positive int, got 0"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_configurations_name_the_layer(case):
    make, rank, message = INVALID[case]
    with pytest.raises(gg.GraphError, match=message):
        make()(gg.Graph("bad").input("x", (None, 1, 6, 6)[:rank]))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own copy
@pytest.mark.parametrize("kernel,dilation", [(2, 1), ((4, 3), (1, 2)), (3, (2, 1))])
def test_same_padding_matches_torch_for_even_spans_too(kernel, dilation):
    """An even span d·(k − 1) splits evenly; an odd one puts its extra row or column after, as torch does."""
    torch_check(lambda x: nn.Conv2D(2, kernel, padding="same", dilation=dilation, name="c")(x), (2, 2, 5, 6),
                lambda t, x, p: t.nn.functional.conv2d(x, p["c.W"], p["c.b"], padding="same", dilation=dilation))
    k = per_axis(kernel)[0]
    torch_check(lambda x: nn.Conv1D(2, k, padding="same", dilation=per_axis(dilation)[1], name="c")(x), (2, 2, 7),
                lambda t, x, p: t.nn.functional.conv1d(x, p["c.W"], p["c.b"], padding="same",
                                                       dilation=per_axis(dilation)[1]))


def test_valid_padding_and_one_tuples_as_torch():
    g = gg.Graph("valid")
    assert nn.Conv2D(2, 3, padding="valid")(g.input("x", (None, 1, 6, 7))).shape == (None, 2, 4, 5)
    assert nn.Conv1D(2, (3,), stride=(2,), padding="valid")(g.input("s", (None, 1, 9))).shape == (None, 2, 4)


def test_trained_batchnorm_params_round_trip_through_save_and_load(tmp_path):
    g = gg.Graph("bn_fit")
    x = g.input("x", (None, 2, 4, 4))
    y = g.input("y", (None,), dtype="int64")
    h = nn.Flatten()(nn.BatchNorm(name="bn")(nn.Conv2D(3, 3, padding=1, name="c")(x)))
    logits = nn.Dense(2, name="fc")(h)
    params = g.init_params()
    data = {"x": RNG.normal(size=(32, 2, 4, 4)).astype(np.float32), "y": RNG.integers(0, 2, 32)}
    step = gg.compile(gg.softmax_cross_entropy(logits, y), optimizer=gg.optim.SGD(lr=0.1))
    history = gg.fit(step, params, data, epochs=3, batch_size=8, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert np.any(params["bn.running_mean"] != 0)  # updated by the training calls
    gg.save_params(tmp_path / "p.npz", params)
    loaded = gg.load_params(tmp_path / "p.npz", graph=g)
    predict = gg.compile(logits, training=False)
    np.testing.assert_array_equal(predict(loaded, x=data["x"]), predict(params, x=data["x"]))
