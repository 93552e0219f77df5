"""Benchmark harness: every system on every workload, interleaved, in several
fresh processes; prints ms per step, peak memory and ratios.

    python -m benchmarks.harness                       # W1..W5 and C1, 3 processes
    python -m benchmarks.harness --only W1,W2 --processes 3 --json

Registering a system (graphgrad plugs in here)
----------------------------------------------
A *factory* is a module-level callable ``factory(params, data) -> system``:

- ``params``: dict name -> float32 ndarray, the workload's parameters in the
  names and PyTorch layouts of ``benchmarks.reference`` (a private copy: the
  system may update it in place);
- ``data``: dict with ``"x"``, ``"y"`` (int64 labels for W1-W3, a float 0/1
  mask for W5, absent for W4) and ``"workload"``, the id ("W1".."W5"; the C1
  compile run passes "W3" with T = 100), so one factory can serve all;
- the factory may carry ``warm_imports``, a tuple of module names the
  worker imports before measuring memory (so e.g. ``import torch`` is not
  counted as the step's memory);
- the returned object has ``step() -> float`` (forward + backward + SGD with
  lr 0.01, returning the loss before the update as a Python float, i.e. with
  the work finished) and ``loss() -> float`` (forward only).  It may raise
  ``NotImplementedError`` from the factory for a workload it does not do.

``SYSTEMS`` is the registry: system name -> {workload id: factory}.  Add one
with ``register(name, factory, workloads=("W1", ..., "W5"))`` (or pass a
dict workload -> factory).  Each worker process re-imports factories by
``module:qualname``, so they must be importable (not defined in
``__main__``).  At import this module registers "numpy" (the references),
the peers of ``benchmarks.peers`` that are importable, and then imports
``benchmarks.graphgrad_system`` if that module exists -- the place for
graphgrad's ``register("graphgrad", ...)``.  "graphgrad", when registered,
is the first system; otherwise "numpy" is.  Ratios are first ÷ each.

What is measured
----------------
For each workload, each of ``processes`` fresh subprocesses
(``python -m benchmarks.harness --worker``):

1. builds the data and params (fixed seed), then every system on its own
   copy of the params; each system's first ``loss()`` must agree with the
   NumPy reference's to 1e-4 relative, or the system is dropped for that
   workload (the reason goes to stderr);
2. measures the peak memory of a step (below), which also warms up;
3. runs ``warmup`` steps of each system, then interleaves the systems in
   blocks: in each round every system (in an order that rotates each round)
   runs back to back for 0.15 s untimed, then ``BLOCK`` (5) timed steps,
   until ``steps`` are timed.  Why blocks and not single steps: BLAS and
   OpenMP pools keep their threads spinning after work (OpenBLAS ~110 ms,
   PyTorch's OpenMP a few ms); on two cores, one system's spinning threads
   steal the next system's cores (both ran ~3x slow when alternated step by
   step), and letting the pools fall asleep before each step instead makes
   every step pay thread wake-ups (~2x slow, worse on a VM).  Untimed steps
   first, back to back, give each system its threads hot and the cores to
   itself, as in a real training loop.  Garbage collection is off while
   timing;
4. reports per system the median and min ms of its steps.

The table quotes the median over processes of the per-process medians, the
min over all steps, and the median peak.

``peak_mb`` is the memory beyond the parameters a step needs at its peak:
tracemalloc (NumPy buffers and Python objects) counted from before the
system was built -- so the persistent workspace of preallocating systems
counts -- to the peak of a step, plus, for PyTorch, the peak of the CPU
allocator's running total during the step (from the profiler's allocation
events).  XLA's buffers are invisible to both, so JAX rows have no figure
(``null``).  It is indicative, not exact.

The ``floor`` row is the BLAS-bound floor: the step's matrix products (every
GEMM of the NumPy reference's forward and backward, im2col GEMMs included,
recorded at their shapes and memory layouts) timed alone, interleaved like a
system.  When PyTorch is among the systems, ``floor_torch`` times the same
products with ``torch.matmul`` (its BLAS, on the peer's two threads): the
floor of the PyTorch side, which NumPy's OpenBLAS need not reach on small
GEMMs.

C1 (compile): for every system that does W3, a fresh process builds the W3
LSTM with T = 100 and times, from before importing the factory's module to
the first ``step()`` returned, the wall time; the median over processes is
reported in seconds under ``"compile"["C1"][system]``.  The same is timed for
W1 and W2 (``"compile"["W1"]``, ...), and, for a factory with a
``disk_cache_env`` attribute (the environment variable naming its on-disk
compile cache), ``"cached"``: C1 in a second process after a first one filled
an empty cache -- the seconds of the compile call itself when the system
object reports them as ``compile_seconds`` (imports excluded), else the whole
time.  Every compile process starts from an empty cache.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from . import reference

ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
RTOL = 1e-4
_WORKER_ENV = "GRAPHGRAD_BENCH_WORKER"
MARK = "@@HARNESS-RESULT@@ "

# system name -> {workload id -> factory(params, data) -> object with step()/loss()}
SYSTEMS: dict[str, dict] = {}


def register(name, factory, workloads=ALL_WORKLOADS):
    """Register system ``name``: ``factory(params, data)`` for each id in
    ``workloads``, or ``factory`` a dict {workload id: factory}.  Registering
    a name again adds to / replaces its workloads."""
    table = dict(factory) if isinstance(factory, dict) else {w: factory for w in workloads}
    SYSTEMS.setdefault(name, {}).update(table)


def numpy_factory(params, data):
    """The hand-written NumPy reference (``benchmarks.reference``)."""
    return reference.build(data["workload"], params, data)


def _register_builtins():
    register("numpy", numpy_factory)
    from . import peers
    for name, (fac, wls) in peers.available().items():
        register(name, fac, wls)
    try:
        importlib.import_module("benchmarks.graphgrad_system")
    except ModuleNotFoundError as e:
        if e.name != "benchmarks.graphgrad_system":
            raise


def system_order(systems=None):
    """Names in table order: graphgrad first when present, else numpy."""
    names = list(systems if systems is not None else SYSTEMS)
    for first in ("numpy", "graphgrad"):
        if first in names:
            names.remove(first)
            names.insert(0, first)
    return names


def _path(f):
    mod, qual = f.__module__, f.__qualname__
    if mod == "__main__" or "<locals>" in qual:
        raise ValueError(f"factory {qual} must be an importable module-level callable")
    return f"{mod}:{qual}"


def _resolve(path):
    mod, qual = path.split(":")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _err(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# measuring, inside a worker
# --------------------------------------------------------------------------

BLOCK = 5          # timed steps per block
BURN_S = 0.15      # untimed steps at the start of each block, at least this long


def _time_block(obj, n, burn_s=BURN_S):
    """Run ``obj.step()`` back to back: untimed for ``burn_s`` seconds (at
    least once), so the previous system's pools have stopped spinning and
    this one's threads are hot, then ``n`` timed steps; returns their ms."""
    end = time.perf_counter() + burn_s
    obj.step()
    while time.perf_counter() < end:
        obj.step()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        obj.step()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


class _TorchAllocPeak:
    """Peak of PyTorch's CPU allocator running total inside the block (bytes),
    from the profiler's allocation events; ``peak`` stays None if unavailable."""

    def __init__(self):
        self.peak = None

    def __enter__(self):
        self.prof = None
        if "torch" not in sys.modules:
            return self
        try:
            from torch.profiler import ProfilerActivity, profile
            self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self.prof.__enter__()
        except Exception:  # pragma: no cover - profiler missing
            self.prof = None
        return self

    def __exit__(self, *exc):
        if self.prof is None:
            return False
        self.prof.__exit__(*exc)
        try:
            from torch._C._profiler import _EventType
            allocs = []
            stack = list(self.prof.profiler.kineto_results.experimental_event_tree())
            while stack:
                n = stack.pop()
                if n.tag == _EventType.Allocation:
                    allocs.append((n.start_time_ns, n.extra_fields.alloc_size))
                stack.extend(n.children)
            allocs.sort()
            run = peak = 0
            for _, size in allocs:
                run += size
                peak = max(peak, run)
            self.peak = peak
        except Exception:  # pragma: no cover - private API moved
            self.peak = None
        return False


class GemmFloor:
    """Replays the NumPy reference's GEMMs (shapes and operand layouts) of one
    forward + backward; ``step()`` runs them all, ``loss()`` is NaN."""

    is_floor = True

    def __init__(self, wl, params, data, backend="numpy"):
        calls = []
        orig = reference._mm

        def rec(a, b, out=None):
            calls.append((a.shape, b.shape, _layout(a), _layout(b)))
            return orig(a, b, out=out)

        reference._mm = rec
        try:
            reference.build(wl, copy.deepcopy(params), data).loss_and_grads()
        finally:
            reference._mm = orig
        rng = np.random.default_rng(0)
        dt = np.float32
        self.ops = []
        for sa, sb, la, lb in calls:
            a = _operand(rng, sa, la, dt)
            b = _operand(rng, sb, lb, dt)
            self.ops.append((a, b, np.empty((sa[0], sb[1]), dt)))
        self.calls = calls
        self.mm = np.matmul
        if backend == "torch":
            import torch

            torch.set_num_threads(2)  # as the PyTorch peer
            self.ops = [tuple(torch.from_numpy(x) for x in op) for op in self.ops]  # views: same layouts
            self.mm = torch.matmul

    def step(self):
        mm = self.mm
        for a, b, o in self.ops:
            mm(a, b, out=o)
        return 0.0

    def loss(self):
        return math.nan

    def flops(self):
        return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in self.ops)


def _floors(systems) -> list:
    """The floor rows: NumPy's, and PyTorch's when PyTorch is timed too."""
    return ["floor"] + (["floor_torch"] if "torch" in systems else [])


def _layout(a):
    return "F" if (not a.flags.c_contiguous and a.flags.f_contiguous) else "C"


def _operand(rng, shape, layout, dt):
    a = rng.standard_normal(shape[::-1] if layout == "F" else shape).astype(dt)
    return a.T if layout == "F" else a


def _worker(spec):
    """One process, one workload: build, check, measure, time; returns a dict."""
    wl = spec["workload"]
    small = spec.get("small", False)
    params, data = reference.make_workload(wl, seed=spec.get("seed", 0), small=small)
    data["workload"] = wl
    steps, warmup = spec["steps"], spec["warmup"]
    ref_loss = reference.build(wl, copy.deepcopy(params), data).loss()
    live, out, dropped = [], {}, {}
    entries = list(spec["systems"])
    if spec.get("floor", True):
        entries += [[name, None] for name in _floors([name for name, _ in entries])]
    for name, path in entries:
        p = copy.deepcopy(params)
        try:
            factory = None if path is None else _resolve(path)
            for mod in getattr(factory, "warm_imports", ()):
                try:  # imports are not the step's memory
                    importlib.import_module(mod)
                except ImportError:
                    pass
        except Exception as e:
            dropped[name] = f"{type(e).__name__}: {e}"
            _err(f"[harness] {wl} {name}: dropped: {dropped[name]}")
            continue
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        try:
            backend = "torch" if name == "floor_torch" else "numpy"
            obj = factory(p, data) if factory else GemmFloor(wl, p, data, backend)
            if path is not None:
                loss0 = float(obj.loss())
                if not (abs(loss0 - ref_loss) <= RTOL * abs(ref_loss)):
                    raise ValueError(f"first loss {loss0!r} != reference {ref_loss!r} "
                                     f"(rel {abs(loss0 - ref_loss) / abs(ref_loss):.2e} > {RTOL})")
            else:
                loss0 = None
            obj.step()
            gc.collect()
            tracemalloc.reset_peak()
            obj.step()
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            with _TorchAllocPeak() as tp:  # a separate, untraced step
                obj.step()
            if getattr(obj, "memory_measurable", True) and path is not None:
                peak_mb = (peak + (tp.peak or 0)) / 2**20
            else:
                peak_mb = None
        except Exception as e:  # drop the row, say why
            tracemalloc.stop()
            dropped[name] = f"{type(e).__name__}: {e}"
            _err(f"[harness] {wl} {name}: dropped: {dropped[name]}")
            continue
        live.append((name, obj))
        out[name] = {"loss0": loss0, "peak_mb": peak_mb, "times": []}
    gc.collect()
    gc.disable()
    try:
        for _ in range(warmup):
            for name, obj in live:
                obj.step()
        k, done, r = len(live), 0, 0
        while done < steps:
            n = min(BLOCK, steps - done)
            for j in range(k):  # the order rotates each round
                name, obj = live[(r + j) % k]
                out[name]["times"] += _time_block(obj, n)
            done += n
            r += 1
    finally:
        gc.enable()
    res = {}
    for name, obj in live:
        last = float(obj.step()) if not getattr(obj, "is_floor", False) else 0.0
        t = out[name]["times"]
        res[name] = {"ms_median": statistics.median(t), "ms_min": min(t),
                     "peak_mb": out[name]["peak_mb"], "loss0": out[name]["loss0"],
                     "finite": math.isfinite(last)}
        if not math.isfinite(last):
            _err(f"[harness] {wl} {name}: loss became {last} during timing")
    return {"workload": wl, "ref_loss": ref_loss, "systems": res, "dropped": dropped}


def _compile_worker(spec):
    """C1: import the factory's module, build W3 (T = 100), first step.
    With ``spec["workload"]`` ("W1", "W2", ...) that workload instead."""
    wl = spec.get("workload", "C1")
    params, data = reference.make_workload(wl, seed=spec.get("seed", 0),
                                           small=spec.get("small", False))
    data["workload"] = "W3" if wl == "C1" else wl
    t0 = time.perf_counter()
    obj = _resolve(spec["path"])(params, data)
    obj.step()
    return {"seconds": time.perf_counter() - t0,
            "compile_seconds": getattr(obj, "compile_seconds", None)}


# --------------------------------------------------------------------------
# driving the workers
# --------------------------------------------------------------------------

def _spawn(kind, spec, timeout, extra_env=None):
    env = dict(os.environ, **(extra_env or {}))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env[_WORKER_ENV] = "1"
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.harness", kind, json.dumps(spec)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        _err(f"[harness] worker timed out after {timeout} s: {spec}")
        return None
    for line in r.stderr.splitlines():
        if line.startswith("[harness]"):
            _err(line)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    _err(f"[harness] worker failed (rc {r.returncode}): {spec.get('workload', spec)}\n"
         + r.stderr[-3000:])
    return None


def run(systems=None, workloads=ALL_WORKLOADS, processes=3, steps=None, warmup=3,
        seed=0, small=False, floor=True, compile_systems=None, timeout=900, verbose=True):
    """Run the benchmark; returns ``{"rows": [...], "compile": {...},
    "dropped": {...}}`` (``main`` prints rows and compile only).

    ``systems``: names in ``SYSTEMS`` (default all), or a dict name ->
    factory / {workload: factory}.  ``steps`` defaults to 20 (10 for W3).
    ``compile_systems``: names to time for C1 (default: none; ``main`` runs
    it when C1 is selected)."""
    if systems is None:
        table = SYSTEMS
    elif isinstance(systems, dict):
        table = {n: (f if isinstance(f, dict) else {w: f for w in ALL_WORKLOADS})
                 for n, f in systems.items()}
    else:
        table = {n: SYSTEMS[n] for n in systems}
    order = system_order(table)
    rows, dropped = [], {}
    for wl in workloads:
        names = [n for n in order if wl in table[n]]
        spec = {"workload": wl, "systems": [[n, _path(table[n][wl])] for n in names],
                "steps": steps if steps is not None else (10 if wl == "W3" else 20),
                "warmup": warmup, "seed": seed, "small": small, "floor": floor}
        per = []
        for i in range(processes):
            if verbose:
                _err(f"[harness] {wl}: process {i + 1}/{processes} ({', '.join(names)})")
            r = _spawn("--worker", spec, timeout)
            if r is not None:
                per.append(r)
                for n, why in r["dropped"].items():
                    dropped.setdefault(wl, {})[n] = why
        for n in names + (_floors(names) if floor else []):
            got = [r["systems"][n] for r in per if n in r["systems"]]
            if not got or (n in dropped.get(wl, {})):
                continue
            peaks = [g["peak_mb"] for g in got if g["peak_mb"] is not None]
            rows.append({"workload": wl, "system": n,
                         "ms_median": statistics.median(g["ms_median"] for g in got),
                         "ms_min": min(g["ms_min"] for g in got),
                         "peak_mb": statistics.median(peaks) if peaks else None})
    comp = {}
    for n in compile_systems or []:
        for wl in COMPILE_WORKLOADS:
            fac = table.get(n, {}).get("W3" if wl in ("C1", "cached") else wl)
            if fac is None:
                continue
            cache_env = getattr(fac, "disk_cache_env", None)
            if wl == "cached" and cache_env is None:
                continue  # no on-disk cache: a second compile is a first one
            secs = []
            for i in range(processes):
                if verbose:
                    _err(f"[harness] compile {wl}: {n} process {i + 1}/{processes}")
                spec = {"path": _path(fac), "seed": seed, "small": small,
                        "workload": "C1" if wl == "cached" else wl}
                with tempfile.TemporaryDirectory() as cache:
                    env = {cache_env: cache} if cache_env else None  # cold: an empty cache
                    if wl == "cached":  # a first process fills the cache, a second one is timed
                        _spawn("--compile-worker", spec, timeout, env)
                    r = _spawn("--compile-worker", spec, timeout, env)
                if r is not None:  # cached: the compile call itself when the system reports it
                    secs.append(r["compile_seconds"] if wl == "cached" and r.get("compile_seconds")
                                is not None else r["seconds"])
            if secs:
                comp.setdefault(wl, {})[n] = statistics.median(secs)
    return {"rows": rows, "compile": comp, "dropped": dropped}


# compile-time rows: C1 (the W3 LSTM at T = 100), first steps of W1 and W2, and
# "cached" (C1 again in a new process, served from the system's on-disk cache;
# only for factories that name the variable of that cache as ``disk_cache_env``).
# Each runs in fresh processes with an empty cache.
COMPILE_WORKLOADS = ("C1", "W1", "W2", "cached")


def format_table(result):
    """The human-readable table of ``run``'s result."""
    rows = result["rows"]
    lines = []
    for wl in dict.fromkeys(r["workload"] for r in rows):
        rs = [r for r in rows if r["workload"] == wl]
        first = rs[0]
        lines.append(f"{wl} {reference.NAMES.get(wl, '')}")
        lines.append(f"  {'system':<12}{'ms median':>11}{'ms min':>10}{'peak MB':>10}"
                     f"{first['system'] + ' ÷':>14}")
        for r in rs:
            pk = f"{r['peak_mb']:.2f}" if r["peak_mb"] is not None else "-"
            ratio = first["ms_median"] / r["ms_median"] if r["ms_median"] > 0 else math.nan
            lines.append(f"  {r['system']:<12}{r['ms_median']:>11.3f}{r['ms_min']:>10.3f}"
                         f"{pk:>10}{ratio:>14.2f}")
    for wl, d in result.get("dropped", {}).items():
        for n, why in d.items():
            lines.append(f"  (dropped {wl} {n}: {why})")
    if result.get("compile"):
        lines.append("compile: seconds from import to first step, fresh process "
                     "(C1: W3 LSTM T=100; cached: C1 again from the on-disk cache)")
        for wl, d in result["compile"].items():
            for n, s in d.items():
                lines.append(f"  {wl:<8}{n:<12}{s:>11.3f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,C1",
                    help="comma-separated workloads (W1..W5, C1)")
    ap.add_argument("--systems", default=None, help="comma-separated system names (default all)")
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20; W3 10)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="tiny configurations (smoke test)")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--json", action="store_true", help='print only {"rows": [...], "compile": {...}}')
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--compile-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker or a.compile_worker:
        res = _worker(json.loads(a.worker)) if a.worker else _compile_worker(json.loads(a.compile_worker))
        sys.stdout.write(MARK + json.dumps(res) + "\n")
        sys.stdout.flush()
        return 0
    sel = [w.strip() for w in a.only.split(",") if w.strip()]
    bad = [w for w in sel if w not in ALL_WORKLOADS + ("C1",)]
    if bad:
        ap.error(f"unknown workloads {bad}")
    names = system_order(a.systems.split(",") if a.systems else SYSTEMS)
    missing = [n for n in names if n not in SYSTEMS]
    if missing:
        ap.error(f"unknown systems {missing}; registered: {list(SYSTEMS)}")
    res = run(systems=names, workloads=[w for w in sel if w != "C1"], processes=a.processes,
              steps=a.steps, warmup=a.warmup, seed=a.seed, small=a.small, floor=not a.no_floor,
              compile_systems=names if "C1" in sel else None)
    if a.json:
        print(json.dumps({"rows": res["rows"], "compile": res["compile"]}))
    else:
        print(format_table(res))
    return 0


if not os.environ.get(_WORKER_ENV):  # workers import factories by path only
    _register_builtins()

if __name__ == "__main__":
    # run through the canonical module so plug-ins' register() calls land in
    # the same SYSTEMS as the one main() reads
    from benchmarks import harness as _h
    sys.exit(_h.main())
