"""The benchmark's NumPy references are trustworthy: in the small
configuration of every workload, their loss and every gradient agree with
PyTorch autograd in float64 (1e-6 relative).  (The tiny end-to-end run of the harness is
tests/test_bench.py's.)"""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import reference as R  # noqa: E402
WORKLOADS = ["W1", "W2", "W3", "W4", "W5"]


def _float64_case(wl):
    """Small config in float64, with biases / BatchNorm affine perturbed away
    from their zero / one init so every term of the gradient is exercised."""
    params, data = R.make_workload(wl, seed=3, small=True)
    rng = np.random.default_rng(7)
    p = {}
    for k, v in params.items():
        v = v.astype(np.float64)
        if v.ndim == 1:
            v = v + 0.2 * rng.standard_normal(v.shape)
        p[k] = v
    d = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in data.items()}
    d["workload"] = wl
    return p, d


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("wl", WORKLOADS)
def test_reference_matches_torch_autograd_float64(wl):
    pytest.importorskip("torch")
    from benchmarks.peers import TorchPeer

    p, d = _float64_case(wl)
    loss, grads = R.build(wl, {k: v.copy() for k, v in p.items()}, d).loss_and_grads()
    peers = [TorchPeer(wl, p, d)] + ([TorchPeer(wl, p, d, cell=True)] if wl == "W3" else [])
    for peer in peers:
        tloss, tgrads = peer.loss_and_grads()
        assert abs(loss - tloss) <= 1e-6 * abs(tloss), (loss, tloss)
        assert set(grads) == set(tgrads) == set(p)
        for k in p:
            assert grads[k].shape == p[k].shape == tgrads[k].shape, k
            assert grads[k].dtype == np.float64, k
            assert _rel(grads[k], tgrads[k]) <= 1e-6, (k, _rel(grads[k], tgrads[k]))


@pytest.mark.parametrize("wl", WORKLOADS)
def test_reference_step_is_sgd_and_float32(wl):
    params, data = R.make_workload(wl, small=True)
    assert all(v.dtype == np.float32 for v in params.values())
    p0 = {k: v.copy() for k, v in params.items()}
    m = R.build(wl, params, data)
    loss, grads = m.loss_and_grads()
    assert all(g.dtype == np.float32 for g in grads.values())
    assert m.step() == pytest.approx(loss, rel=1e-6)
    for k in params:  # updated in place, by lr * grad
        np.testing.assert_allclose(params[k], p0[k] - R.LR * grads[k], rtol=1e-5, atol=1e-7)
    assert m.loss() < loss  # a small SGD step goes downhill


def test_make_workload_shapes_and_names():
    p, d = R.make_workload("W1")
    assert p["fc1.W"].shape == (784, 256) and p["fc3.W"].shape == (256, 10)
    assert d["x"].shape == (128, 784) and d["y"].dtype == np.int64
    p, d = R.make_workload("W2")
    assert p["conv2.W"].shape == (32, 16, 3, 3) and p["fc.W"].shape == (1568, 10)
    p, d = R.make_workload("W3")
    assert p["lstm.W_ih"].shape == (512, 32) and p["lstm.W_hh"].shape == (512, 128)
    assert d["x"].shape == (32, 50, 32)
    p, d = R.make_workload("W4")
    assert p["conv2.W"].shape == (16, 16, 3, 3) and "y" not in d
    p, d = R.make_workload("W5")
    assert p["up2.W"].shape == (32, 16, 2, 2) and d["y"].shape == (4, 1, 32, 32)
    assert set(np.unique(d["y"])) <= {0.0, 1.0}
    a, _ = R.make_workload("W2", seed=0)
    b, _ = R.make_workload("W2", seed=0)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_gemm_floor_records_the_reference_gemms():
    from benchmarks.harness import GemmFloor

    p, d = R.make_workload("W2", small=True)
    f = GemmFloor("W2", p, d)
    # conv1: fwd + dW; conv2: fwd + dW + 9 taps; fc: fwd + dW + dx
    assert len(f.calls) == 2 + 11 + 3
    assert f.step() == 0.0 and f.flops() > 0


def test_the_torch_floor_makes_the_same_products():
    pytest.importorskip("torch")
    from benchmarks.harness import GemmFloor

    p, d = R.make_workload("W3", small=True)
    numpy_floor, torch_floor = GemmFloor("W3", p, d), GemmFloor("W3", p, d, "torch")
    numpy_floor.step(), torch_floor.step()
    assert len(torch_floor.ops) == len(numpy_floor.ops) > 0
    for (_, _, a), (_, _, b) in zip(numpy_floor.ops, torch_floor.ops):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-4, atol=1e-4)
