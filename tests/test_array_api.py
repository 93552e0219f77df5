"""The Array API target: every example network trains on NumPy, PyTorch, JAX and Dask arrays
exactly as the NumPy target does (float64, to 1e-6), and returns the caller's arrays."""
import numpy as np
import pytest

import graphgrad as gg

pytest.importorskip("array_api_compat")


# per library: (numpy -> its array, its arrays -> numpy arrays, its array type)
def _numpy():
    return np.asarray, lambda arrays: [np.asarray(a) for a in arrays], (np.ndarray, np.generic)


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # tiny matrices: threads only contend (a CNN step 1 s -> 20 ms on two busy cores)
    return torch.from_numpy, lambda arrays: [t.numpy() for t in arrays], torch.Tensor


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
    return jax.numpy.asarray, lambda arrays: [np.asarray(a) for a in arrays], jax.Array


def _dask():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    # batches in two chunks; everything computed at once (one by one would run the lazy graph again
    # each time), in this thread (worker threads and BLAS threads only contend on two cores)
    return (lambda a: da.from_array(a, chunks=max(1, a.shape[0] // 2) if a.ndim else ()),
            lambda arrays: list(dask.compute(*arrays, scheduler="synchronous")), da.Array)


def _cupy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver or device missing
        pytest.skip("CuPy needs a GPU")
    return cupy.asarray, lambda arrays: [cupy.asnumpy(a) for a in arrays], cupy.ndarray


LIBRARIES = {"numpy": _numpy, "torch": _torch, "jax": _jax, "dask": _dask, "cupy": _cupy}


def _feeds(g, batch, rng):
    feeds = {}
    for t in g.inputs:
        shape = (batch,) + t.shape[1:]
        if t.dtype.startswith("int"):
            feeds[t.name] = rng.integers(0, 10, shape)
        elif t.name == "mask":
            feeds[t.name] = (rng.random(shape) > 0.5).astype(np.float64)
        else:
            feeds[t.name] = rng.normal(size=shape)
    return feeds


MODELS = {
    "mlp": lambda: gg.models.mlp(hidden=16),
    "cnn": lambda: gg.models.cnn(filters=4),
    "resnet": lambda: gg.models.resnet(width=4, blocks=2),
    "unet": lambda: gg.models.unet(size=8, depth=2, base_channels=4),
    "lstm": lambda: gg.models.lstm(steps=4, hidden=8, lowering="loop"),  # unrolled on this target
}


# JAX runs a step op by op slowly (each new op and shape is an XLA compile: a ResNet step takes
# minutes); its users jit the step, as here, for networks without dropout (whose host-drawn mask
# a trace would freeze)
JITTED = ("resnet", "unet", "lstm")
# the big graphs take one step where a second would only double a minute-long test
ONE_STEP = {("jax", m) for m in JITTED} | {("dask", "resnet"), ("dask", "unet")}


def _jitted_step(compiled, params, feeds):
    """One step of the generated module under jax.jit: params and state go in and come out."""
    import jax

    def pure(params, feeds, state):
        params, state = dict(params), dict(state)
        results = compiled.module.step(params, feeds, state)
        return compiled.module.unpack(results), params, state

    loss, new_params, compiled.state = jax.jit(pure)(params, feeds, compiled.state)
    params.update(new_params)
    return loss


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("model", MODELS)
def test_two_training_steps_match_the_numpy_target(model, library):
    to, back_all, array_type = LIBRARIES[library]()
    g, loss, _ = MODELS[model]()
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=0).items()}
    batches = [_feeds(g, 4, rng) for _ in range(2)]

    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2), dtype="float64")
    expected_params = {k: v.copy() for k, v in params.items()}
    expected_losses = []
    for feeds in batches:
        expected_losses.append(float(step(expected_params, **feeds)))
        first_step_params = first_step_params if len(expected_losses) > 1 else {k: v.copy() for k, v in expected_params.items()}

    portable = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2), dtype="float64", target="array_api")
    theirs = {k: to(v.copy()) for k, v in params.items()}
    if (library, model) in ONE_STEP:
        batches, expected_losses, expected_params = batches[:1], expected_losses[:1], first_step_params
    if library == "jax" and model in JITTED:
        losses = [_jitted_step(portable, theirs, {k: to(v) for k, v in batches[0].items()})]  # one trace, one compile
    else:
        losses = [portable(theirs, **{k: to(v) for k, v in feeds.items()}) for feeds in batches]

    assert all(isinstance(v, array_type) for v in [*theirs.values(), *losses])
    names = sorted(theirs)
    *values, = back_all([*losses, *(theirs[k] for k in names)])
    np.testing.assert_allclose([float(v) for v in values[:len(losses)]], expected_losses, rtol=1e-6, atol=1e-6)
    for name, value in zip(names, values[len(losses):]):
        np.testing.assert_allclose(value, expected_params[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_source_is_array_api_only():
    g, loss, _ = gg.models.cnn(filters=4)
    source = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), target="array_api").source
    body = source[source.index("def step"):]
    assert "np." not in body and "out=" not in body and "[...]" not in body
    assert "xp, dev = array_namespace(" in body and "conv2d(xp, " in body
    assert "# conv1/conv2d: conv2d" in body  # the NumPy target's names and comments


def test_saved_module_runs_standalone(tmp_path):
    import importlib.util

    g, loss, _ = gg.models.mlp(hidden=8)
    params = g.init_params(seed=1)
    feeds = _feeds(g, 5, np.random.default_rng(1))
    f = gg.compile(loss, wrt=g.params, target="array_api")
    f.save(tmp_path / "step_xp.py")
    spec = importlib.util.spec_from_file_location("step_xp", tmp_path / "step_xp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value, grads = module.run(params, **feeds)
    expected, expected_grads = gg.compile(loss, wrt=g.params)(params, **feeds)
    assert value == pytest.approx(float(expected), rel=1e-5)
    for name in expected_grads:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("op", gg.ops())
def test_every_op_has_an_array_api_emission(op):
    from graphgrad import portable

    assert portable.supported(op) or op.startswith("recurrent_") or op == "train_eval"


def test_mixed_libraries_are_a_graph_error():
    torch = pytest.importorskip("torch")
    g, loss, _ = gg.models.mlp(hidden=8)
    params = g.init_params(seed=0)
    feeds = _feeds(g, 3, np.random.default_rng(0))
    f = gg.compile(loss, target="array_api")
    with pytest.raises(gg.GraphError, match="namespace"):
        f(params, x=torch.from_numpy(feeds["x"]), y=torch.from_numpy(feeds["y"]))


def test_unknown_target_is_a_graph_error():
    g, loss, _ = gg.models.mlp(hidden=8)
    with pytest.raises(gg.GraphError, match="target"):
        gg.compile(loss, target="fortran")


def _registry_cases():
    from test_ops import DIFFERENTIABLE

    return [n for n in DIFFERENTIABLE if not n.startswith("recurrent_")]  # scans are unrolled before


@pytest.mark.parametrize("name", _registry_cases())
def test_every_op_and_its_gradient_match_the_numpy_target(name):
    """Each op's registry test case (its test shapes, attrs and domains), value and gradients."""
    from test_ops import op_case

    g, inputs, feeds, out = op_case(name)
    floats = [t for t in inputs if t.dtype.startswith("float")]
    if out.dtype.startswith("float") and floats:
        weights = g.const(np.random.default_rng(1).normal(size=out.shape))
        outputs, wrt = [(out * weights).sum(), out], floats
    else:
        outputs, wrt = [out], None
    results = [gg.compile(outputs, wrt=wrt, dtype="float64", target=t)({}, **feeds) for t in ("numpy", "array_api")]
    expected, got = ([*r[0], *r[1].values()] if wrt else r for r in results)
    for e, v in zip(expected, got):
        np.testing.assert_allclose(np.asarray(v, dtype=float), np.asarray(e, dtype=float), rtol=1e-9, atol=1e-12)
