"""Demos behind `graphgrad demo NAME`: each trains a built-in model on scikit-learn's digits,
prints its test accuracy and writes generated source and drawings into an output folder."""
from __future__ import annotations

import pathlib
import sys

import numpy as np


def _digits(seed=0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    split = int(0.8 * len(X))
    return (X[:split], y[:split]), (X[split:], y[split:])


def mlp(out: pathlib.Path, epochs: int = 30) -> float:
    """Train the MLP on scikit-learn's digits; write its generated source and forward graph to ``out``."""
    import graphgrad as gg

    (X, y), (Xt, yt) = _digits()
    g, loss, logits = gg.models.mlp(features=X.shape[1], hidden=128)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=3e-3))
    predict = gg.compile(logits, training=False)
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=epochs, batch_size=64, val=accuracy)
    out.mkdir(parents=True, exist_ok=True)
    gg.compile(loss, wrt=g.params).save(out / "mlp_step.py")
    dot = gg.render(loss)
    (out / "mlp_forward.dot").write_text(dot.source)
    try:
        dot.render(out / "mlp_forward", format="svg", cleanup=True)
    except Exception as e:  # the dot binary is optional here
        print(f"(no SVG: {e})", file=sys.stderr)
    print(f"mlp on digits: final loss {history['loss'][-1]:.4f}, test accuracy {history['val'][-1]:.4f}")
    print(f"wrote {out / 'mlp_step.py'} and {out / 'mlp_forward.svg'}")
    return history["val"][-1]



def lstm(out: pathlib.Path, epochs: int = 12) -> float:
    """Train an LSTM on digits read as 8 rows of 8 pixels; write its generated step and BPTT drawing to ``out``."""
    import graphgrad as gg

    (X, y), (Xt, yt) = _digits()
    X, Xt = X.reshape(-1, 8, 8), Xt.reshape(-1, 8, 8)
    g, loss, logits = gg.models.lstm(steps=8, features=8, hidden=64)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2, clip_norm=5.0))
    predict = gg.compile(logits, training=False)
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=epochs, batch_size=64, val=accuracy)
    out.mkdir(parents=True, exist_ok=True)
    gg.compile(loss, wrt=g.params).save(out / "lstm_step.py")
    dot = gg.render(loss, backward=True, unroll=True, collapsed=True)
    (out / "lstm_bptt.dot").write_text(dot.source)
    try:
        dot.render(out / "lstm_bptt", format="svg", cleanup=True)
    except Exception as e:  # the dot binary is optional here
        print(f"(no SVG: {e})", file=sys.stderr)
    print(f"lstm on digits: final loss {history['loss'][-1]:.4f}, test accuracy {history['val'][-1]:.4f}")
    return history["val"][-1]


def cnn(out: pathlib.Path, epochs: int = 15) -> float:
    """Train the CNN on scikit-learn's digits as (N, 1, 8, 8) images; write its generated training step to ``out``."""
    import graphgrad as gg

    (X, y), (Xt, yt) = _digits()
    X, Xt = X.reshape(-1, 1, 8, 8), Xt.reshape(-1, 1, 8, 8)
    g, loss, logits = gg.models.cnn()
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=2e-3))
    predict = gg.compile(logits, training=False)  # dropout off
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=epochs, batch_size=32, val=accuracy)
    out.mkdir(parents=True, exist_ok=True)
    step.save(out / "cnn_step.py")
    print(f"cnn on digits: final loss {history['loss'][-1]:.4f}, test accuracy {history['val'][-1]:.4f}")
    print(f"wrote {out / 'cnn_step.py'}")
    return history["val"][-1]


DEMOS = {"mlp": mlp, "lstm": lstm, "cnn": cnn}
