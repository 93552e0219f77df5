"""TDNN, RNN, backpropagation through time (claims T1–T4)."""
from __future__ import annotations

import numpy as np

import graphgrad as gg

from . import drawing, numbers, plot, pyplot, shows


@shows
def tdnn_is_conv1d():
    """T1: a TDNN is a stride-1 Conv1D over time; its windows are independent."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 12, 3))
    g = gg.Graph("tdnn")
    x = g.input("x", (None, 12, 3), dtype="float64")
    tdnn = gg.nn.TDNN(4, context_size=3, activation=None, name="tdnn")
    y = tdnn(x)
    params = g.init_params(seed=0)
    out = gg.compile(y)(params, x=X)
    h = gg.Graph("conv1d")
    xc = h.input("x", (None, 3, 12), dtype="float64")
    conv = gg.compile(gg.nn.Conv1D(4, 3, name="tdnn")(xc))(params, x=X.transpose(0, 2, 1)).transpose(0, 2, 1)
    windows = np.stack([X[:, t:t + 3] for t in range(10)], axis=1)  # (N, 10 windows, 3 frames, 3 features)
    order = rng.permutation(10)
    one = gg.Graph("window")
    w = one.input("x", (None, 3, 3), dtype="float64")
    per_window = gg.compile(gg.nn.TDNN(4, context_size=3, activation=None, name="tdnn")(w))(
        params, x=windows[:, order].reshape(-1, 3, 3)).reshape(2, 10, 4)[:, np.argsort(order)]
    (dx,) = gg.compile(gg.grad(y[:, 9, :].sum(), [x]))(params, x=X)
    seen = np.nonzero(np.abs(dx[0]).sum(axis=1))[0]
    return numbers(["check (12 frames of 3 features, context 3)", "value"],
                   [["output frames (12 − 3 + 1)", out.shape[1]],
                    ["max |TDNN − Conv1D(4, 3) with the same W|", float(np.abs(out - conv).max())],
                    ["max |TDNN − the 10 windows one by one, in shuffled order|",
                     float(np.abs(out - per_window).max())],
                    ["input frames output frame 9 depends on (gradient ≠ 0)", ", ".join(map(str, seen))]],
                   "The TDNN layer slides one weight over windows of 3 frames: exactly a stride-1 Conv1D over "
                   "time. Each output needs only its own window, so windows can be computed in any order (or "
                   "shuffled in training); and nothing outside the window reaches it: a dependency longer than "
                   "the window is invisible.")


def rnn_loss(steps, hidden=4, features=3, lowering="unrolled"):
    g = gg.Graph("rnn")
    x = g.input("x", (None, steps, features))
    layer = gg.nn.RNN(hidden, lowering=lowering, name="rnn")
    return g, (layer(x) ** 2).mean(), layer


@shows
def rnn_weight_sharing():
    """T2: one cell, the same weights at every step: parameter count independent of the length."""
    rows = []
    for steps in (3, 30, 300):
        g, loss, _ = rnn_loss(steps, lowering="loop")
        rows.append([steps, sum(int(np.prod(p.shape)) for p in g.params)])
    return numbers(["sequence length T", "parameters of RNN(4) on 3 features"], rows,
                   "W_ih (4×3), W_hh (4×4), b_ih and b_hh (4 each) — 36 numbers whatever the length.")


@shows
def rnn_unrolled():
    """T2, T3: the unrolled RNN forward, and its backward pass through time."""
    g, loss, _ = rnn_loss(3)
    rng = np.random.default_rng(0)
    values = {**g.init_params(seed=0), "x": rng.normal(size=(4, 3, 3))}
    return [drawing(gg.render(loss, unroll=True), "gg.render(loss, unroll=True): one cluster per time step; "
                    "the weights appear once and feed every step."),
            drawing(gg.render(loss, backward=True, unroll=True, grads=values),
                    "With backward=True: the chain rule runs from the last step back to the first along the "
                    "hidden-state edges (BPTT), and the gradients of the shared weights add up over the steps.")]


@shows
def bptt_product():
    """T3: for a one-unit RNN, ∂L/∂h_t is the product of w_hh · tanh′ over the later steps."""
    T = 8
    g = gg.Graph("scalar_rnn")
    x = g.input("x", (None, T, 1), dtype="float64")
    layer = gg.nn.RNN(1, return_sequences=True, lowering="unrolled", name="rnn")
    hs = layer(x)
    loss = hs[:, T - 1, :].sum()
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=3).items()}
    params["rnn.W_hh"] = np.array([[0.9]])
    X = np.random.default_rng(0).normal(size=(1, T, 1))
    h = gg.compile(hs)(params, x=X)[0, :, 0]
    grads = gg.compile(gg.grad(loss, layer.hidden_states))(params, x=X)
    w = params["rnn.W_hh"][0, 0]
    product = [np.prod([w * (1 - h[k] ** 2) for k in range(t + 1, T)]) for t in range(T)]
    rows = [[t, float(grads[t].reshape(-1)[0]), float(product[t])] for t in range(T)]
    return numbers(["t", "∂L/∂h_t from gg.grad", "∏ₖ₌ₜ₊₁ᵀ⁻¹ w_hh·(1 − h_k²)"], rows,
                   "A one-unit RNN (w_hh = 0.9), loss = h₇. The gradient graphgrad's chain rule delivers to each "
                   "step equals the product of the later steps' local derivatives w_hh·tanh′, built from the "
                   "forward values h_k.")


@shows
def spectral_radius():
    """T4: ‖∂L/∂h_t‖ against t for W_hh of spectral radius below, at and above 1; clipping; truncation."""
    T, H = 30, 16
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(H, H)))
    X = 0.1 * rng.normal(size=(8, T, 4)).astype(np.float32)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    rows = []
    for radius in (0.7, 1.0, 1.3):
        for truncate in (None, 10) if radius == 1.0 else (None,):
            g = gg.Graph("rnn")
            x = g.input("x", (None, T, 4))
            layer = gg.nn.RNN(H, lowering="loop", truncate=truncate, name="rnn")
            loss = (layer(x) ** 2).sum()
            params = g.init_params(seed=0)
            params["rnn.W_hh"] = (radius * Q).astype(np.float32)
            norms = gg.nn.gradient_norms_over_time(loss, layer, params, {"x": X})
            label = f"ρ(W_hh) = {radius}" + (f", truncated to {truncate} steps" if truncate else "")
            ax.semilogy(np.arange(T), np.maximum(norms, 1e-30), marker=".", label=label)
            if radius == 1.3 and truncate is None:
                rows = clipping(loss, params, X)
    ax.set(xlabel="time step t", ylabel="‖∂L/∂h_t‖", ylim=(1e-8, None),
           title=f"RNN({H}), T = {T}, loss on the last hidden state")
    ax.legend(fontsize=8)
    return [plot(fig, "W_hh = ρ·Q with Q orthogonal, so ρ is its spectral radius. Below 1 the gradient shrinks "
                      "geometrically going back in time; above 1 the product grows (until tanh saturates). "
                      "truncate=10 cuts the chain every 10 steps: earlier steps get nothing from this loss."),
            numbers(["ρ = 1.3", "gradient norm"], rows,
                    "Clipping rescales all gradients together when their global norm exceeds clip_norm: the "
                    "step an optimizer takes, measured from the params it changed.")]


def clipping(loss, params, X):
    _, grads = gg.compile(loss, wrt=loss.graph.params)(params, x=X)
    total = float(np.sqrt(sum((v.astype(np.float64) ** 2).sum() for v in grads.values())))
    before = {k: v.copy() for k, v in params.items()}
    gg.compile(loss, optimizer=gg.optim.SGD(lr=1.0, clip_norm=1.0))(params, x=X)
    step = float(np.sqrt(sum(((params[k] - before[k]).astype(np.float64) ** 2).sum() for k in grads)))
    return [["global norm of ∂L/∂(all weights)", total], ["norm of one SGD step (lr 1) with clip_norm=1.0", step]]
