"""graphgrad in the benchmark suite: the tiny `graphgrad bench` run, and gradients against the references."""
import copy
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import graphgrad as gg
from benchmarks import reference as R
from benchmarks.graphgrad_system import build_graph, graphgrad_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


def test_bench_command_runs_every_workload_tiny(tmp_path):
    """`graphgrad bench` in a tiny configuration: one step each, correctness only (no timing asserted);
    every system's row, the floor's included, has the JSON fields the docs table reads."""
    systems = ["numpy", "graphgrad"] + (["torch"] if importlib.util.find_spec("torch") else [])
    cmd = [sys.executable, "-m", "graphgrad.cli", "bench", "--only", ",".join(WORKLOADS), "--small",
           "--processes", "1", "--steps", "1", "--warmup", "0", "--systems", ",".join(systems), "--json"]
    env = dict(os.environ, GRAPHGRAD_CACHE=str(tmp_path))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # nothing else on stdout
    assert "dropped" not in r.stderr, r.stderr  # every first loss agreed with the reference to 1e-4
    assert set(out) == {"rows", "compile"} and out["compile"] == {}
    got = {(row["workload"], row["system"]) for row in out["rows"]}
    for wl in WORKLOADS:
        for system in systems + ["floor"]:
            assert (wl, system) in got, (wl, system, r.stderr)
    for row in out["rows"]:
        assert set(row) == {"workload", "system", "ms_median", "ms_min", "peak_mb"}
        assert row["ms_median"] >= row["ms_min"] > 0


def test_compile_rows_for_graphgrad(tmp_path):
    """C1, W1, W2 and the cached second compile are reported (tiny configuration)."""
    cmd = [sys.executable, "-m", "benchmarks.harness", "--only", "C1", "--small", "--processes", "1",
           "--systems", "graphgrad", "--json"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GRAPHGRAD_CACHE=str(tmp_path))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    comp = json.loads(r.stdout)["compile"]
    assert set(comp) == {"C1", "W1", "W2", "cached"}
    assert all(comp[k]["graphgrad"] > 0 for k in comp)


def _float64(tree):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
            for k, v in tree.items()}


@pytest.mark.parametrize("wl", WORKLOADS)
def test_gradients_match_the_hand_written_reference(wl):
    """graphgrad's compiled gradients (float64) equal the hand-written NumPy backward pass."""
    params, data = R.make_workload(wl, small=True)
    params, data = _float64(params), _float64(data)
    data["workload"] = wl
    ref_loss, ref_grads = R.build(wl, copy.deepcopy(params), data).loss_and_grads()
    graph, loss, feeds = build_graph(wl, params, data)
    full = dict(params)
    for name, value in graph.init_params(seed=0).items():  # BatchNorm running statistics
        full.setdefault(name, value.astype(np.float64))
    value, grads = gg.compile(loss, wrt=graph.params, dtype="float64")(full, **feeds)
    assert float(value) == pytest.approx(ref_loss, rel=1e-10)
    assert set(grads) == set(ref_grads)
    for name, g in ref_grads.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-7, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("wl", WORKLOADS)
def test_one_training_step_matches_the_reference(wl):
    """The compiled SGD step (float32, in place) moves the params as the reference step does."""
    params, data = R.make_workload(wl, small=True)
    data["workload"] = wl
    ref = R.build(wl, copy.deepcopy(params), data)
    ours = graphgrad_factory(copy.deepcopy(params), data)
    assert ours.step() == pytest.approx(ref.step(), rel=1e-5)
    for name in ref.params:
        assert ours.params[name].dtype == np.float32
        np.testing.assert_allclose(ours.params[name], ref.params[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_bounds_report_measures_what_the_targets_cannot_get_under():
    """`python -m benchmarks.bounds` (tiny W3): import seconds, per-element costs and W3's budget, as JSON."""
    cmd = [sys.executable, "-m", "benchmarks.bounds", "--small", "--json"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert set(b["import_s"]) == {"networkx", "sympy", "graphgrad"} and all(s > 0 for s in b["import_s"].values())
    assert set(b["ns_per_element"]) == {"exp", "tanh", "multiply"}
    w3 = b["W3_ms"]
    assert min(w3["floor"], w3["own_gemms"], w3["transcendentals"]) > 0
    assert w3["left_at_target"] == pytest.approx(1.15 * w3["floor"] - w3["own_gemms"] - w3["transcendentals"])
