"""Tests for graphgrad.kernels: forwards and backwards against PyTorch (float64),
plus torch-free adjoint checks <fwd(x), gy> == <x, bwd(gy)> for the backwards."""
import ast
import importlib.util
import inspect
import pathlib
import re

import numpy as np
import pytest

# Loaded from its file, not via the package: the code generator pastes this
# module verbatim into standalone code, so it must work with no package context.
_PATH = pathlib.Path(__file__).resolve().parents[1] / "graphgrad" / "kernels.py"
_spec = importlib.util.spec_from_file_location("graphgrad_kernels_standalone", _PATH)
K = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(K)

ATOL = 1e-10


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(shape, seed=0, dtype=np.float64):
    return rng(seed).standard_normal(shape).astype(dtype)


def dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def assert_adjoint(y, gy, x, gx):
    assert y.shape == gy.shape and x.shape == gx.shape
    lhs, rhs = dot(y, gy), dot(x, gx)
    assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs)), (lhs, rhs)


# ---------------------------------------------------------------- module shape

def test_module_imports_only_numpy():
    tree = ast.parse(inspect.getsource(K))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(imports) == 1
    (alias,) = imports[0].names
    assert isinstance(imports[0], ast.Import)
    assert (alias.name, alias.asname) == ("numpy", "np")
    # ufunc.at (np.add.at) is far too slow for these kernels
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "at"]


def test_source_runs_when_pasted():
    # what codegen does: drop the numpy import, paste, run with `np` in scope
    body = re.sub(r"^import numpy as np\n", "", inspect.getsource(K), flags=re.M)
    ns = {"np": np}
    exec(compile(body, "<pasted kernels>", "exec"), ns)
    x, w = randn((2, 3, 6, 5), 1), randn((4, 3, 3, 3), 2)
    np.testing.assert_array_equal(ns["conv2d"](x, w, 1, 1), K.conv2d(x, w, 1, 1))
    np.testing.assert_array_equal(ns["maxpool2d"](x, 2, 2), K.maxpool2d(x, 2, 2))


# conv2d cases: (x shape, w shape, stride, padding, dilation); non-square throughout
CONV_CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 2), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 9, 8), (5, 3, 3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 2, 11, 10), (3, 2, 3, 2), (1, 2), (1, 0), (2, 2)),
    ((1, 3, 10, 13), (2, 3, 2, 3), (2, 3), (2, 1), (2, 1)),
    ((2, 4, 5, 6), (3, 4, 1, 1), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 9, 7), (4, 3, 3, 2), (1, 1), (2, 1), (2, 3)),   # stride 1, dilated
    ((2, 1, 8, 9), (16, 1, 3, 3), (1, 1), (1, 1), (1, 1)),  # C*kh*kw <= O
    # large enough for the stride-1 planes layout: forward by col2im (C > O), then by im2col, dilated
    ((2, 8, 48, 44), (3, 8, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 4, 40, 46), (6, 4, 3, 3), (1, 1), (2, 1), (2, 1)),
]

# conv_transpose2d cases: (x shape, w shape (Cin, Cout, kh, kw), stride, padding,
# output_padding, dilation)
CONVT_CASES = [
    ((2, 3, 5, 6), (3, 4, 3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ((2, 2, 4, 7), (2, 3, 3, 2), (2, 3), (0, 1), (1, 2), (1, 1)),
    ((1, 3, 6, 5), (3, 2, 2, 3), (1, 1), (1, 0), (0, 0), (2, 1)),
    ((2, 2, 3, 4), (2, 2, 3, 3), (3, 2), (1, 1), (2, 0), (2, 2)),
    ((2, 3, 5, 6), (3, 4, 3, 3), (1, 1), (1, 1), (1, 1), (2, 2)),  # stride 1, op 1
    ((2, 8, 4, 5), (8, 1, 3, 3), (1, 1), (0, 1), (0, 0), (1, 1)),
    ((2, 3, 4, 5), (3, 2, 2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),  # U-Net up-sampling: taps tile the output
    ((2, 3, 4, 5), (3, 2, 2, 3), (3, 4), (1, 0), (1, 2), (1, 1)),  # stride past the kernel: gaps between taps
    ((2, 3, 4, 5), (3, 2, 1, 1), (1, 1), (0, 0), (1, 0), (2, 1)),  # 1x1, output_padding past the stride
]

# pooling cases: (x shape, kernel, stride, padding)
POOL_CASES = [
    ((2, 3, 9, 11), (3, 3), (2, 2), (0, 0)),     # overlapping
    ((2, 3, 10, 9), (3, 3), (2, 2), (1, 1)),     # overlapping + padding
    ((2, 2, 8, 12), (2, 2), (2, 2), (0, 0)),     # tiled fast path
    ((2, 2, 9, 12), (3, 2), (3, 2), (0, 0)),     # tiled, non-square window
    ((1, 2, 9, 10), (2, 3), (1, 2), (1, 1)),     # non-square overlapping, padded
    ((2, 2, 9, 9), (2, 2), (2, 2), (0, 0)),      # kernel == stride, not divisible
    ((2, 8, 64, 66), (2, 2), (2, 2), (0, 0)),    # 2x2 tiles, large enough for the split-rows path
]


# ---------------------------------------------------------------- adjoint (no torch)

@pytest.mark.parametrize("xs,ws,s,p,d", CONV_CASES)
def test_conv2d_adjoint(xs, ws, s, p, d):
    x, w = randn(xs, 1), randn(ws, 2)
    y = K.conv2d(x, w, s, p, d)
    gy = randn(y.shape, 3)
    assert_adjoint(y, gy, x, K.conv2d_grad_input(gy, w, xs[2:], s, p, d))
    assert_adjoint(y, gy, w, K.conv2d_grad_weight(gy, x, ws[2:], s, p, d))


@pytest.mark.parametrize("xs,ws,s,p,op,d", CONVT_CASES)
def test_conv_transpose2d_adjoint(xs, ws, s, p, op, d):
    x, w = randn(xs, 1), randn(ws, 2)
    y = K.conv_transpose2d(x, w, s, p, op, d)
    gy = randn(y.shape, 3)
    assert_adjoint(y, gy, x, K.conv2d(gy, w, s, p, d)[:, :, :xs[2], :xs[3]])
    assert_adjoint(y, gy, w, K.conv2d_grad_weight(x, gy, ws[2:], s, p, d))


def test_conv1d_adjoint():
    x, w = randn((2, 3, 17), 1), randn((4, 3, 3), 2)
    y = K.conv1d(x, w, 2, 1, 2)
    gy = randn(y.shape, 3)
    assert_adjoint(y, gy, x, K.conv1d_grad_input(gy, w, 17, 2, 1, 2))
    assert_adjoint(y, gy, w, K.conv1d_grad_weight(gy, x, 3, 2, 1, 2))


@pytest.mark.parametrize("xs,k,s,p", POOL_CASES)
def test_pool_adjoint(xs, k, s, p):
    x = randn(xs, 1)
    y = K.avgpool2d(x, k, s, p)
    gy = randn(y.shape, 2)
    assert_adjoint(y, gy, x, K.avgpool2d_grad(gy, xs[2:], k, s, p))
    # max pool is linear for a fixed arg-max pattern: y[o] = x[argmax(o)]
    y = K.maxpool2d(x, k, s, p)
    assert_adjoint(y, gy, x, K.maxpool2d_grad(gy, x, k, s, p))


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_adjoint(scale):
    x = randn((2, 3, 5, 7), 1)
    y = K.upsample_nearest2d(x, scale)
    gy = randn(y.shape, 2)
    assert_adjoint(y, gy, x, K.upsample_nearest2d_grad(gy, scale))
    y = K.upsample_bilinear2d(x, scale)
    assert_adjoint(y, gy, x, K.upsample_bilinear2d_grad(gy, (5, 7), scale))


# ---------------------------------------------------------------- vs torch

@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    # tiny tensors: thread start-up would dominate, so run torch single-threaded
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def T(torch, a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def close(a, t):
    t = t.detach().numpy()
    assert a.shape == t.shape
    np.testing.assert_allclose(a, t, rtol=0, atol=ATOL)


@pytest.mark.parametrize("xs,ws,s,p,d", CONV_CASES)
def test_conv2d_vs_torch(torch, xs, ws, s, p, d):
    F = torch.nn.functional
    x, w = randn(xs, 1), randn(ws, 2)
    tx, tw = T(torch, x, True), T(torch, w, True)
    ty = F.conv2d(tx, tw, stride=s, padding=p, dilation=d)
    y = K.conv2d(x, w, s, p, d)
    close(y, ty)
    gy = randn(y.shape, 3)
    ty.backward(T(torch, gy))
    close(K.conv2d_grad_input(gy, w, xs[2:], s, p, d), tx.grad)
    close(K.conv2d_grad_weight(gy, x, ws[2:], s, p, d), tw.grad)


@pytest.mark.parametrize("xs,ws,s,p,op,d", CONVT_CASES)
def test_conv_transpose2d_vs_torch(torch, xs, ws, s, p, op, d):
    F = torch.nn.functional
    x, w = randn(xs, 1), randn(ws, 2)
    tx, tw = T(torch, x, True), T(torch, w, True)
    ty = F.conv_transpose2d(tx, tw, stride=s, padding=p, output_padding=op, dilation=d)
    y = K.conv_transpose2d(x, w, s, p, op, d)
    close(y, ty)
    gy = randn(y.shape, 3)
    ty.backward(T(torch, gy))
    # the expressions the graph layer uses for conv_transpose2d's gradients
    close(K.conv2d(gy, w, s, p, d)[:, :, :xs[2], :xs[3]], tx.grad)
    close(K.conv2d_grad_weight(x, gy, ws[2:], s, p, d), tw.grad)


@pytest.mark.parametrize("s,p,d", [(1, 0, 1), (2, 1, 1), (2, 2, 2), (3, 1, 2)])
def test_conv1d_vs_torch(torch, s, p, d):
    F = torch.nn.functional
    x, w = randn((2, 3, 19), 1), randn((5, 3, 3), 2)
    tx, tw = T(torch, x, True), T(torch, w, True)
    ty = F.conv1d(tx, tw, stride=s, padding=p, dilation=d)
    y = K.conv1d(x, w, s, p, d)
    close(y, ty)
    gy = randn(y.shape, 3)
    ty.backward(T(torch, gy))
    close(K.conv1d_grad_input(gy, w, 19, s, p, d), tx.grad)
    close(K.conv1d_grad_weight(gy, x, 3, s, p, d), tw.grad)


@pytest.mark.parametrize("xs,k,s,p", POOL_CASES)
def test_maxpool_vs_torch(torch, xs, k, s, p):
    x = randn(xs, 1)
    tx = T(torch, x, True)
    ty = torch.nn.functional.max_pool2d(tx, k, s, p)
    y = K.maxpool2d(x, k, s, p)
    close(y, ty)
    gy = randn(y.shape, 2)
    ty.backward(T(torch, gy))
    close(K.maxpool2d_grad(gy, x, k, s, p), tx.grad)


@pytest.mark.parametrize("xs,k,s,p", POOL_CASES)
def test_maxpool_ties_vs_torch(torch, xs, k, s, p):
    # all-zero input plus a coarse integer grid: many exact ties per window
    for x in (np.zeros(xs), rng(5).integers(0, 2, xs).astype(np.float64)):
        tx = T(torch, x, True)
        ty = torch.nn.functional.max_pool2d(tx, k, s, p)
        close(K.maxpool2d(x, k, s, p), ty)
        gy = randn(ty.shape, 2)
        ty.backward(T(torch, gy))
        close(K.maxpool2d_grad(gy, x, k, s, p), tx.grad)


@pytest.mark.parametrize("xs,k,s,p", POOL_CASES)
def test_avgpool_vs_torch(torch, xs, k, s, p):
    x = randn(xs, 1)
    tx = T(torch, x, True)
    ty = torch.nn.functional.avg_pool2d(tx, k, s, p)
    y = K.avgpool2d(x, k, s, p)
    close(y, ty)
    gy = randn(y.shape, 2)
    ty.backward(T(torch, gy))
    close(K.avgpool2d_grad(gy, xs[2:], k, s, p), tx.grad)


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_vs_torch(torch, mode, scale):
    x = randn((2, 3, 5, 7), 1)
    tx = T(torch, x, True)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    ty = torch.nn.functional.interpolate(tx, scale_factor=scale, mode=mode, **kw)
    if mode == "nearest":
        y = K.upsample_nearest2d(x, scale)
    else:
        y = K.upsample_bilinear2d(x, scale)
    close(y, ty)
    gy = randn(y.shape, 2)
    ty.backward(T(torch, gy))
    if mode == "nearest":
        gx = K.upsample_nearest2d_grad(gy, scale)
    else:
        gx = K.upsample_bilinear2d_grad(gy, (5, 7), scale)
    close(gx, tx.grad)


def test_conv2d_noncontiguous_inputs():
    base = randn((2, 3, 8, 7), 1)
    w = randn((4, 3, 3, 3), 2)
    for x in (base.transpose(0, 1, 3, 2), base[:, :, ::2, :],
              np.broadcast_to(base[:1], (3, 3, 8, 7))):
        for s, p in (((1, 1), (1, 1)), ((2, 1), (0, 2))):
            y = K.conv2d(x, w, s, p)
            np.testing.assert_allclose(y, K.conv2d(np.ascontiguousarray(x), w, s, p), atol=ATOL)
            gy = randn(y.shape, 3)
            np.testing.assert_allclose(
                K.conv2d_grad_weight(gy, x, (3, 3), s, p, 1),
                K.conv2d_grad_weight(gy, np.ascontiguousarray(x), (3, 3), s, p, 1), atol=ATOL)
    x = base.transpose(0, 1, 3, 2)
    for k, s, p in ((2, 2, 0), (3, 2, 1)):
        xc = np.ascontiguousarray(x)
        np.testing.assert_array_equal(K.maxpool2d(x, k, s, p), K.maxpool2d(xc, k, s, p))
        gy = randn(K.maxpool2d(xc, k, s, p).shape, 4)
        np.testing.assert_array_equal(K.maxpool2d_grad(gy, x, k, s, p),
                                      K.maxpool2d_grad(gy, xc, k, s, p))


# ---------------------------------------------------------------- dtype

def _all_kernels_float32():
    f = np.float32
    x, w = randn((2, 3, 8, 9), 1, f), randn((4, 3, 3, 3), 2, f)
    y = K.conv2d(x, w, (2, 1), (1, 1), (1, 2))
    gy = randn(y.shape, 3, f)
    out = {
        "conv2d": y,
        "conv2d_grad_input": K.conv2d_grad_input(gy, w, (8, 9), (2, 1), (1, 1), (1, 2)),
        "conv2d_grad_weight": K.conv2d_grad_weight(gy, x, (3, 3), (2, 1), (1, 1), (1, 2)),
        "conv_transpose2d": K.conv_transpose2d(y, w, (2, 1), (1, 1), (1, 0), (1, 2)),
    }
    x1, w1 = randn((2, 3, 11), 1, f), randn((4, 3, 3), 2, f)
    y1 = K.conv1d(x1, w1, 2, 1, 1)
    g1 = randn(y1.shape, 3, f)
    out.update(conv1d=y1,
               conv1d_grad_input=K.conv1d_grad_input(g1, w1, 11, 2, 1, 1),
               conv1d_grad_weight=K.conv1d_grad_weight(g1, x1, 3, 2, 1, 1))
    for name, (k, s, p) in {"overlap": (3, 2, 1), "tiled": (3, 3, 0)}.items():
        x = randn((2, 3, 9, 12), 4, f)
        y = K.maxpool2d(x, k, s, p)
        gy = randn(y.shape, 5, f)
        out["maxpool2d_" + name] = y
        out["maxpool2d_grad_" + name] = K.maxpool2d_grad(gy, x, k, s, p)
        out["avgpool2d_" + name] = K.avgpool2d(x, k, s, p)
        out["avgpool2d_grad_" + name] = K.avgpool2d_grad(gy, (9, 12), k, s, p)
    x = randn((2, 3, 4, 5), 6, f)
    g = randn((2, 3, 8, 10), 7, f)
    out.update(upsample_nearest2d=K.upsample_nearest2d(x, 2),
               upsample_nearest2d_grad=K.upsample_nearest2d_grad(g, 2),
               upsample_bilinear2d=K.upsample_bilinear2d(x, 2),
               upsample_bilinear2d_grad=K.upsample_bilinear2d_grad(g, (4, 5), 2))
    return out


@pytest.mark.parametrize("name,out", list(_all_kernels_float32().items()))
def test_float32_stays_float32(name, out):
    assert out.dtype == np.float32, name


def test_float32_matches_torch(torch):
    F = torch.nn.functional
    x, w = randn((2, 3, 8, 9), 1, np.float32), randn((4, 3, 3, 3), 2, np.float32)
    y = K.conv2d(x, w, 2, 1, 1)
    np.testing.assert_allclose(
        y, F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy(),
        rtol=1e-5, atol=1e-5)
    xb = randn((2, 3, 5, 6), 3, np.float32)
    for scale in (2, 3):
        yb = K.upsample_bilinear2d(xb, scale)
        tb = F.interpolate(torch.from_numpy(xb), scale_factor=scale, mode="bilinear",
                           align_corners=False).numpy()
        np.testing.assert_allclose(yb, tb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), ((2, 3), (2, 2), (1, 1))])
def test_maxpool_grad_with_forward_output_and_gather_at(k, s, p):
    """maxpool2d_grad given y = maxpool2d(x) equals the recomputing form (ties included), and
    maxpool2d_gather_at is its transpose."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.normal(size=(2, 3, 6, 8)), 0).astype(np.float32)  # many all-zero (tied) windows
    x[0, 0, :2, :2] = 1.0
    y = K.maxpool2d(x, k, s, p)
    gy = rng.normal(size=y.shape).astype(np.float32)
    gx = K.maxpool2d_grad(gy, x, k, s, p, y)
    np.testing.assert_array_equal(gx, K.maxpool2d_grad(gy, x, k, s, p))
    assert gx.dtype == np.float32
    c = rng.normal(size=x.shape).astype(np.float32)
    gathered = K.maxpool2d_gather_at(c, x, y, k, s, p)
    np.testing.assert_allclose(np.sum(gathered * gy), np.sum(c * gx), rtol=1e-5)


# ---------------------------------------------------------------- scratch reuse

# (C, O): the weight gradient pairs x's columns left by the forward (C <= O), gy's columns left by
# the input gradient (C > O; C == O: in the one store both sides share), or builds per-image columns
# (C*kh*kw <= O: no workspaces)
@pytest.mark.parametrize("C,O", [(2, 3), (4, 2), (3, 3), (1, 16)])
@pytest.mark.parametrize("d", [(1, 1), (2, 1)])
@pytest.mark.parametrize("kept", [True, False])  # False: no workspace, nothing kept between calls
def test_conv_weight_grad_reuses_workspaces_safely(C, O, d, kept):
    workspace = {} if kept else None
    x, w = randn((2, C, 60, 64), 1), randn((O, C, 3, 3), 2)  # large enough for the planes layout

    def cold_grad_weight(gy, x):
        return K.conv2d_grad_weight(gy, x, (3, 3), 1, 1, d)

    def step(x, gy):
        y = K.conv2d(x, w, 1, 1, d, workspace)
        K.conv2d_grad_input(gy, w, x.shape[2:], 1, 1, d, workspace)
        return y, K.conv2d_grad_weight(gy, x, (3, 3), 1, 1, d, workspace)

    gy = randn(K.conv2d(x, w, 1, 1, d).shape, 3)
    y, gw = step(x, gy)
    np.testing.assert_allclose(gw, cold_grad_weight(gy, x), atol=ATOL)
    if kept and C == O and d == (1, 1):  # same shapes on both sides: one set of columns
        assert len(workspace["_conv_columns"]) == 1 and len(workspace["_conv_planes"]) == 2
    # results never alias scratch: later calls on other inputs leave them intact
    y_before, gw_before = y.copy(), gw.copy()
    step(randn(x.shape, 4), randn(gy.shape, 5))
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(gw, gw_before)
    # inputs changed in place after the forward: the weight gradient reads the new values
    K.conv2d(x, w, 1, 1, d, workspace)
    K.conv2d_grad_input(gy, w, x.shape[2:], 1, 1, d, workspace)
    x[1, -1, 3, 2] += 1.0
    gy[0, 0, 0, 0] -= 1.0
    np.testing.assert_allclose(K.conv2d_grad_weight(gy, x, (3, 3), 1, 1, d, workspace), cold_grad_weight(gy, x),
                               atol=ATOL)


def test_maxpool2x2_grad_float32_with_ties():
    # the 2x2 split-rows path (large maps) in float32 routes exactly as float64 does
    f = np.float32
    x = np.maximum(randn((2, 8, 64, 66), 1, f), 0)  # all-zero windows: ties
    x[0, 0, :2, :2] = 1.0
    gy = randn((2, 8, 32, 33), 2, f)
    gx = K.maxpool2d_grad(gy, x, 2, 2, 0, K.maxpool2d(x, 2, 2))
    assert gx.dtype == f
    np.testing.assert_array_equal(gx, K.maxpool2d_grad(gy.astype(np.float64), x.astype(np.float64), 2, 2))
