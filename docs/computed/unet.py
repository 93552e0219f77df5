"""Up-sampling and U-Net (claims U1–U5)."""
from __future__ import annotations

import numpy as np

import graphgrad as gg

from . import drawing, numbers, plot, pyplot, shows
from .cnn import pixel_grid


def unet_model():
    return gg.models.unet(size=16, depth=2, base_channels=4)


@shows
def unet_levels():
    """U1: the encoder halves the resolution and adds channels; the decoder brings it back."""
    g, _, _ = unet_model()
    kept = ("conv2d", "maxpool2d", "conv_transpose2d", "concat")
    rows = [[node, data["op"], "×".join(str(d) for d in data["shape"][1:])]
            for node, data in g.nx.nodes(data=True) if data["op"] in kept]
    return numbers(["node", "op", "output (channels×H×W)"], rows,
                   "The convolutions, poolings, transposed convolutions and concatenations of a depth-2 U-Net "
                   "on 1×16×16 images, in graph order: pooling encodes 16 → 8 → 4 while the channels grow; "
                   "transposed convolutions decode 4 → 8 → 16 back to a full-resolution map.")


@shows
def unet_drawing():
    """U1, U5: the U-Net drawn by gg.render, layers collapsed."""
    _, loss, _ = unet_model()
    return drawing(gg.render(loss, collapse=True), "The U-Net's graph, one box per layer: the contracting path "
                   "down, the expanding path up, and the skip edges from each encoder level into the concat of "
                   "the decoder level of the same size.")


@shows
def unet_skips():
    """U5: each decoder level concatenates the encoder's features of the same resolution."""
    g, loss, _ = unet_model()
    rows = []
    for node, data in g.nx.nodes(data=True):
        if data["op"] == "concat":
            a, b = (g.nx.nodes[n] for n in g.args(node))
            rows.append([node, str(a["shape"][1:]), str(b["shape"][1:]), str(data["shape"][1:])])
    return numbers(["concat node", "up-sampled decoder features", "skipped encoder features", "concatenated"], rows,
                   "The concat nodes of the graph: channels add up, the spatial size matches.")


def upsample(image, mode):
    g = gg.Graph("up")
    x = g.input("x", (None, 1, *image.shape))
    return gg.compile(gg.nn.Upsample2D(2, mode=mode, name="up")(x))({}, x=image[None, None])[0, 0]


@shows
def interpolation():
    """U2: nearest and bilinear up-sampling of a 4×4 image."""
    image = np.array([[0, 1, 0, 0], [1, 2, 1, 0], [0, 1, 0, 3], [0, 0, 3, 6]], np.float32) / 6
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
    for ax, (title, data) in zip(axes, (("input 4×4", image), ("nearest ×2", upsample(image, "nearest")),
                                        ("bilinear ×2", upsample(image, "bilinear")))):
        ax.imshow(data, cmap="magma", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        pixel_grid(ax, data.shape[0])
    fig.tight_layout()
    return plot(fig, "gg.nn.Upsample2D(2, mode=…): nearest repeats each pixel in a 2×2 block; bilinear "
                     "interpolates between neighbours (PyTorch's align_corners=False). Neither has a parameter.")


def conv_matrix(weight, size):
    """The matrix M of a 1-channel convolution: column j is the conv of the j-th unit image."""
    g = gg.Graph("conv")
    x = g.input("x", (None, 1, size, size), dtype="float64")
    y = gg.nn.Conv2D(1, weight.shape[-1], bias=False, name="conv")(x)
    basis = np.eye(size * size).reshape(-1, 1, size, size)
    return gg.compile(y)({"conv.W": weight}, x=basis).reshape(size * size, -1).T


@shows
def transposed_conv_is_transpose():
    """U3: conv_transpose(y) = Mᵀ y = the gradient of conv with respect to its input."""
    rng = np.random.default_rng(0)
    weight = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    M = conv_matrix(weight, 4)  # 4×4 input, 3×3 kernel: 2×2 output, M is 4 × 16
    y = rng.normal(size=(1, 1, 2, 2))
    g = gg.Graph("transpose")
    small = g.input("y", (None, 1, 2, 2), dtype="float64")
    up = gg.nn.ConvTranspose2D(1, 3, bias=False, name="up")(small)
    transposed = gg.compile(up)({"up.W": weight}, y=y)
    h = gg.Graph("conv_grad")
    x = h.input("x", (None, 1, 4, 4), dtype="float64")
    conv = gg.nn.Conv2D(1, 3, bias=False, name="conv")(x)
    (grad_x,) = gg.compile(gg.grad((conv * h.input("y", (None, 1, 2, 2), dtype="float64")).sum(), [x]))(
        {"conv.W": weight}, x=rng.normal(size=(1, 1, 4, 4)), y=y)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.6), gridspec_kw={"width_ratios": [4, 1]})
    axes[0].imshow(M, cmap="Blues")
    axes[0].set_title("M: conv of a 4×4 image with a 3×3 kernel (weights 1…9), 4 × 16", fontsize=9)
    axes[1].imshow(M.T, cmap="Blues")
    axes[1].set_title("Mᵀ: 16 × 4", fontsize=9)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
    fig.tight_layout()
    return [plot(fig, "The convolution as a matrix, built by graphgrad convolving the 16 unit images; each row "
                      "holds the kernel once, shifted: the weights are shared."),
            numbers(["comparison (2×2 → 4×4, float64)", "max |difference|"],
                    [["ConvTranspose2D(y) vs Mᵀ·y", float(np.abs(transposed.reshape(-1) - M.T @ y.reshape(-1)).max())],
                     ["gg.grad(Σ conv(x)·y, x) vs Mᵀ·y", float(np.abs(grad_x.reshape(-1) - M.T @ y.reshape(-1)).max())]],
                    "The transposed convolution with the same kernel is the transpose of the convolution's "
                    "matrix, and the same numbers as the gradient of the convolution with respect to its input: "
                    "it maps a 2×2 map back to 4×4, learning the kernel.")]


@shows
def fractionally_strided():
    """U4: a stride-2 transposed conv equals zero insertion, padding k − 1 and a conv with the flipped kernel."""
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(1, 1, 3, 3))
    small = rng.normal(size=(1, 1, 3, 3))
    g = gg.Graph("up")
    y = g.input("y", (None, 1, 3, 3), dtype="float64")
    out = gg.compile(gg.nn.ConvTranspose2D(1, 3, stride=2, bias=False, name="up")(y))({"up.W": weight}, y=small)
    dilated = np.zeros((1, 1, 5, 5))
    dilated[:, :, ::2, ::2] = small  # one zero between neighbouring pixels
    h = gg.Graph("conv")
    x = h.input("x", (None, 1, 5, 5), dtype="float64")
    conv = gg.nn.Conv2D(1, 3, padding=2, bias=False, name="conv")(x)  # padding k − 1 − p = 2
    same = gg.compile(conv)({"conv.W": weight[:, :, ::-1, ::-1].copy()}, x=dilated)
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
    panels = (("input 3×3", small), ("zeros inserted, padded 2", np.pad(dilated, ((0, 0), (0, 0), (2, 2), (2, 2)))),
              ("conv, flipped kernel → 7×7", same), ("ConvTranspose2D(stride 2) → 7×7", out))
    for ax, (title, data) in zip(axes, panels):
        scale = np.abs(data).max()
        ax.imshow(data[0, 0], cmap="coolwarm", vmin=-scale, vmax=scale)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
    fig.tight_layout()
    return [plot(fig, "Fractionally-strided convolution: insert s − 1 = 1 zero between input pixels, pad by "
                      "k − 1 − p = 2 and convolve (stride 1) with the kernel flipped."),
            numbers(["comparison", "max |difference|"],
                    [["zero-insertion conv vs ConvTranspose2D(1, 3, stride=2)", float(np.abs(same - out).max())]],
                    "Both computed by graphgrad in float64: the same numbers.")]
