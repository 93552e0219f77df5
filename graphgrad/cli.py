"""The ``graphgrad`` command: demo, render, compile, bench."""
from __future__ import annotations

import argparse
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


def demo_mlp(out: pathlib.Path, epochs: int = 30) -> float:
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


DEMOS = {"mlp": demo_mlp}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphgrad", description="See and compile backpropagation.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a built-in model on scikit-learn's digits")
    demo.add_argument("model", nargs="?", default="mlp", choices=sorted(DEMOS))
    demo.add_argument("-o", "--out", default="out", help="folder for the generated source and SVGs")
    args = parser.parse_args(argv)
    from .errors import GraphError

    try:
        if args.command == "demo":
            DEMOS[args.model](pathlib.Path(args.out))
    except (GraphError, FileNotFoundError, KeyError) as e:
        print(f"graphgrad: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
