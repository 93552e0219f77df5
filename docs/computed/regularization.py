"""Dropout, batch normalization, L1/L2 (claims R1–R4)."""
from __future__ import annotations

import numpy as np
import sympy

import graphgrad as gg

from . import digits, formula, numbers, once, plot, pyplot, shows

TRAIN_SIZE, NOISE = 200, 0.3


def classifier(penalty=None, rate=None, lam=1e-3):
    """A wide MLP for few digits; optionally an L2 penalty on its weights or dropout after the hidden layer."""
    g = gg.Graph("small_data")
    x, y = g.input("x", (None, 64)), g.input("y", (None,), dtype="int64")
    h = gg.nn.Dense(256, activation="relu", name="fc1")(x)
    if rate:
        h = gg.nn.Dropout(rate, seed=0, name="drop")(h)
    logits = gg.nn.Dense(10, name="fc2")(h)
    loss = gg.softmax_cross_entropy(logits, y)
    weights = [g["fc1.W"], g["fc2.W"]]
    objective = loss + lam * gg.l2(weights) if penalty == "l2" else loss
    return g, objective, loss, logits, x


@once
def small_data_runs():
    """Train on few digits, 30 % of them mislabelled, for long; measure the gap, weights and sensitivity."""
    (X, y), (Xt, yt) = digits()
    rng = np.random.default_rng(0)
    X, y = X[:TRAIN_SIZE], y[:TRAIN_SIZE].copy()
    wrong = rng.random(TRAIN_SIZE) < NOISE
    y[wrong] = rng.integers(0, 10, wrong.sum())
    rows = []
    for label, kwargs in (("no regularization", {}), ("L2, λ = 0.01", {"penalty": "l2", "lam": 1e-2}),
                          ("dropout p = 0.5", {"rate": 0.5})):
        g, objective, loss, logits, x = classifier(**kwargs)
        params = g.init_params(seed=0)
        gg.fit(gg.compile(objective, optimizer=gg.optim.Momentum(lr=0.05, momentum=0.9)), params,
               {"x": X, "y": y}, epochs=60, batch_size=20, progress=False)
        predict = gg.compile(logits, training=False)
        (sensitivity,) = gg.compile(gg.grad(loss, [x]), training=False)(params, x=Xt, y=yt)
        accuracy = lambda A, b: float((predict(params, x=A).argmax(1) == b).mean())  # noqa: E731
        train, test = accuracy(X, y), accuracy(Xt, yt)
        weight_norm = float(np.sqrt(sum((params[w] ** 2).sum() for w in ("fc1.W", "fc2.W"))))
        rows.append([label, train, test, train - test, weight_norm,
                     float(np.linalg.norm(sensitivity, axis=1).mean() * len(Xt))])
    return rows


@shows
def regularization_gap():
    """R1, R3: train/test gap, weight norm and input sensitivity with and without regularization."""
    return numbers(["training", "train accuracy", "test accuracy", "gap", "‖W‖ (both layers)",
                    "mean ‖∂loss/∂x‖ per test image"], small_data_runs(),
                   f"A 64–256–10 ReLU MLP trained for 60 epochs (momentum SGD) on only {TRAIN_SIZE} digits, "
                   f"{NOISE:.0%} of them with a random label, and tested on the 360 held-out digits. Unregularized, "
                   "it memorizes the wrong labels with large weights and a steep response to its input (the "
                   "gradient of the loss with respect to the pixels, by gg.grad); both regularizers fit the "
                   "training set less well and the test set better.")


@shows
def penalty_gradients():
    """R2: gg.grad of λ·l1 and λ·l2 against λ·sign(w) and 2λw, and SymPy's derivatives of |w| and w²."""
    w_sym = sympy.Symbol("w", real=True)
    lam = 0.1
    g = gg.Graph("penalties")
    w = g.param("w", (5,))
    values = np.array([-2.0, -0.5, 0.25, 1.0, 3.0])
    (gl1,) = gg.compile(gg.grad(lam * gg.l1(w), [w]), dtype="float64")({"w": values})
    (gl2,) = gg.compile(gg.grad(lam * gg.l2(w), [w]), dtype="float64")({"w": values})
    return [
        formula(f"\\frac{{d}}{{dw}}|w| = {sympy.latex(sympy.diff(sympy.Abs(w_sym), w_sym))},\\quad "
                f"\\frac{{d}}{{dw}}w^2 = {sympy.latex(sympy.diff(w_sym ** 2, w_sym))}",
                "SymPy's derivatives of the two penalties' terms: L1 pushes every weight towards 0 with the same "
                "force λ; L2's push 2λw fades as w shrinks."),
        numbers(["w", *values], [["gg.grad(λ·l1(w)) ", *gl1], ["λ·sign(w)", *(lam * np.sign(values))],
                                 ["gg.grad(λ·l2(w))", *gl2], ["2λw", *(2 * lam * values)]],
                f"The gradients graphgrad derives for λ = {lam}, next to the textbook formulas."),
    ]


@shows
def sparsity():
    """R2: L1 drives irrelevant weights to zero (exactly, with its proximal step); L2 only shrinks them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    true = np.zeros(20)
    true[:3] = (3.0, -2.0, 1.5)
    target = X @ true + 0.5 * rng.normal(size=200)
    lam = 0.1
    runs = {"l1": ("l1", {}), "l2": ("l2", {}), "proximal": (None, {"l1": lam})}
    fitted = {}
    for run, (penalty, proximal) in runs.items():
        g = gg.Graph(f"lasso_{run}")
        x, t = g.input("x", (None, 20), dtype="float64"), g.input("t", (None,), dtype="float64")
        w = g.param("w", (20, 1), init="zeros", dtype="float64")
        loss = gg.mse((x @ w).reshape((None,)), t)
        if penalty:
            loss = loss + lam * getattr(gg, penalty)(w)
        params = g.init_params()
        step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.01, **proximal))
        for _ in range(2000):
            step(params, x=X, t=target)
        fitted[run] = params["w"][:, 0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    index = np.arange(20)
    ax.bar(index - 0.3, true, 0.2, label="true weights", color="lightgrey")
    ax.bar(index - 0.1, fitted["l1"], 0.2, label="L1 subgradient (gg.l1)")
    ax.bar(index + 0.1, fitted["proximal"], 0.2, label="L1 proximal (SGD(l1=λ))")
    ax.bar(index + 0.3, fitted["l2"], 0.2, label="L2 (gg.l2)")
    ax.set(xlabel="feature", ylabel="weight", xticks=index)
    ax.legend(fontsize=8)
    small = {run: int((np.abs(v[3:]) < 1e-2).sum()) for run, v in fitted.items()}
    exact = {run: int((v[3:] == 0).sum()) for run, v in fitted.items()}
    return plot(fig, f"Linear regression on 20 features of which 3 matter, 2000 full-batch steps, λ = {lam}. "
                     f"Of the 17 irrelevant weights, the L1 subgradient λ·sign(w) leaves {small['l1']} within 0.01 "
                     f"of zero ({exact['l1']} exactly zero: each step overshoots by up to lr·λ = 0.001); "
                     f"its proximal step `gg.optim.SGD(lr, l1=λ)` (soft-thresholding by lr·λ after the gradient "
                     f"step) sets {exact['proximal']} to exactly 0; L2 leaves {small['l2']} within 0.01 and "
                     f"{exact['l2']} at 0: it shrinks every weight in proportion.")


@shows
def dropout_modes():
    """R3: inverted dropout in training, identity in evaluation."""
    g = gg.Graph("dropout")
    x = g.input("x", (None, 1000))
    y = gg.nn.Dropout(0.5, seed=0, name="drop")(x)
    ones = np.ones((100, 1000), np.float32)
    train = gg.compile(y, training=True)({}, x=ones)
    evaluate = gg.compile(y, training=False)({}, x=ones)
    return numbers(["mode", "fraction set to 0", "values kept", "mean (input mean 1)"],
                   [["training=True", float((train == 0).mean()), ", ".join(f"{v:g}" for v in np.unique(train[train > 0])),
                     float(train.mean())],
                    ["training=False", float((evaluate == 0).mean()), ", ".join(f"{v:g}" for v in np.unique(evaluate)),
                     float(evaluate.mean())]],
                   "Dropout(0.5) on 100 000 ones: in training half are zeroed and the survivors scaled by "
                   "1/(1 − p) = 2, so the expected value is unchanged and evaluation needs no rescaling.")


@shows
def batchnorm_modes():
    """R4: batch statistics in training, running statistics in evaluation."""
    rng = np.random.default_rng(0)
    g = gg.Graph("bn")
    x = g.input("x", (None, 4))
    y = gg.nn.BatchNorm(name="bn")(x)
    params = g.init_params()
    train, evaluate = gg.compile(y, training=True), gg.compile(y, training=False)
    batch = lambda: (5.0 + 3.0 * rng.normal(size=(64, 4))).astype(np.float32)  # noqa: E731
    probe = batch()
    rows = [["training=False, before any training call", *_stats(evaluate(params, x=probe))],
            ["training=True (batch statistics)", *_stats(train(params, x=probe))]]
    for _ in range(49):
        train(params, x=batch())
    rows.append(["training=False, after 50 training calls", *_stats(evaluate(params, x=probe))])
    rows.append(["running_mean, running_var after 50 calls", float(params["bn.running_mean"].mean()),
                 float(params["bn.running_var"].mean())])
    return numbers(["BatchNorm on inputs of mean 5, std 3", "mean of output", "variance of output"], rows,
                   "In training BatchNorm standardises with the batch's own mean and variance and updates its "
                   "running statistics (momentum 0.1); in evaluation it uses the running ones, so a prediction "
                   "does not depend on the rest of the batch. Before training they are 0 and 1: evaluation then "
                   "passes the input through almost unchanged.")


def _stats(values):
    return float(values.mean()), float(values.var())


@shows
def batchnorm_depth():
    """R4: activation scale through 12 ReLU layers with and without BatchNorm."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 32)).astype(np.float32)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for label, norm, scale in (("plain, Glorot init", False, 1.0), ("plain, weights × 2", False, 2.0),
                               ("with BatchNorm, weights × 2", True, 2.0)):
        g = gg.Graph("deep_bn")
        h = g.input("x", (None, 32))
        outputs = []
        for i in range(12):
            h = gg.nn.Dense(32, name=f"fc{i}")(h)
            if norm:
                h = gg.nn.BatchNorm(name=f"bn{i}")(h)
            h = gg.relu(h)
            outputs.append(h)
        params = g.init_params(seed=0)
        for name in params:
            if name.endswith(".W"):
                params[name] = params[name] * scale
        values = gg.compile(outputs, training=True)(params, x=X)
        ax.semilogy(range(1, 13), [v.std() for v in values], marker="o", label=label)
    ax.set(xlabel="layer", ylabel="std of activations", title="12 Dense + ReLU layers, one batch of 256")
    ax.legend()
    return plot(fig, "Without normalization the scale of the activations shrinks or grows geometrically with "
                     "depth, depending on the weights' scale; BatchNorm resets it at every layer.")
