"""Activation functions and optimizers (claims A1–A7)."""
from __future__ import annotations

import time

import numpy as np
import sympy

import graphgrad as gg
from graphgrad import symbolic

from . import digits, drawing, formula, numbers, once, plot, pyplot, shows
from .mathsvg import latex

ACTIVATIONS = {
    "sigmoid": gg.sigmoid,
    "tanh": gg.tanh,
    "relu": gg.relu,
    "leaky_relu (α = 0.1)": lambda x: gg.leaky_relu(x, alpha=0.1),
    "elu": gg.elu,
    "softplus": gg.softplus,
    "silu": gg.silu,
    "gelu": gg.gelu,
}


def values_and_slopes(fn, xs):
    """fn(x) and dfn/dx at every x, both computed by a compiled graph (the slope by gg.grad)."""
    g = gg.Graph("activation")
    x = g.input("x", (None,), dtype="float64")
    y = fn(x)
    (dy,) = gg.grad(y.sum(), [x])
    return gg.compile([y, dy])({}, x=xs)


@shows
def activation_plots():
    """A1, A3, A5, A6: every activation and its derivative, evaluated by graphgrad."""
    xs = np.linspace(-4, 4, 401)
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, fn in ACTIVATIONS.items():
        y, dy = values_and_slopes(fn, xs)
        left.plot(xs, y, label=name)
        right.plot(xs, dy, label=name)
    left.set(title="f(x)", xlabel="x", ylim=(-1.5, 4))
    right.set(title="f′(x) from gg.grad", xlabel="x", ylim=(-0.2, 1.25))
    right.axhline(0.25, color="grey", ls=":", lw=1)
    left.legend(fontsize=8)
    return plot(fig, "Left: the activations; right: their derivatives, each computed by the compiled chain rule "
                     "(the dotted line is ¼, the top of σ′).")


@shows
def derivative_formulas():
    """A6: the local derivative of every activation op, as SymPy derives it from the op's formula."""
    x = sympy.Symbol("x")
    rows = []
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu"):
        d = symbolic.merge_selects(gg.derivative(getattr(gg, name)))
        rows.append(f"\\mathrm{{{name.replace('_', chr(92) + '_')}}}'(x) = {latex(d.subs(sympy.Symbol('x'), x))}")
    return [formula(r, "gg.derivative(gg." + n + ")") for r, n in
            zip(rows, ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu"))]


@shows
def sigmoid_facts():
    """A1: bounded in (0, 1), derivative ≤ ¼ and vanishing when saturated."""
    xs = np.array([-20.0, -10.0, -4.0, 0.0, 4.0, 10.0, 20.0])
    y, dy = values_and_slopes(gg.sigmoid, xs)
    return numbers(["x", *xs], [["σ(x)", *y], ["σ′(x)", *dy]],
                   "σ stays inside (0, 1) — no explosion — but its slope is ¼ at best and almost 0 once |x| is "
                   "large: a saturated unit passes back almost no gradient.")


@shows
def tanh_is_rescaled_sigmoid():
    """A2: SymPy proves tanh(x) = 2σ(2x) − 1; graphgrad evaluates both sides."""
    x = sympy.Symbol("x", real=True)
    sigma = lambda z: 1 / (1 + sympy.exp(-z))  # noqa: E731
    difference = sympy.simplify((sympy.tanh(x) - (2 * sigma(2 * x) - 1)).rewrite(sympy.exp))
    xs = np.linspace(-6, 6, 121)
    tanh, _ = values_and_slopes(gg.tanh, xs)
    rescaled, _ = values_and_slopes(lambda t: 2 * gg.sigmoid(2 * t) - 1, xs)
    return [formula(f"\\tanh(x) - \\left(2\\sigma(2x) - 1\\right) = {sympy.latex(difference)}",
                    "SymPy simplifies the difference (written in exponentials) to zero."),
            numbers(["quantity", "value"], [["max |tanh(x) − (2σ(2x) − 1)| over [−6, 6], float64", float(
                np.abs(tanh - rescaled).max())], ["range of tanh on [−6, 6]", f"({tanh.min():.5f}, {tanh.max():.5f})"],
                ["tanh′(0)", float(values_and_slopes(gg.tanh, np.zeros(1))[1][0])]],
                "Both sides compiled by graphgrad: tanh is σ stretched to (−1, 1), with slope 1 at 0 — the "
                "squashing function of the LSTM's candidate and output.")]


@shows
def relu_cost():
    """A3: ReLU's derivative takes only the values 0 and 1, and it costs a comparison."""
    xs = np.random.default_rng(0).normal(size=1_000_000)
    rows = []
    for name in ("relu", "sigmoid", "tanh", "gelu"):
        fn = getattr(gg, name)
        values_and_slopes(fn, xs[:10])  # compile once before timing
        start = time.perf_counter()
        for _ in range(3):
            _, dy = values_and_slopes(fn, xs)
        distinct = np.unique(dy)
        rows.append([name, (time.perf_counter() - start) / 3 * 1e3,
                     ", ".join(f"{v:g}" for v in distinct) if len(distinct) < 4 else f"{len(distinct):,} values"])
    return numbers(["activation", "forward + derivative of 10⁶ values (ms)", "its derivative takes"], rows,
                   "Timed in the compiled graphs (graph building included, so a lower bound on the difference).")


def dead_units(activation):
    """One epoch of SGD at a too-large learning rate, then three at a sensible one.

    Returns the fraction of hidden units ≤ 0 on every training input after the first phase, how far
    those units' incoming weights moved during the second, and the final training accuracy.
    """
    (X, y), _ = digits()
    g = gg.Graph("dead")
    x, labels = g.input("x", (None, 64)), g.input("y", (None,), dtype="int64")
    pre = gg.nn.Dense(64, name="hidden")(x)
    hidden = gg.relu(pre) if activation == "relu" else gg.leaky_relu(pre, alpha=0.1)
    logits = gg.nn.Dense(10, name="out")(hidden)
    loss = gg.softmax_cross_entropy(logits, labels)
    params = g.init_params(seed=1)
    probe = gg.compile([pre, logits], training=False)
    train = lambda lr, epochs: gg.fit(gg.compile(loss, optimizer=gg.optim.SGD(lr=lr)), params,  # noqa: E731
                                      {"x": X, "y": y}, epochs=epochs, batch_size=32, progress=False)
    train(2.0, 1)
    dead = (probe(params, x=X)[0] <= 0).all(axis=0)
    before = params["hidden.W"][:, dead].copy()
    train(0.05, 3)
    moved = float(np.abs(params["hidden.W"][:, dead] - before).max()) if dead.any() else 0.0
    accuracy = float((probe(params, x=X)[1].argmax(1) == y).mean())
    return float(dead.mean()), moved, accuracy


@shows
def dying_relu():
    """A4, A5: dead units after a too-large learning rate; leaky ReLU's slope keeps them learning."""
    rows = [[activation, *dead_units(activation)] for activation in ("relu", "leaky_relu")]
    return numbers(["activation", "units ≤ 0 on every input after 1 epoch at lr 2.0",
                    "largest change of their weights in 3 more epochs at lr 0.05", "training accuracy"], rows,
                   "A 64-unit hidden layer on digits. The large steps push many units' pre-activations below 0 "
                   "for every input. A ReLU unit there has derivative 0 on all data: its weights do not move at "
                   "all afterwards. Leaky ReLU (α = 0.1) still passes α times the gradient, so the same units "
                   "keep learning.")


@shows
def negative_slopes():
    """A5: the gradient each activation passes back for negative inputs."""
    xs = np.array([-3.0, -1.0, -0.1])
    rows = [[name, *values_and_slopes(fn, xs)[1]] for name, fn in (
        ("relu", gg.relu), ("leaky_relu (α = 0.01)", gg.leaky_relu), ("elu", gg.elu))]
    g = gg.Graph("prelu")
    x = g.input("x", (None, 1), dtype="float64")
    prelu, maxout = gg.nn.PReLU(name="prelu"), gg.nn.Maxout(1, pieces=2, name="maxout")
    for name, y in (("PReLU (α learned, starts at 0.25)", prelu(x)), ("Maxout (2 pieces, random init)", maxout(x))):
        (dx,) = gg.compile(gg.grad(y.sum(), [x]))(g.init_params(seed=0), x=xs[:, None])
        rows.append([name, *dx[:, 0]])
    return numbers(["f′(x) at", *xs], rows, "Computed by gg.grad: ReLU passes nothing back for a negative input; "
                   "the others pass a nonzero gradient, so a unit pushed below zero can still learn its way back.")


# -- optimizers on an ill-conditioned quadratic ------------------------------------------------
CONDITION = 20.0
OPTIMIZERS = {
    "SGD": lambda: gg.optim.SGD(lr=0.09),
    "Momentum": lambda: gg.optim.Momentum(lr=0.02, momentum=0.9),
    "Nesterov": lambda: gg.optim.Nesterov(lr=0.02, momentum=0.9),
    "AdaGrad": lambda: gg.optim.AdaGrad(lr=1.0),
    "RMSProp": lambda: gg.optim.RMSProp(lr=0.05),
    "Adam": lambda: gg.optim.Adam(lr=0.3),
}
STATE_NAMES = {"momentum": "b", "sum": "G", "square_avg": "v", "m": "m", "v": "v", "t": "t"}


def quadratic():
    """f(w) = ½(w₀² + 20·w₁²): the condition number is 20, so one step size cannot suit both axes."""
    g = gg.Graph("quadratic")
    w = g.param("w", (2,))
    return g, 0.5 * (w * w * g.const(np.array([1.0, CONDITION]))).sum()


@once
def trajectories():
    paths = {}
    for name, make in OPTIMIZERS.items():
        g, loss = quadratic()
        step = gg.compile(loss, optimizer=make(), dtype="float64")
        params = {"w": np.array([-4.0, 1.5])}
        path = [params["w"].copy()]
        for _ in range(60):
            step(params)
            path.append(params["w"].copy())
        paths[name] = np.array(path)
    return paths


@shows
def optimizer_trajectories():
    """A7: the six optimizers' paths on the quadratic, and their distance to the minimum."""
    paths = trajectories()
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.2), sharex=True, sharey=True)
    u, v = np.meshgrid(np.linspace(-4.5, 1.5, 121), np.linspace(-2, 2, 81))
    for ax, (name, path) in zip(axes.flat, paths.items()):
        ax.contour(u, v, 0.5 * (u ** 2 + CONDITION * v ** 2), levels=np.geomspace(0.05, 40, 12), colors="grey",
                   linewidths=0.5)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1)
        ax.plot(0, 0, "k*")
        ax.set_title(f"{name}: ‖w₆₀‖ = {np.linalg.norm(path[-1]):.1e}", fontsize=10)
    fig.tight_layout()
    return plot(fig, "60 steps of each optimizer from (−4, 1.5) on ½(w₀² + 20 w₁²), each step the compiled "
                     "training step gg.compile(loss, optimizer=…). SGD's step must stay below 2/20 for the steep "
                     "axis and so crawls along the shallow one; momentum builds speed along the valley; the "
                     "adaptive methods divide each coordinate by its own gradient scale.")


def update_formulas(make):
    """The optimizer's update of w as SymPy prints it from the compiled graph, g standing for ∂L/∂w."""
    g = gg.Graph("update")
    w = g.param("w", (2,))
    grad_in = g.input("g", (2,))
    step = gg.compile((w * grad_in).sum(), optimizer=make())  # ∂L/∂w is the input g
    graph = step.derived_graph
    rows = []
    for node, data in graph.nx.nodes(data=True):
        if data["op"] != "assign":
            continue
        expr = gg.formula(graph.tensor(graph.args(node)[0]))
        names = {s: sympy.Symbol(STATE_NAMES.get(s.name.split("_w")[0].split("_", 1)[-1], s.name))
                 for s in expr.free_symbols if s.name not in ("w", "g")}
        target = data["attrs"]["key"]
        lhs = "w" if target == "w" else STATE_NAMES.get(target.split("/")[0].split(".", 1)[-1], target)
        expr = expr.subs(names).xreplace({sympy.Float(1.0): sympy.Integer(1)}).replace(
            lambda e: type(e).__name__ == "power", lambda e: sympy.Pow(*e.args, evaluate=False))
        rows.append(f"{lhs} \\leftarrow {latex(expr)}")
    return rows


@shows
def optimizer_equations():
    """A7: each optimizer's update, printed by SymPy from the graph graphgrad compiles (torch's defaults)."""
    items = []
    for name, make in (("SGD", lambda: gg.optim.SGD(lr=0.1)),
                       ("Momentum", lambda: gg.optim.Momentum(lr=0.1, momentum=0.9)),
                       ("Nesterov", lambda: gg.optim.Nesterov(lr=0.1, momentum=0.9)),
                       ("AdaGrad", lambda: gg.optim.AdaGrad(lr=0.1)),
                       ("RMSProp", lambda: gg.optim.RMSProp(lr=0.1)),
                       ("Adam", lambda: gg.optim.Adam(lr=0.1))):
        items.append(formula(",\\quad ".join(update_formulas(make)), f"{name} (lr = 0.1, other settings at "
                             "torch.optim's defaults): the update of w, g = ∂L/∂w."))
    return items


@shows
def optimizer_graph():
    """A7: the Adam step drawn as a graph: forward, chain rule, then the update ops ending in assign."""
    g = gg.Graph("neuron_adam")
    x = g.input("x", (None, 2))
    loss = gg.sigmoid(x @ g.param("w", (2, 1))).sum()
    return drawing(gg.render(gg.compile(loss, optimizer=gg.optim.Adam(lr=0.1))),
                   "gg.render of a compiled Adam step for one neuron: the moment estimates m, v and the step "
                   "counter t are state nodes; each update ends in an assign.")
