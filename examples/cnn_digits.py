"""A CNN on scikit-learn's 8×8 digits: conv-conv-pool-dropout-dense, trained with Adam.

    python examples/cnn_digits.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).

Prints the test accuracy (about 99%) and writes the generated training step, cnn_step.py.
"""
import pathlib
import time


import graphgrad as gg



def main(out="out", quick=False):
    out = pathlib.Path(out)
    start = time.perf_counter()
    (X, y), (Xt, yt) = gg.demos.digits((1, 8, 8))
    if quick:
        X, y = X[:256], y[:256]
    g, loss, logits = gg.models.cnn()
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=2e-3))
    predict = gg.compile(logits, training=False)  # dropout off
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=1 if quick else 15, batch_size=32, val=accuracy,
                     progress=False)
    out.mkdir(parents=True, exist_ok=True)
    step.save(out / "cnn_step.py")
    n_params = sum(p.size for p in params.values())
    print(f"CNN ({n_params} params) on digits: final loss {history['loss'][-1]:.4f}, test accuracy "
          f"{history['val'][-1]:.4f} ({time.perf_counter() - start:.0f} s); wrote {out / 'cnn_step.py'}")
    return history["val"][-1]


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
