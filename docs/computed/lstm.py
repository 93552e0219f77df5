"""LSTM (claims L1–L4)."""
from __future__ import annotations

import numpy as np
import sympy

import graphgrad as gg

from . import drawing, formula, numbers, once, plot, pyplot, shows


def lstm_graph(steps, hidden, features=2, forget_bias=None):
    g = gg.Graph("lstm")
    x = g.input("x", (None, steps, features))
    layer = gg.nn.LSTM(hidden, lowering="unrolled", forget_bias=forget_bias, name="lstm")
    loss = (layer(x) ** 2).sum()
    return g, x, layer, loss


def step_nodes(g, t):
    """The gate, cell and hidden-state Tensors of step t of the unrolled LSTM named "lstm"."""
    gates = {k: g.tensor(f"lstm/t{t}/{k}") for k in "ifgo"}
    c = g.tensor(g.args(f"lstm/t{t}/tanh")[0])  # h_t = o_t ⊙ tanh(c_t)
    return gates, c


@shows
def lstm_cell_equations():
    """L2, L3, L4: SymPy differentiates the cell update; graphgrad's LSTM satisfies the equations."""
    i, f, g_, o, c_prev = sympy.symbols("i_t f_t g_t o_t c_{t-1}")
    c = f * c_prev + i * g_
    return [formula(f"c_t = {sympy.latex(c)},\\quad h_t = o_t \\odot \\tanh(c_t),\\quad "
                    f"\\frac{{\\partial c_t}}{{\\partial c_{{t-1}}}} = {sympy.latex(sympy.diff(c, c_prev))}",
                    "The cell update and its derivative along the cell path, by SymPy: the forget gate itself, "
                    "no weight matrix and no squashing derivative.")]


@shows
def lstm_states_check():
    """L2, L3: gates, cell state and hidden state of a computed LSTM, checked against the equations."""
    T, H = 6, 5
    g, x, layer, loss = lstm_graph(T, H)
    params = g.init_params(seed=0)
    X = np.random.default_rng(0).normal(size=(16, T, 2)).astype(np.float32)
    wanted = []
    for t in range(T):
        gates, c = step_nodes(g, t)
        wanted += [*gates.values(), c, layer.hidden_states[t]]
    values = gg.compile(wanted)(params, x=X)
    cell_error = hidden_error = 0.0
    c_prev = np.zeros((16, H), np.float32)
    ranges = {k: [np.inf, -np.inf] for k in "ifgo"}
    for t in range(T):
        i, f, g_t, o, c, h = values[6 * t:6 * t + 6]
        cell_error = max(cell_error, float(np.abs(f * c_prev + i * g_t - c).max()))
        hidden_error = max(hidden_error, float(np.abs(o * np.tanh(c) - h).max()))
        for k, v in zip("ifgo", (i, f, g_t, o)):
            ranges[k] = [min(ranges[k][0], v.min()), max(ranges[k][1], v.max())]
        c_prev = c
    names = {"i": "input gate i_t (how much of g_t to store)", "f": "forget gate f_t (how much of c_{t−1} to keep)",
             "g": "candidate g_t (tanh)", "o": "output gate o_t (how much of tanh(c_t) to expose)"}
    rows = [[names[k], f"[{lo:.3f}, {hi:.3f}]"] for k, (lo, hi) in ranges.items()]
    rows += [["max |f ⊙ c_{t−1} + i ⊙ g − c_t| (long-term state)", cell_error],
             ["max |o ⊙ tanh(c_t) − h_t| (short-term state)", hidden_error]]
    return numbers(["LSTM(5), 6 steps, 16 sequences", "value"], rows,
                   "The gate nodes of graphgrad's unrolled LSTM, computed and read back: the three gates are "
                   "sigmoids in (0, 1) — fractions to store, keep and expose — and the two states follow the "
                   "equations above to float32 precision.")


@shows
def lstm_drawing():
    """L2, L3: one LSTM step, drawn."""
    g, x, layer, loss = lstm_graph(2, 3)
    return drawing(gg.render(loss, unroll=True), "gg.render(loss, unroll=True) of a 2-step LSTM: per step the "
                   "gates i, f, g, o from one matmul, the cell update c = f ⊙ c + i ⊙ g and h = o ⊙ tanh(c).")


@once
def cell_gradients():
    T, H = 12, 8
    X = np.random.default_rng(0).normal(size=(16, T, 2)).astype(np.float32)
    curves = {}
    for bias in (0.0, 1.0, 3.0):
        g, x, layer, loss = lstm_graph(T, H, forget_bias=bias)
        cells = [step_nodes(g, t)[1] for t in range(T)]
        grads = gg.compile(gg.grad(loss, cells))(g.init_params(seed=0), x=X)
        curves[f"LSTM ‖∂L/∂c_t‖, forget bias {bias:g}"] = np.array([np.linalg.norm(v) for v in grads])
    g = gg.Graph("rnn")
    x = g.input("x", (None, T, 2))
    rnn = gg.nn.RNN(H, lowering="loop", name="rnn")
    loss = (rnn(x) ** 2).sum()
    curves["RNN ‖∂L/∂h_t‖"] = gg.nn.gradient_norms_over_time(loss, rnn, g.init_params(seed=0), {"x": X})
    return T, curves


@shows
def forget_bias_gradients():
    """L4, L1: ‖∂L/∂c_t‖ against t for forget bias 0, 1, 3, next to the RNN's ‖∂L/∂h_t‖."""
    T, curves = cell_gradients()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label, values in curves.items():
        ax.semilogy(np.arange(T), values, marker=".", ls="--" if label.startswith("RNN") else "-", label=label)
    ax.set(xlabel="time step t", ylabel="gradient norm", title=f"T = {T}, hidden 8, loss on the last step")
    ax.legend(fontsize=8)
    first = {k: v[0] / v[-1] for k, v in curves.items()}
    return plot(fig, "At initialization, the gradient flowing back along the cell path is multiplied by f_t at "
                     "each step. σ(0) = ½ halves it per step; a forget bias of 1 or 3 (σ = 0.73, 0.95) keeps it "
                     "for much longer. Ratio first/last step: " +
                     "; ".join(f"{k.split(',')[-1].strip() if 'LSTM' in k else 'RNN'} {v:.1e}" for k, v in first.items()))


T_ADD, ADD_STEPS = 20, 500



@shows
def adding_problem_curves():
    """L1, L4: the adding problem, learned by the LSTM and not by the RNN."""
    rng = np.random.default_rng(0)
    x_test, y_test = gg.demos.adding_problem(256, T_ADD, np.random.default_rng(1))
    curves, tests = {}, {}
    for cls in (gg.nn.RNN, gg.nn.LSTM):
        g = gg.Graph("adding")
        x, y = g.input("x", (None, T_ADD, 2)), g.input("y", (None,))
        pred = gg.nn.Dense(1, name="out")(cls(16, lowering="loop", name="rec")(x)).reshape((None,))
        loss = gg.mse(pred, y)
        params = g.init_params(seed=0)
        step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2, clip_norm=1.0))
        curves[cls.__name__] = [float(step(params, **dict(zip("xy", gg.demos.adding_problem(32, T_ADD, rng)))))
                                for _ in range(ADD_STEPS)]
        tests[cls.__name__] = float(gg.compile(loss, training=False)(params, x=x_test, y=y_test))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, curve in curves.items():
        ax.plot(np.convolve(curve, np.ones(10) / 10, mode="valid"), label=f"{name} (test MSE {tests[name]:.3f})")
    ax.axhline(1 / 6, color="grey", ls=":", label="always predicting 1 (MSE 1/6)")
    ax.set(xlabel="training step (batch 32, Adam)", ylabel="MSE, 10-step mean", ylim=(0, 0.4),
           title=f"Adding problem, T = {T_ADD}")
    ax.legend(fontsize=8)
    return plot(fig, "Each step is (value, marker); the target is the sum of the two marked values, one in each "
                     "half of the sequence. The RNN, whose gradient from the end fades before it reaches the "
                     "first marker, stays near the trivial answer; the LSTM learns the task.")
