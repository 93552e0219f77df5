"""1×1 filters, bottleneck, ResNet (claims N1–N3)."""
from __future__ import annotations

import numpy as np
import sympy

import graphgrad as gg

from . import formula, numbers, once, plot, pyplot, shows
from .cnn import receptive_field as field_weights


def receptive_field(layers, size=11):
    weights, params = field_weights(layers, size)
    return weights > 0, params


@shows
def one_by_one():
    """N1: a 1×1 conv equals one Dense layer applied at every pixel."""
    g = gg.Graph("one_by_one")
    x = g.input("x", (None, 16, 5, 5))
    conv = gg.nn.Conv2D(4, 1, name="conv")
    y = conv(x)
    params = g.init_params(seed=0)
    X = np.random.default_rng(0).normal(size=(2, 16, 5, 5)).astype(np.float32)
    value = gg.compile(y)(params, x=X)
    W, b = params["conv.W"][:, :, 0, 0], params["conv.b"]
    per_pixel = np.einsum("nchw,oc->nohw", X, W) + b[None, :, None, None]  # the same Dense at each (h, w)
    field, _ = receptive_field([gg.nn.Conv2D(1, 1, activation="relu", name="p")], size=5)
    return numbers(["quantity", "value"],
                   [["output shape (16 → 4 feature maps, 5×5 kept)", str(value.shape)],
                    ["max |conv1×1(x) − (x at each pixel)·Wᵀ + b|", float(np.abs(value - per_pixel).max())],
                    ["parameters: 4 × 16 weights + 4 biases", sum(p.size for p in (W, b))],
                    ["input pixels one output depends on (gradient ≠ 0)", int(field.sum())]],
                   "Conv2D(4, 1) on 16 channels computed by graphgrad, against the 16→4 Dense map applied to "
                   "each pixel's channel vector: the same numbers. It changes the number of feature maps, not "
                   "the receptive field, and with an activation after it adds a nonlinearity per pixel.")


def block_cost(build, channels=256, size=14):
    g = gg.Graph("block")
    x = g.input("x", (None, channels, size, size))
    y = build(x)
    s = gg.summary(y.sum())
    return s.total_params, s.total_flops


@shows
def bottleneck_cost():
    """N2: the bottleneck against plain 3×3 convs at 256 channels: parameters, FLOPs, receptive field."""
    plain1 = lambda x: gg.nn.Conv2D(256, 3, padding=1, bias=False, name="conv")(x)  # noqa: E731
    plain2 = lambda x: gg.nn.Conv2D(256, 3, padding=1, bias=False, name="conv2")(plain1(x))  # noqa: E731

    def bottleneck(x):
        h = gg.relu(gg.nn.Conv2D(64, 1, bias=False, name="reduce")(x))
        h = gg.relu(gg.nn.Conv2D(64, 3, padding=1, bias=False, name="conv")(h))
        return gg.nn.Conv2D(256, 1, bias=False, name="expand")(h)

    small_plain, _ = receptive_field([gg.nn.Conv2D(1, 3, padding=1, name="p")])
    small_two, _ = receptive_field([gg.nn.Conv2D(1, 3, padding=1, name="p"), gg.nn.Conv2D(1, 3, padding=1, name="q")])
    small_bottleneck, _ = receptive_field([gg.nn.Conv2D(1, 1, name="r"), gg.nn.Conv2D(1, 3, padding=1, name="c"),
                                           gg.nn.Conv2D(1, 1, name="e")])
    rows = []
    for label, build, field in (("one 3×3 conv, 256 → 256", plain1, small_plain),
                                ("two 3×3 convs, 256 → 256 → 256", plain2, small_two),
                                ("bottleneck 1×1 → 3×3 → 1×1, 256 → 64 → 64 → 256", bottleneck, small_bottleneck)):
        params, flops = block_cost(build)
        side = int(np.sqrt(field.sum()))
        rows.append([label, params, flops, f"{side}×{side}"])
    return numbers(["block on a 256×14×14 map", "weights", "FLOPs per image (gg.summary)", "receptive field"], rows,
                   "Counted by gg.summary on the graphs; receptive fields from the nonzero pattern of the centre "
                   "output's gradient. The bottleneck sees the same 3×3 window as one plain 3×3 conv for "
                   f"{rows[0][1] / rows[2][1]:.1f}× fewer weights and FLOPs, and two nonlinearities instead of none.")


@shows
def shortcut_derivative():
    """N3: SymPy differentiates y = F(x) + x."""
    x = sympy.Symbol("x")
    F = sympy.Function("F")
    y = F(x) + x
    return formula(f"y = {sympy.latex(y)},\\quad \\frac{{\\partial y}}{{\\partial x}} = {sympy.latex(sympy.diff(y, x))}",
                   "The identity path adds 1 to the block's local derivative, so the gradient reaching x is at "
                   "least the gradient arriving at y, whatever ∂F/∂x does.")


@once
def gradient_vs_depth():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 16)).astype(np.float32)
    depths = (2, 4, 8, 16)
    norms = {"plain": [], "with shortcuts": []}
    for depth in depths:
        for label in norms:
            g = gg.Graph("deep")
            h = gg.nn.Dense(16, name="first")(g.input("x", (None, 16)))
            for i in range(depth):
                layer = gg.nn.Dense(16, activation="sigmoid", name=f"b{i}")
                h = gg.nn.Residual(layer, name=f"res{i}")(h) if label == "with shortcuts" else layer(h)
            _, grads = gg.compile((h * h).mean(), wrt=[g["first.W"]])(g.init_params(seed=0), x=X)
            norms[label].append(float(np.linalg.norm(grads["first.W"])))
    return depths, norms


@shows
def gradient_with_shortcuts():
    """N3: ‖∂L/∂W‖ of the first layer against depth, with and without shortcuts."""
    depths, norms = gradient_vs_depth()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, values in norms.items():
        ax.semilogy(depths, values, marker="o", label=label)
    ax.set(xlabel="number of sigmoid layers (blocks)", ylabel="‖∂L/∂W‖ of the first layer",
           title="Gradient reaching the first layer at initialization")
    ax.legend()
    return plot(fig, f"The same stack of Dense + sigmoid layers, plain (h ← F(h)) and as residual blocks "
                     f"(h ← F(h) + h, gg.nn.Residual). At depth {depths[-1]} the plain stack passes "
                     f"{norms['plain'][-1]:.1e} to its first layer, the residual one {norms['with shortcuts'][-1]:.1e}.")
