"""graphgrad in the benchmark harness: W1..W5 built with the public API.

Each workload is declared with ``gg.nn`` layers under the parameter names and
PyTorch layouts of ``benchmarks.reference`` (so the harness's shared params
dict feeds it unchanged) and compiled once with
``gg.compile(loss, optimizer=gg.optim.SGD(lr=0.01))``.  ``step()`` is one call
of the generated training step (forward, backward and the in-place SGD
update); ``loss()`` is a forward-only compile of the same graph.

With ``GRAPHGRAD_BENCH_PIN_BLAS=1`` the BLAS pool is pinned to one thread
around graphgrad's calls (threadpoolctl, when installed): under heavy load
OpenBLAS's threads can cost more than they give for small GEMMs.  In the
harness's blocked timing (threads kept hot) pinning measured slower (W1 1.5 ms
pinned vs 1.25 ms not, 2 cores), so it is off by default.  The generated
module itself imports numpy only and never touches the thread pool.
"""
from __future__ import annotations

import os
import time

import graphgrad as gg

from .harness import register

LR = 0.01


class _OneBlasThread:
    """``with`` block running BLAS on one thread, restoring the pool's size after (no-op without threadpoolctl)."""

    def __init__(self):
        self.libs = []
        if os.environ.get("GRAPHGRAD_BENCH_PIN_BLAS", "0") != "1":  # opt-in: see the module docstring
            return
        try:
            from threadpoolctl import ThreadpoolController
            self.libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - optional dependency
            pass

    def __enter__(self):
        self.saved = [c.num_threads for c in self.libs]
        for c in self.libs:
            c.set_num_threads(1)

    def __exit__(self, *exc):
        for c, n in zip(self.libs, self.saved):
            c.set_num_threads(n)
        return False


def build_graph(workload, params, data):
    """``(graph, loss, feeds)`` of a workload, shapes read from the params and data as the reference does."""
    x = data["x"]
    g = gg.Graph(f"bench_{workload.lower()}")
    xin = g.input("x", (None,) + tuple(x.shape[1:]))
    feeds = {"x": x}
    if workload == "W1":
        k = 1
        h = xin
        while f"fc{k}.W" in params:
            last = f"fc{k + 1}.W" not in params
            h = gg.nn.Dense(params[f"fc{k}.W"].shape[1], activation=None if last else "relu", name=f"fc{k}")(h)
            k += 1
        y = g.input("y", (None,), dtype="int64")
        loss = gg.softmax_cross_entropy(h, y)
        feeds["y"] = data["y"]
    elif workload == "W2":
        c1, c2 = params["conv1.W"].shape[0], params["conv2.W"].shape[0]
        h = gg.nn.Conv2D(c1, 3, padding=1, activation="relu", name="conv1")(xin)
        h = gg.nn.MaxPool2D(2)(h)
        h = gg.nn.Conv2D(c2, 3, padding=1, activation="relu", name="conv2")(h)
        h = gg.nn.Flatten()(gg.nn.MaxPool2D(2)(h))
        logits = gg.nn.Dense(params["fc.W"].shape[1], name="fc")(h)
        y = g.input("y", (None,), dtype="int64")
        loss = gg.softmax_cross_entropy(logits, y)
        feeds["y"] = data["y"]
    elif workload == "W3":
        hidden = params["lstm.W_hh"].shape[1]
        h = gg.nn.LSTM(hidden, name="lstm")(xin)
        logits = gg.nn.Dense(params["fc.W"].shape[1], name="fc")(h)
        y = g.input("y", (None,), dtype="int64")
        loss = gg.softmax_cross_entropy(logits, y)
        feeds["y"] = data["y"]
    elif workload == "W4":
        cm, c = params["conv1.W"].shape[0], params["conv3.W"].shape[0]
        h = gg.nn.Conv2D(cm, 1, bias=False, name="conv1")(xin)
        h = gg.relu(gg.nn.BatchNorm(name="bn1")(h))
        h = gg.nn.Conv2D(cm, 3, padding=1, bias=False, name="conv2")(h)
        h = gg.relu(gg.nn.BatchNorm(name="bn2")(h))
        h = gg.nn.Conv2D(c, 1, bias=False, name="conv3")(h)
        out = gg.relu(gg.nn.BatchNorm(name="bn3")(h) + xin)
        loss = (out * out).mean()
    elif workload == "W5":
        c1, c2, c3 = (params[f"enc{k}.W"].shape[0] for k in (1, 2, 3))
        e1 = gg.nn.Conv2D(c1, 3, padding=1, activation="relu", name="enc1")(xin)
        e2 = gg.nn.Conv2D(c2, 3, padding=1, activation="relu", name="enc2")(gg.nn.MaxPool2D(2)(e1))
        e3 = gg.nn.Conv2D(c3, 3, padding=1, activation="relu", name="enc3")(gg.nn.MaxPool2D(2)(e2))
        u2 = gg.nn.ConvTranspose2D(c2, 2, stride=2, name="up2")(e3)
        d2 = gg.nn.Conv2D(c2, 3, padding=1, activation="relu", name="dec2")(gg.concat([e2, u2], axis=1))
        u1 = gg.nn.ConvTranspose2D(c1, 2, stride=2, name="up1")(d2)
        d1 = gg.nn.Conv2D(c1, 3, padding=1, activation="relu", name="dec1")(gg.concat([e1, u1], axis=1))
        logits = gg.nn.Conv2D(1, 1, name="out")(d1)
        mask = g.input("mask", (None,) + tuple(data["y"].shape[1:]))
        loss = gg.binary_cross_entropy(logits, mask)
        feeds["mask"] = data["y"]
    else:
        raise NotImplementedError(f"graphgrad_system: unknown workload {workload!r}")
    return g, loss, feeds


def _add_missing_state(graph, params):
    """BatchNorm running statistics are params in graphgrad; the harness's dict lacks them."""
    fresh = None
    for name in [n for n, d in graph.nx.nodes(data=True) if d["op"] == "param"]:
        if name not in params:
            fresh = fresh or graph.init_params(seed=0)
            params[name] = fresh[name]


class GraphgradSystem:
    """One workload compiled by graphgrad: ``step()`` trains, ``loss()`` evaluates."""

    def __init__(self, params, data):
        workload = data["workload"]
        self.params = params
        graph, loss, self.feeds = build_graph(workload, params, data)
        _add_missing_state(graph, params)
        t0 = time.perf_counter()
        self.train = gg.compile(loss, optimizer=gg.optim.SGD(lr=LR))
        self.compile_seconds = time.perf_counter() - t0  # the harness's "cached" row reads it
        self._loss = loss
        self.one_thread = _OneBlasThread()

    def step(self) -> float:
        with self.one_thread:
            return float(self.train(self.params, **self.feeds))

    def loss(self) -> float:
        # the forward value of the training-mode graph (BatchNorm on batch statistics); the harness asks
        # once, so the compiled forward (and its workspace) is not kept beside the step's
        evaluate = gg.compile(self._loss, training=True)
        with self.one_thread:
            return float(evaluate(self.params, **self.feeds))


def graphgrad_factory(params, data):
    """The harness factory: ``graphgrad_factory(params, data) -> GraphgradSystem``."""
    return GraphgradSystem(params, data)


graphgrad_factory.disk_cache_env = "GRAPHGRAD_CACHE"  # the harness times a cached second compile
register("graphgrad", graphgrad_factory)
