"""The costs a target cannot get under on this machine, measured: what the benchmark's targets leave room for.

    python -m benchmarks.bounds            # a few seconds
    python -m benchmarks.bounds --json

- import: seconds to import a module in a fresh process that has loaded numpy (the state the
  compile rows start from).  A cold compile imports networkx and graphgrad, and SymPy when it
  derives and prints elementwise formulas: their sum bounds every cold compile from below.
- transcendentals: NumPy's float32 ns per element at one LSTM step's gate block (4H, N), where
  the step's elementwise calls run; a multiply for scale.
- W3: its step's fixed parts against the GEMM floor the ratio is taken over.  graphgrad's own
  GEMMs (the feature-major layout of its scan: (4H, H+I+1) @ (H+I+1, N) forward, (H, 4H) @ (4H, N)
  in reverse, one weight-gradient GEMM) and the exp and tanh the gates and cell cannot do without
  (forward: exp of 4H·N, tanh of H·N per step); what ``floor × 1.15`` leaves for everything else.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys

import numpy as np

from . import harness, reference
from .scaling import median_seconds

W3_TARGET = 1.15  # the W3 row's target, a multiple of its GEMM floor


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall seconds of ``import module`` in fresh processes that have imported numpy."""
    code = ("import time, numpy; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
            .format(m=module))
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(repeats)]
    return statistics.median(runs)


def _ms(fn, repeats: int) -> float:
    return median_seconds(fn, repeats, warmup=1) * 1e3


def ns_per_element(ufunc, shape, repeats: int = 200) -> float:
    """float32 ns per element of ``ufunc(a, out=...)`` on gate-like values (normal, σ = 2)."""
    a = (np.random.default_rng(0).standard_normal(shape) * 2).astype(np.float32)
    out = np.empty_like(a)
    args = (a, a) if ufunc.nin == 2 else (a,)
    return _ms(lambda: [ufunc(*args, out=out) for _ in range(10)], repeats) / 10 * 1e6 / a.size


def w3_budget(small: bool = False, repeats: int = 20) -> dict:
    """W3's GEMM floor, graphgrad's own GEMMs and the unavoidable exp and tanh, in ms per step."""
    params, data = reference.make_workload("W3", seed=0, small=small)
    N, T, I = data["x"].shape
    H = params["lstm.W_hh"].shape[1]
    rng = np.random.default_rng(0)

    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    weights, inputs, gates = array(4 * H, H + I + 1), array(T + 1, H + I + 1, N), array(T, 4 * H, N)
    weights_t, back = array(H, 4 * H), array(T, H, N)
    d_gates, stacked, d_weights = array(4 * H, T * N), array(H + 1 + I + 1, T * N), array(4 * H, H + I + 2)

    def own_gemms():
        for t in range(T):
            np.matmul(weights, inputs[t], out=gates[t])
        for t in range(T):
            np.matmul(weights_t, gates[t], out=back[t])
        np.matmul(d_gates, stacked.T, out=d_weights)

    gate_out, cell_out = np.empty((4 * H, N), np.float32), np.empty((H, N), np.float32)

    def transcendentals():
        for t in range(T):
            np.exp(gates[t], out=gate_out)
            np.tanh(back[t], out=cell_out)

    floor = harness.GemmFloor("W3", copy.deepcopy(params), data)
    with np.errstate(over="ignore"):
        return {"floor": _ms(floor.step, repeats), "own_gemms": _ms(own_gemms, repeats),
                "transcendentals": _ms(transcendentals, repeats)}


def measure(small: bool = False) -> dict:
    gate_block = (512, 32)
    w3 = w3_budget(small)
    w3["left_at_target"] = W3_TARGET * w3["floor"] - w3["own_gemms"] - w3["transcendentals"]
    return {
        "import_s": {m: import_seconds(m, 1 if small else 3) for m in ("networkx", "sympy", "graphgrad")},
        "ns_per_element": {u.__name__: ns_per_element(u, gate_block, 20 if small else 200)
                           for u in (np.exp, np.tanh, np.multiply)},
        "W3_ms": w3,
    }


def format_report(b: dict) -> str:
    imp, ns, w3 = b["import_s"], b["ns_per_element"], b["W3_ms"]
    return "\n".join([
        "import, s (fresh process, numpy loaded): " + ", ".join(f"{m} {s:.3f}" for m, s in imp.items()),
        f"  a cold compile that derives with SymPy spends >= {imp['sympy'] + imp['graphgrad']:.2f} s importing "
        f"(graphgrad {imp['graphgrad']:.2f} + SymPy {imp['sympy']:.2f})",
        "float32 ns per element at a (512, 32) gate block: " + ", ".join(f"{u} {v:.2f}" for u, v in ns.items()),
        f"W3 per step, ms: GEMM floor {w3['floor']:.2f}; graphgrad's own GEMMs {w3['own_gemms']:.2f}; "
        f"exp + tanh of gates and cell {w3['transcendentals']:.2f}",
        f"  at {W3_TARGET} x floor, {w3['left_at_target']:.2f} ms are left for every other call of the step",
    ])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--small", action="store_true", help="tiny W3 and few repeats (a smoke test)")
    args = ap.parse_args(argv)
    b = measure(args.small)
    print(json.dumps(b, indent=1) if args.json else format_report(b))


if __name__ == "__main__":
    main()
