"""An LSTM reads scikit-learn's 8×8 digits as sequences of 8 rows of 8 pixels (X = data / 16)
and classifies them from its last hidden state.  Reaches ≥ 95 % test accuracy.

    python examples/lstm_digits.py [--quick]
"""
import graphgrad as gg


def main(quick=False):
    (X, y), (Xt, yt) = gg.demos.digits((8, 8))  # (N, time = rows, features = pixels)
    g, loss, logits = gg.models.lstm(steps=8, features=8, hidden=64)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2, clip_norm=5.0))
    predict = gg.compile(logits, training=False)
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=2 if quick else 12, batch_size=64, val=accuracy,
                     progress=False)
    print(f"LSTM on digits (8 rows × 8 pixels): final loss {history['loss'][-1]:.4f}, "
          f"test accuracy {history['val'][-1]:.4f}")
    return history["val"][-1]


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
