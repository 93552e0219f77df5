"""Backpropagation and the vanishing gradient (claims B1–B5)."""
from __future__ import annotations

import time

import numpy as np
import sympy

import graphgrad as gg

from . import digits, drawing, formula, generated_step, numbers, once, plot, pyplot, shows, text

DEPTH = 10


def neuron():
    g = gg.Graph("neuron")
    x = g.input("x", (None, 3))
    return g, gg.sigmoid(x @ g.param("w", (3, 1))).sum()


def deep_mlp(activation, width=32):
    """DEPTH Dense layers on digits; ReLU layers start from He initialization, as they are meant to."""
    g = gg.Graph(f"deep_{activation}")
    h = g.input("x", (None, 64))
    y = g.input("y", (None,), dtype="int64")
    for i in range(DEPTH - 1):
        h = gg.nn.Dense(width, activation=activation, name=f"layer{i + 1}")(h)
    logits = gg.nn.Dense(10, name=f"layer{DEPTH}")(h)
    if activation == "relu":
        for p in g.params:
            if p.node.endswith(".W"):
                p.attrs["init"] = "he_uniform"
    return g, gg.softmax_cross_entropy(logits, y), logits


@shows
def cost_of_gradients():
    """B1: one backward pass against central finite differences, on the same MLP and batch."""
    g, loss, _ = gg.models.mlp(features=64, hidden=16)
    (X, y), _ = digits()
    feeds = {"x": X[:64].astype(np.float64), "y": y[:64]}
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=0).items()}
    forward = gg.compile(loss, dtype="float64")
    both = gg.compile(loss, wrt=g.params, dtype="float64")
    start = time.perf_counter()
    _, grads = both(params, **feeds)
    backprop_time = time.perf_counter() - start
    start, worst, count = time.perf_counter(), 0.0, 0
    eps = 1e-6
    for name, value in params.items():
        flat = value.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            up = forward(params, **feeds)
            flat[i] = keep - eps
            down = forward(params, **feeds)
            flat[i] = keep
            count += 2
            worst = max(worst, abs((up - down) / (2 * eps) - grads[name].reshape(-1)[i]))
    fd_time = time.perf_counter() - start
    n = sum(v.size for v in params.values())
    return numbers(
        ["method", "forward evaluations", "backward passes", "time (s)", "max |difference|"],
        [["backpropagation (gg.compile(loss, wrt=...))", 1, 1, backprop_time, "(reference)"],
         ["central finite differences", count, 0, fd_time, worst]],
        f"All {n:,} gradients of a digits MLP (64–16–10) on a batch of 64, float64. Finite differences "
        f"need 2 forward passes per parameter ({count:,}); backpropagation needs one forward and one backward "
        f"pass, {fd_time / backprop_time:,.0f}× faster here, and agrees to {worst:.1e}.")


@shows
def neuron_chain_rule():
    """B2: the chain rule written out, the backward graph, and the generated code reusing forward values."""
    g, loss = neuron()
    return [
        text(gg.explain(loss, g["w"]), "gg.explain(loss, w) for the neuron σ(x·w) summed: one path, a product "
             "of local derivatives."),
        drawing(gg.render(loss, backward=True), "gg.render(loss, backward=True): red nodes are the chain rule; "
                "each backward edge is labelled by its local derivative."),
        text(generated_step(gg.compile(loss, wrt=[g["w"]]).source),
             "The generated NumPy code of forward + backward: the derivative line reads the forward value "
             "`sigmoid` (σ′ = σ(1 − σ)) and x; no calculus happens when it runs."),
    ]


@once
def deep_gradients():
    """Per-layer ‖∂L/∂W‖ at initialization and training accuracy after 3 epochs, sigmoid against ReLU."""
    (X, y), _ = digits()
    norms, accuracy = {}, {}
    for activation in ("sigmoid", "relu"):
        g, loss, logits = deep_mlp(activation)
        params = g.init_params(seed=0)
        weights = [p for p in g.params if p.node.endswith(".W")]
        _, grads = gg.compile(loss, wrt=weights)(params, x=X[:256], y=y[:256])
        norms[activation] = np.array([np.linalg.norm(grads[w.node]) for w in weights])
        step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.05))
        gg.fit(step, params, {"x": X, "y": y}, epochs=3, batch_size=32, progress=False)
        accuracy[activation] = float((gg.compile(logits, training=False)(params, x=X).argmax(1) == y).mean())
    return norms, accuracy


@shows
def gradient_per_layer():
    """B3, B5: the plot of ‖∂L/∂W_l‖ per layer."""
    norms, _ = deep_gradients()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    layers = np.arange(1, DEPTH + 1)
    for activation, values in norms.items():
        ax.semilogy(layers, values, marker="o", label=activation)
    top = norms["sigmoid"][-2]
    ax.semilogy(layers[:-1], top * 4.0 ** (layers[:-1] - (DEPTH - 1)), ":", color="grey",
                label="× ¼ per layer (σ′ ≤ ¼)")
    ax.set(xlabel="layer (1 = next to the input)", ylabel="‖∂L/∂W‖ at initialization",
           title=f"{DEPTH}-layer MLP on digits, one batch of 256")
    ax.legend()
    ratio = {a: v[0] / v[-1] for a, v in norms.items()}
    return plot(fig, f"Gradient norm of every layer's weights. With sigmoid the first layer receives "
                     f"{ratio['sigmoid']:.1e} of the last layer's gradient; with ReLU {ratio['relu']:.2f}.")


@shows
def sigmoid_bound():
    """B4: SymPy finds the maximum of σ′, and the bound of a product over n layers."""
    x = sympy.Symbol("x")
    sigma = 1 / (1 + sympy.exp(-x))
    d = sympy.simplify(sympy.diff(sigma, x))
    critical = sympy.solve(sympy.diff(d, x), x)
    peak = sympy.nsimplify(d.subs(x, critical[0]))
    n = sympy.Symbol("n", positive=True, integer=True)
    return [
        formula(f"\\sigma'(x) = {sympy.latex(gg.derivative(gg.sigmoid))},\\quad "
                f"\\frac{{d\\sigma'}}{{dx}} = 0 \\Rightarrow x = {sympy.latex(critical[0])},\\quad "
                f"\\max_x\\ \\sigma'(x) = {sympy.latex(peak)}",
                "gg.derivative(gg.sigmoid) is σ′ in terms of σ; SymPy solves dσ′/dx = 0 for its maximum."),
        formula(f"\\prod_{{l=1}}^{{n}} \\sigma'(a_l) \\leq {sympy.latex(peak ** n)}",
                "So the sigmoid factors of a path through n layers multiply to at most 4⁻ⁿ."),
        numbers(["layers n", *range(1, DEPTH + 1)], [["4⁻ⁿ", *[float(peak ** k) for k in range(1, DEPTH + 1)]]],
                "The bound for the 10 layers of the plot above."),
    ]


@shows
def explain_deep_sigmoid():
    """B4: gg.explain counts the bounded factors on the path through five sigmoid layers."""
    g = gg.Graph("deep_sigmoid")
    h = g.input("x", (None, 4))
    for i in range(5):
        h = gg.nn.Dense(4, activation="sigmoid", name=f"l{i}")(h)
    return text(gg.explain(h.sum(), g["l0.W"]), "gg.explain(loss, l0.W) through five sigmoid layers: every "
                "factor σ′ carries its bound, and the path's product is bounded by their product.")


@shows
def relu_accuracy():
    """B5: training accuracy after the same short training."""
    norms, accuracy = deep_gradients()
    return numbers(["activation", "first-layer / last-layer gradient", "training accuracy after 3 epochs of SGD"],
                   [[a, norms[a][0] / norms[a][-1], accuracy[a]] for a in norms],
                   "The same 10-layer network, data, batches and learning rate (0.05); only the activation "
                   "(and its matching initialization) differs.")
