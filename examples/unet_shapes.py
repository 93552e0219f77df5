"""A U-Net segments synthetic shapes (discs, squares, triangles) in noisy images.

It generates its own data, trains `gg.nn.UNet` with binary cross-entropy per pixel,
reports the intersection-over-union on held-out images and saves a PNG of input,
target and prediction (unet_shapes.png) into the output folder.

    python examples/unet_shapes.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).
"""
import pathlib
import time

import numpy as np

import graphgrad as gg



def shapes_dataset(n, size=32, noise=0.35, seed=0):
    """``n`` images (n, 1, size, size) with one or two random shapes each, plus their 0/1 masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(5, size - 5, 2)
            r = rng.uniform(2.5, 5.5)
            kind = rng.integers(3)
            if kind == 0:  # disc
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif kind == 1:  # square
                shape = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            else:  # triangle pointing up
                shape = (yy <= cy + r) & (yy - (cy - r) >= 2 * np.abs(xx - cx))
            masks[i] |= shape
    images = masks + rng.normal(0, noise, masks.shape)
    return images[:, None].astype(np.float32), masks[:, None].astype(np.float32)


def iou(pred_mask, mask):
    """Intersection over union of the foreground, over all pixels of all images."""
    pred_mask, mask = pred_mask.astype(bool), mask.astype(bool)
    return float((pred_mask & mask).sum() / max((pred_mask | mask).sum(), 1))


def save_figure(path, images, masks, predicted, count=4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, count, figsize=(2 * count, 6))
    for j in range(count):
        for row, (title, data) in enumerate((("input", images), ("target", masks), ("prediction", predicted))):
            axes[row, j].imshow(data[j, 0], cmap="gray")
            axes[row, j].set_xticks([]), axes[row, j].set_yticks([])
            if j == 0:
                axes[row, j].set_ylabel(title)
    fig.suptitle("U-Net on synthetic shapes (held-out images)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(out="out", quick=False):
    out = pathlib.Path(out)
    start = time.perf_counter()
    size = 16 if quick else 24
    X, M = shapes_dataset(64 if quick else 400, size=size, seed=0)
    Xt, Mt = shapes_dataset(16 if quick else 200, size=size, seed=1)
    g, loss, logits = gg.models.unet(size=size, depth=2, base_channels=4 if quick else 8)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=3e-3))
    predict = gg.compile(logits, training=False)
    history = gg.fit(step, params, {"x": X, "mask": M}, epochs=1 if quick else 8, batch_size=16, progress=False)
    predicted = (predict(params, x=Xt) > 0).astype(np.float32)
    score = iou(predicted, Mt)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(out / "unet_shapes.png", Xt, Mt, predicted)
    print(f"U-Net on {len(X)} noisy {size}×{size} images: final loss {history['loss'][-1]:.4f}, "
          f"held-out IoU {score:.3f} ({time.perf_counter() - start:.0f} s); wrote {out / 'unet_shapes.png'}")
    return score


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
