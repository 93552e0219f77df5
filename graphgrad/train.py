"""Execute: a plain training loop over a compiled step, and params saved atomically."""
from __future__ import annotations

import io
import time
import warnings
import zipfile

import numpy as np

from .errors import GraphError
from .runtime import write_atomic
from . import validate


def batch_indices(n: int, batch_size: int, rng=None, merge_single: bool = False):
    """Yield the row indices of each mini-batch of ``n`` examples, shuffled when ``rng`` is given; with
    ``merge_single`` a last batch of one example joins the batch before it."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    starts = list(range(0, n, batch_size))
    if merge_single and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    for start, stop in zip(starts, starts[1:] + [n]):
        yield order[start:stop]


def batches(data: dict, batch_size: int, rng=None, merge_single: bool = False):
    """Yield dicts of aligned mini-batches, shuffled when ``rng`` is given."""
    for idx in batch_indices(len(next(iter(data.values()))), batch_size, rng, merge_single):
        yield {k: v[idx] for k, v in data.items()}


def fit(step, params: dict, data: dict, epochs: int = 1, batch_size: int = 32, val=None, seed: int = 0,
        progress: bool = True, client=None) -> dict:
    """Train with a compiled step (``gg.compile(loss, optimizer=...)``) over ``data`` (name -> array).

    ``val`` is an optional ``callable(params) -> float`` (e.g. accuracy)
    evaluated after each epoch.  Returns the history: per-epoch mean loss,
    validation values and examples per second.  A graph with BatchNorm cannot
    train on a batch of one, so a last batch of one example is merged into the
    batch before it (with a warning).  With a Dask ``client``
    (``dask.distributed.Client``) every mini-batch is split over the cluster's
    workers and their gradients summed (`graphgrad.distributed`): the same
    batches and the same steps, up to rounding.
    """
    from .nn.regularization import has_batch_norm

    rng = np.random.default_rng(seed)
    n = len(next(iter(data.values())))
    merge_single = n > 1 and n % batch_size == 1 and has_batch_norm(step.graph)
    if merge_single:
        warnings.warn(f"gg.fit: {n} examples in batches of {batch_size} leave a last batch of 1 example, which "
                      "BatchNorm cannot normalize in training; it is merged into the batch before it", stacklevel=2)
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
        for idx in batch_indices(n, batch_size, rng, merge_single):
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
    arrays = {name: validate.as_array(value, f"param {name!r}") for name, value in params.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_params(path, graph=None) -> dict:
    """Load params saved by `save_params`; with ``graph``, check names and shapes against its params.

    A missing, unreadable, truncated or foreign file raises `GraphError` naming the file and what is wrong.
    """
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise GraphError(f"{path}: holds a single array of shape {np.shape(data)}, not a params archive; "
                             "save_params writes an .npz of name -> array")
        with data:
            params = {k: data[k] for k in data.files}
    except GraphError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise GraphError(f"{path}: cannot read params ({_file_problem(e)})") from None
    for name, value in params.items():
        if value.dtype.kind not in "fiub":
            raise GraphError(f"{path}: array {name!r} holds {value.dtype} values, not numbers")
    if graph is not None:
        expected = {t.node: t.shape for t in graph.params + graph.state}
        for name, shape in expected.items():
            if name not in params:
                raise GraphError(f"{path}: no array for param {name!r} of graph {graph.name!r}")
            if params[name].shape != shape:
                raise GraphError(f"{path}: param {name!r} has shape {params[name].shape}, graph {graph.name!r} "
                                 f"expects {shape}")
    return params


def _file_problem(error) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, (EOFError, zipfile.BadZipFile)):
        return f"not a complete .npz archive: truncated or not written by save_params ({error})"
    return f"{type(error).__name__}: {str(error).split(chr(10))[0]}"
