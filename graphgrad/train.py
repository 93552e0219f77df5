"""Execute: a plain training loop over a compiled step, and params saved atomically."""
from __future__ import annotations

import io
import os
import pathlib
import tempfile
import time

import numpy as np

from .errors import GraphError


def batch_indices(n: int, batch_size: int, rng=None):
    """Yield the row indices of each mini-batch of ``n`` examples, shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def batches(data: dict, batch_size: int, rng=None):
    """Yield dicts of aligned mini-batches, shuffled when ``rng`` is given."""
    for idx in batch_indices(len(next(iter(data.values()))), batch_size, rng):
        yield {k: v[idx] for k, v in data.items()}


def fit(step, params: dict, data: dict, epochs: int = 1, batch_size: int = 32, val=None, seed: int = 0,
        progress: bool = True, client=None) -> dict:
    """Train with a compiled step (``gg.compile(loss, optimizer=...)``) over ``data`` (name -> array).

    ``val`` is an optional ``callable(params) -> float`` (e.g. accuracy)
    evaluated after each epoch.  Returns the history: per-epoch mean loss,
    validation values and examples per second.  With a Dask ``client``
    (``dask.distributed.Client``) every mini-batch is split over the cluster's
    workers and their gradients summed (`graphgrad.distributed`): the same
    batches and the same steps, up to rounding.
    """
    rng = np.random.default_rng(seed)
    n = len(next(iter(data.values())))
    if client is not None:
        from .distributed import DataParallel  # needs the [distributed] extra

        train_on = DataParallel(step, params, data, client)
    else:
        def train_on(idx):
            return float(step(params, **{k: v[idx] for k, v in data.items()}))
    history = {"loss": [], "val": [], "examples_per_s": []}
    from tqdm.auto import tqdm  # here, not at import: it is 20 ms of every `import graphgrad`

    bar = tqdm(total=epochs * n, unit="ex", disable=not progress, leave=False)
    for epoch in range(epochs):
        losses, start = [], time.perf_counter()
        for idx in batch_indices(n, batch_size, rng):
            losses.append(train_on(idx))
            bar.update(len(idx))
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}", refresh=False)
        history["loss"].append(float(np.mean(losses)))
        history["examples_per_s"].append(n / (time.perf_counter() - start))
        if val is not None:
            history["val"].append(float(val(params)))
    bar.close()
    return history


def save_params(path, params: dict) -> None:
    """Save params as .npz, atomically: a reader sees the old file or the complete new one."""
    buffer = io.BytesIO()
    np.savez(buffer, **params)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:  # leave no partial temporary file behind
        os.unlink(tmp)
        raise


def load_params(path, graph=None) -> dict:
    """Load params saved by `save_params`; with ``graph``, check names and shapes against its params."""
    with np.load(path) as data:
        params = {k: data[k] for k in data.files}
    if graph is not None:
        expected = {t.node: t.shape for t in graph.params + graph.state}
        for name, shape in expected.items():
            if name not in params:
                raise GraphError(f"{path}: no array for param {name!r} of graph {graph.name!r}")
            if params[name].shape != shape:
                raise GraphError(f"{path}: param {name!r} has shape {params[name].shape}, graph {graph.name!r} "
                                 f"expects {shape}")
    return params
