"""Six optimizers on one problem: an MLP on scikit-learn's digits, same initialization, same batches.

Each optimizer is compiled into the training step (`gg.compile(loss, optimizer=...)`);
the per-step loss of each is plotted into optimizers.png.

    python examples/optimizers.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).
"""
import pathlib

import numpy as np

import graphgrad as gg
from graphgrad.train import batches


OPTIMIZERS = {
    "SGD": lambda: gg.optim.SGD(lr=0.1),
    "Momentum": lambda: gg.optim.Momentum(lr=0.05, momentum=0.9),
    "Nesterov": lambda: gg.optim.Nesterov(lr=0.05, momentum=0.9),
    "AdaGrad": lambda: gg.optim.AdaGrad(lr=0.05),
    "RMSProp": lambda: gg.optim.RMSProp(lr=1e-3),
    "Adam": lambda: gg.optim.Adam(lr=3e-3),
}


def train(make_optimizer, X, y, epochs):
    g, loss, _ = gg.models.mlp(features=64, hidden=64)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=make_optimizer())
    rng = np.random.default_rng(0)  # the same batches for every optimizer
    return [float(step(params, **batch)) for _ in range(epochs) for batch in batches({"x": X, "y": y}, 64, rng)]


def smooth(values, k=10):
    return np.convolve(values, np.ones(k) / k, mode="valid")


def plot(path, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, losses in curves.items():
        ax.semilogy(smooth(losses), label=name)
    ax.set_xlabel("step (batch of 64)")
    ax.set_ylabel("training loss (moving average of 10)")
    ax.set_title("Optimizers on an MLP, digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(out="out", quick=False):
    out = pathlib.Path(out)
    (X, y), _ = gg.demos.digits()  # the training split
    epochs = 1 if quick else 8
    curves = {name: train(make, X, y, epochs) for name, make in OPTIMIZERS.items()}
    for name, losses in curves.items():
        print(f"{name:>9}: loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.4f} after {len(losses)} steps")
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "optimizers.png", curves)
    print(f"wrote {out / 'optimizers.png'}")
    return {name: float(np.mean(losses[-10:])) for name, losses in curves.items()}


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
