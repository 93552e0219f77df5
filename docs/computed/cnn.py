"""CNN structure (claims C1–C4)."""
from __future__ import annotations

import numpy as np

import graphgrad as gg
from graphgrad import symbolic

from . import digits, formula, numbers, plot, pyplot, shows

SIZE, CHANNELS = 16, 8


def count(tensors):
    return sum(int(np.prod(t.shape)) for t in tensors)


@shows
def conv_vs_dense_parameters():
    """C1: a 3×3 conv against the Dense layer producing the same feature maps from the same image."""
    rows = []
    for size in (8, 16, 32):
        g = gg.Graph("conv_vs_dense")
        x = g.input("x", (None, 1, size, size))
        conv = gg.nn.Conv2D(CHANNELS, 3, padding=1, name="conv")
        conv(x)
        dense = gg.nn.Dense(CHANNELS * size * size, name="dense")
        dense(gg.nn.Flatten()(x))
        c, d = count([conv.W, conv.b]), count([dense.W, dense.b])
        rows.append([f"1×{size}×{size} → {CHANNELS}×{size}×{size}", c, d, d / c])
    return numbers(["image → feature maps", "Conv2D(8, 3, padding=1) params", "Dense params", "ratio"], rows,
                   "Parameter counts of the two layers graphgrad builds. The conv's 8 × (3·3 + 1) = 80 numbers "
                   "are shared by every position, so they do not grow with the image; the Dense layer has one "
                   "weight per (input pixel, output value) pair.")


def digit_canvas(shift=(0, 0)):
    """The first test digit on a 16×16 canvas, at (4, 4) plus ``shift``."""
    _, (Xt, _) = digits()
    canvas = np.zeros((1, 1, SIZE, SIZE), np.float32)
    r, c = 4 + shift[0], 4 + shift[1]
    canvas[0, 0, r:r + 8, c:c + 8] = Xt[0].reshape(8, 8)
    return canvas


@shows
def translation():
    """C2: shifting the input shifts the feature map (equivariance); global max pooling does not change."""
    g = gg.Graph("shift")
    x = g.input("x", (None, 1, SIZE, SIZE))
    features = gg.nn.Conv2D(CHANNELS, 3, padding=1, activation="relu", name="conv")(x)
    pooled = gg.nn.Flatten()(gg.nn.MaxPool2D(SIZE)(features))
    f = gg.compile([features, pooled], training=False)
    params = g.init_params(seed=0)
    shift = (2, 3)
    image, moved = digit_canvas(), digit_canvas(shift)
    (fmap, pool), (fmap_s, pool_s) = f(params, x=image), f(params, x=moved)
    relative = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    plt = pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
    panels = (("input", image[0, 0]), (f"input shifted by {shift}", moved[0, 0]),
              ("feature map (channel 0)", fmap[0, 0]), ("… of the shifted input", fmap_s[0, 0]))
    for ax, (title, data) in zip(axes, panels):
        ax.imshow(data, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
    axes[4].bar(np.arange(CHANNELS) - 0.2, pool[0], 0.4, label="input")
    axes[4].bar(np.arange(CHANNELS) + 0.2, pool_s[0], 0.4, label="shifted")
    axes[4].set_title("global max per channel", fontsize=9)
    axes[4].legend(fontsize=7)
    fig.tight_layout()
    back = np.roll(fmap_s, (-shift[0], -shift[1]), axis=(2, 3))
    return [plot(fig, "A random 3×3 conv + ReLU on a digit and on the digit shifted by (2, 3) pixels."),
            numbers(["comparison", "relative difference"],
                    [["feature maps compared in place", relative(fmap_s, fmap)],
                     ["shifted map moved back by (2, 3) vs original map (equivariance)", relative(back, fmap)],
                     ["max-pooled features (invariance)", relative(pool_s, pool)]],
                    "The map moves with the input — the same weights look at every position — so it is equal "
                    "to the original once shifted back; pooling over positions forgets where, and so does not "
                    "change at all.")]


@shows
def output_size():
    """C3: the output-size formula from the op registry, and the shapes graphgrad infers."""
    rows = []
    for H, k, p, s, d in ((28, 3, 0, 1, 1), (28, 3, 1, 1, 1), (28, 5, 2, 2, 1), (32, 3, 1, 2, 1), (32, 3, 2, 1, 2),
                          (7, 3, 0, 2, 1)):
        g = gg.Graph("shape")
        x = g.input("x", (None, 1, H, H))
        y = gg.nn.Conv2D(1, k, stride=s, padding=p, dilation=d, name="conv")(x)
        value = gg.compile(y)(g.init_params(), x=np.zeros((1, 1, H, H), np.float32))
        rows.append([H, k, p, s, d, symbolic.shape_formula("conv2d", {"stride": s, "padding": p, "dilation": d},
                                                           size=H, kernel=k), y.shape[2], value.shape[2]])
    return [formula(f"H_{{out}} = {symbolic.SHAPE_FORMULAS['conv2d'][2]}",
                    "The shape rule of the conv2d op, as SymPy prints it (pooling uses the same rule)."),
            numbers(["H", "k", "p", "s", "d", "formula", "shape graphgrad infers", "shape of the computed output"],
                    rows, "The formula evaluated, the shape checked when the node was added, and the shape of "
                          "the array the compiled code returned.")]


def pixel_grid(ax, n):
    """Thin lines between the pixels of an n×n image, no ticks."""
    ax.set_xticks(np.arange(-0.5, n), minor=True), ax.set_yticks(np.arange(-0.5, n), minor=True)
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(which="minor", color="lightgrey", lw=0.5)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)


def receptive_field(layers, size=11):
    """Which input pixels the centre output depends on, and how strongly: |∂ centre / ∂ input|."""
    g = gg.Graph("field")
    x = g.input("x", (None, 1, size, size))
    h = x
    for layer in layers:
        h = layer(h)
    centre = h[:, :, h.shape[2] // 2, h.shape[3] // 2].sum()
    (dx,) = gg.compile(gg.grad(centre, [x]), dtype="float64")(
        {k: np.abs(v) + 0.1 for k, v in g.init_params(seed=0).items()},  # positive: no cancelling weights
        x=np.random.default_rng(0).random((1, 1, size, size)))
    return np.abs(dx[0, 0]), count(g.params)


@shows
def small_filters():
    """C4: two 3×3 convs see 5×5 like one 5×5 conv, with fewer parameters and two nonlinearities."""
    two, _ = receptive_field([gg.nn.Conv2D(1, 3, padding=1, activation="relu", name="a"),
                              gg.nn.Conv2D(1, 3, padding=1, activation="relu", name="b")])
    one, _ = receptive_field([gg.nn.Conv2D(1, 5, padding=2, activation="relu", name="c")])
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, (title, weight) in zip(axes, (("two 3×3 convs", two), ("one 5×5 conv", one))):
        ax.imshow(weight / weight.max(), cmap="Greys", vmin=0, vmax=1)
        ax.set_title(f"{title}: {int((weight > 0).sum())} pixels", fontsize=10)
        pixel_grid(ax, weight.shape[0])
    fig.tight_layout()
    C = 64
    rows = []
    for label, layers in (("two 3×3", [gg.nn.Conv2D(C, 3, padding=1, bias=False, name="a"),
                                       gg.nn.Conv2D(C, 3, padding=1, bias=False, name="b")]),
                          ("one 5×5", [gg.nn.Conv2D(C, 5, padding=2, bias=False, name="c")])):
        g = gg.Graph("cost")
        h = g.input("x", (None, C, 8, 8))
        for layer in layers:
            h = layer(h)
        rows.append([label, count(g.params), len(layers)])
    return [plot(fig, "The input pixels the centre output depends on: |∂ output / ∂ input| from gg.grad, "
                      "positive weights. Both see a 5×5 window; the stack weighs its centre more, since more "
                      "paths lead there."),
            numbers(["64 → 64 channels", "weights", "ReLUs (nonlinearities)"], rows,
                    "Same receptive field, 2·9 = 18 weights per channel pair instead of 25, and one more "
                    "nonlinearity.")]
