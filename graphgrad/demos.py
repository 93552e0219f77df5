"""Demos behind `graphgrad demo NAME`: each trains a built-in model on scikit-learn's digits,
prints its test accuracy and writes its generated training step and a drawing into a folder."""
from __future__ import annotations

import pathlib
import sys

import numpy as np


def digits(shape=(64,), seed=0):
    """scikit-learn's bundled digits scaled to [0, 1], reshaped per example, split 80/20 after a shuffle."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X = (data.data / 16.0).astype(np.float32).reshape((-1, *shape))
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    split = int(0.8 * len(X))
    return (X[:split], y[:split]), (X[split:], y[split:])


def adding_problem(n: int, steps: int, rng):
    """The adding problem, a long-dependency test for recurrent nets: ``(n, steps, 2)`` sequences of
    uniform values and two markers, one in each half; the target is the sum of the two marked values."""
    x = np.zeros((n, steps, 2), np.float32)
    x[:, :, 0] = rng.uniform(0, 1, (n, steps))
    first, second = rng.integers(0, steps // 2, n), rng.integers(steps // 2, steps, n)
    x[np.arange(n), first, 1] = x[np.arange(n), second, 1] = 1
    return x, x[np.arange(n), first, 0] + x[np.arange(n), second, 0]


def _write_drawing(dot, path: pathlib.Path):
    path.with_suffix(".dot").write_text(dot.source)
    try:
        dot.render(path, format="svg", cleanup=True)
    except Exception as e:  # the dot binary is optional here
        print(f"(no SVG: {e})", file=sys.stderr)


def train_and_report(name, model, data, optimizer, epochs, batch_size, out: pathlib.Path, drawing) -> float:
    """Train ``model`` = (graph, loss, logits) with ``optimizer``; save its step and ``drawing(loss)``."""
    import graphgrad as gg

    (X, y), (Xt, yt) = data
    g, loss, logits = model
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=optimizer)
    predict = gg.compile(logits, training=False)  # dropout off, running statistics on
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=epochs, batch_size=batch_size, val=accuracy)
    out.mkdir(parents=True, exist_ok=True)
    step.save(out / f"{name}_step.py")
    _write_drawing(drawing(loss), out / f"{name}_graph")
    print(f"{name} on digits: final loss {history['loss'][-1]:.4f}, test accuracy {history['val'][-1]:.4f}")
    print(f"wrote {out / f'{name}_step.py'} and {out / f'{name}_graph.svg'}")
    return history["val"][-1]


def mlp(out: pathlib.Path, epochs: int = 30) -> float:
    """The MLP of the API reference's first example (docs/api.md), on digits; draws the forward graph."""
    import graphgrad as gg

    return train_and_report("mlp", gg.models.mlp(features=64, hidden=128), digits(), gg.optim.Adam(lr=3e-3),
                            epochs, 64, out, gg.render)


def cnn(out: pathlib.Path, epochs: int = 15) -> float:
    """The CNN on digits as (N, 1, 8, 8) images; draws the forward graph with layers collapsed."""
    import graphgrad as gg

    return train_and_report("cnn", gg.models.cnn(), digits((1, 8, 8)), gg.optim.Adam(lr=2e-3), epochs, 32, out,
                            lambda loss: gg.render(loss, collapse=True))


def lstm(out: pathlib.Path, epochs: int = 12) -> float:
    """An LSTM reading digits as 8 rows of 8 pixels; draws backprop through time."""
    import graphgrad as gg

    return train_and_report("lstm", gg.models.lstm(steps=8, features=8, hidden=64), digits((8, 8)),
                            gg.optim.Adam(lr=1e-2, clip_norm=5.0), epochs, 64, out,
                            lambda loss: gg.render(loss, backward=True, unroll=True, collapsed=True))


DEMOS = {"mlp": mlp, "cnn": cnn, "lstm": lstm}
