"""Vanishing gradients through time: an Elman RNN and an LSTM on the adding problem (T = 50).

Each input step is (value, marker); the target is the sum of the two marked values.  The RNN's
‖∂L/∂h_t‖ decays geometrically towards t = 0, so it cannot learn which early values matter; the
LSTM's cell path (∂c_t/∂c_{t−1} = f_t) carries the gradient back and it learns the task.
Prints and plots (vanishing_gradient_rnn.png) the gradient norm per step and the learning curves.

    python examples/vanishing_gradient_rnn.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).
"""
import pathlib

import numpy as np

import graphgrad as gg

T = 50



def model(layer_class, hidden):
    g = gg.Graph(f"adding_{layer_class.__name__.lower()}")
    x = g.input("x", (None, T, 2))
    y = g.input("y", (None,))
    layer = layer_class(hidden, name=layer_class.__name__.lower())
    pred = gg.nn.Dense(1, name="out")(layer(x)).reshape((None,))
    return g, gg.mse(pred, y), layer


def train(layer_class, steps, rng, hidden=32, batch=64):
    g, loss, layer = model(layer_class, hidden)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2, clip_norm=1.0))
    x_probe, y_probe = gg.demos.adding_problem(256, T, np.random.default_rng(123))
    norms_before = gg.nn.gradient_norms_over_time(loss, layer, params, {"x": x_probe, "y": y_probe})
    curve = []
    for _ in range(steps):
        x, y = gg.demos.adding_problem(batch, T, rng)
        curve.append(float(step(params, x=x, y=y)))
    test_mse = float(gg.compile(loss, training=False)(params, x=x_probe, y=y_probe))
    return norms_before, curve, test_mse


def main(quick=False, out="out"):
    steps = 60 if quick else 700
    rng = np.random.default_rng(0)
    results = {cls.__name__: train(cls, steps, rng) for cls in (gg.nn.RNN, gg.nn.LSTM)}
    for name, (norms, curve, test_mse) in results.items():
        print(f"{name}: ‖∂L/∂h_t‖ at t = 0, 25, 49: {norms[0]:.2e} {norms[25]:.2e} {norms[-1]:.2e}; "
              f"final train MSE {np.mean(curve[-20:]):.4f}, test MSE {test_mse:.4f} (predicting 1.0 gives ~0.167)")
    path = pathlib.Path(out) / "vanishing_gradient_rnn.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    _plot(results, path)
    print(f"wrote {path}")
    return {name: test for name, (_, _, test) in results.items()}


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (norms, curve, _) in results.items():
        left.semilogy(norms, label=name)
        right.plot(np.convolve(curve, np.ones(10) / 10, mode="valid"), label=name)
    left.set(title="‖∂L/∂h_t‖ at initialisation", xlabel="time step t", ylabel="gradient norm")
    right.axhline(1 / 6, color="grey", ls=":", label="always predict 1")
    right.set(title="adding problem, T = 50", xlabel="training step", ylabel="MSE (10-step mean)", ylim=(0, 0.5))
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
