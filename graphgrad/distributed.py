"""Execute, on a Dask cluster: data-parallel training with a compiled step.

``gg.fit(step, params, data, client=client)`` trains on the same mini-batches as a
single-process `fit`; each step is split by rows over the workers:

1. ``data`` is split into one contiguous shard per worker, once.  A shard is a task whose
   spec holds its rows, so when a worker dies Dask recomputes it on another one.
2. The gradient module (the step's loss compiled with ``wrt`` its params, generated NumPy
   source) is one task too: each worker fetches its source once and loads it once.
3. Per step the client sends the params and, to each worker, the indices of the batch's
   rows in its shard; the worker returns ``n_k / n`` times its shard's loss and gradients
   (the batch mean is the row-weighted mean of the shard means).
4. The shard results are summed pairwise (a tree, ⌈log₂ k⌉ levels for k workers), the
   client gathers the sum and applies the optimizer: the step's optimizer compiled on the
   objective Σ⟨p, g⟩, whose gradient in p is the fed g, sharing the step's optimizer state.

What differs from one process: dropout masks (each worker draws its own) and batch
statistics (per shard; running statistics are not updated).  Needs ``graphgrad[distributed]``.
"""
from __future__ import annotations

import copy
import hashlib
import threading

import numpy as np

from .errors import GraphError
from .ir import Graph
from .runtime import _MODULES, _load, check_feeds, compile

_THREAD = threading.local()  # each worker thread keeps its own workspace state per module


def _hold(value):
    """A value as the result of a task: Dask keeps its spec and can compute it again anywhere."""
    return value


def _loaded(program):
    key, source = program
    if key not in _MODULES:
        _MODULES[key] = _load(key, source)
    return _MODULES[key]


def shard_gradient(program, params, shard, rows, weight):
    """On a worker: ``weight`` times the loss and gradients of the shard's ``rows``."""
    module = _loaded(program)
    states = _THREAD.__dict__.setdefault("states", {})
    feeds = {k: v[rows] for k, v in shard.items()}
    value, grads = module.unpack(module.step(params, feeds, states.setdefault(program[0], module.new_state())))
    return weight * float(value), {k: weight * g for k, g in grads.items()}


def add(a, b):
    """The sum of two shard results (loss, gradients)."""
    return a[0] + b[0], {k: a[1][k] + b[1][k] for k in a[1]}


def tree_sum(client, parts):
    """The futures ``parts`` summed pairwise, level by level: ⌈log₂ len(parts)⌉ levels of `add`."""
    while len(parts) > 1:
        parts = [client.submit(add, *parts[i:i + 2], pure=False) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def optimizer_step(step):
    """The step's optimizer as a compiled function of the gradients: params ``p`` and inputs
    ``<p>.grad`` build the objective Σ⟨p, g⟩, whose gradient in ``p`` is ``g``; its state is the step's own."""
    graph = Graph(f"{step.graph.name}_update")
    objective = None
    for p in step.graph.params:
        term = (graph.param(p.node, p.shape, dtype=p.dtype) * graph.input(f"{p.node}.grad", p.shape, p.dtype)).sum()
        objective = term if objective is None else objective + term
    update = compile(objective, optimizer=copy.copy(step.optimizer), dtype=step.dtype)
    for name in update.state:  # same names: the moments carry on between local and distributed training
        if name in step.state and np.shape(step.state[name]) == np.shape(update.state[name]):
            update.state[name] = step.state[name]
    return update


class DataParallel:
    """``train_on(idx)``: one training step on the rows ``idx`` of ``data``, split over a Dask
    cluster's workers; updates ``params`` in place and returns the batch's mean loss."""

    def __init__(self, step, params, data, client, timeout=None):
        if step.optimizer is None or getattr(step.module, "TARGET", "numpy") != "numpy":
            raise GraphError("a data-parallel fit needs a NumPy training step: gg.compile(loss, optimizer=...)")
        self.client, self.params, self.timeout = client, params, timeout
        grads = compile(step.outputs[0], wrt=step.graph.params, training=step.training, dtype=step.dtype)
        check_feeds(grads.module.INPUTS, data, known={t.node for t in step.graph.inputs})
        self.update = optimizer_step(step)
        key = hashlib.sha256(grads.source.encode()).hexdigest()[:32]
        self.program = client.submit(_hold, (key, grads.source))
        workers = sorted(client.scheduler_info()["workers"])
        n = len(next(iter(data.values())))
        self.bounds = np.linspace(0, n, len(workers) + 1).astype(int)
        self.shards = [client.submit(_hold, {k: np.asarray(v)[lo:hi] for k, v in data.items()}, workers=[w],
                                     allow_other_workers=True, pure=False)
                       for w, lo, hi in zip(workers, self.bounds[:-1], self.bounds[1:])]

    def __call__(self, idx):
        idx = np.asarray(idx)
        params = self.client.submit(_hold, {k: np.asarray(v) for k, v in self.params.items()}, pure=False)
        parts = []
        for shard, lo, hi in zip(self.shards, self.bounds[:-1], self.bounds[1:]):
            rows = idx[(idx >= lo) & (idx < hi)] - lo
            if len(rows):
                parts.append(self.client.submit(shard_gradient, self.program, params, shard, rows,
                                                len(rows) / len(idx), pure=False))
        loss, grads = tree_sum(self.client, parts).result(timeout=self.timeout)
        self.update(self.params, **{f"{k}.grad": g for k, g in grads.items()})
        return loss
