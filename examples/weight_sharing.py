"""Weight sharing: what a convolution saves, and what it buys.

1. Parameters: a 3×3 Conv2D with 8 output channels on a 1×16×16 image against the
   Dense layer that computes a feature map of the same size (8×16×16) from the same input.
2. Translation: shift a digit a few pixels.  The conv feature map moves with it
   (shifting the map back recovers it: equivariance), so compared in place it changes
   a lot; features pooled over the image barely change (invariance).

    python examples/weight_sharing.py [--quick]
"""
import numpy as np

import graphgrad as gg

SIZE, CHANNELS = 16, 8


def count(params):
    return sum(int(np.prod(p.shape)) for p in params)


def parameter_counts():
    g = gg.Graph("conv_vs_dense")
    x = g.input("x", (None, 1, SIZE, SIZE))
    conv = gg.nn.Conv2D(CHANNELS, 3, padding=1, name="conv")
    conv(x)
    dense = gg.nn.Dense(CHANNELS * SIZE * SIZE, name="dense")
    dense(gg.nn.Flatten()(x))
    return count([conv.W, conv.b]), count([dense.W, dense.b])


def digit_canvas(shift=(0, 0)):
    """The first 8×8 digit on a 16×16 canvas, at (4, 4) plus ``shift``."""
    from sklearn.datasets import load_digits

    canvas = np.zeros((1, 1, SIZE, SIZE), np.float32)
    r, c = 4 + shift[0], 4 + shift[1]
    canvas[0, 0, r:r + 8, c:c + 8] = load_digits().images[0] / 16.0
    return canvas


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def translation(shift=(2, 3)):
    g = gg.Graph("shift")
    x = g.input("x", (None, 1, SIZE, SIZE))
    features = gg.nn.Conv2D(CHANNELS, 3, padding=1, activation="relu", name="conv")(x)
    pooled = gg.nn.Flatten()(gg.nn.MaxPool2D(SIZE)(features))  # one max per channel over the whole image
    f = gg.compile([features, pooled], training=False)
    params = g.init_params(seed=0)
    (fmap, pool), (fmap_s, pool_s) = f(params, x=digit_canvas()), f(params, x=digit_canvas(shift))
    moved_back = np.roll(fmap_s, (-shift[0], -shift[1]), axis=(2, 3))
    peak = np.array(np.unravel_index(fmap[0, 0].argmax(), fmap[0, 0].shape))
    peak_s = np.array(np.unravel_index(fmap_s[0, 0].argmax(), fmap_s[0, 0].shape))
    return {"map_change": relative(fmap_s, fmap), "equivariance_error": relative(moved_back, fmap),
            "peak_moved_by": tuple(int(d) for d in peak_s - peak), "pooled_change": relative(pool_s, pool)}


def main(quick=False):
    conv, dense = parameter_counts()
    print(f"parameters for an {CHANNELS}×{SIZE}×{SIZE} feature map of a 1×{SIZE}×{SIZE} image: "
          f"3×3 Conv2D {conv}, Dense {dense} ({dense / conv:.0f}× more)")
    shift = (2, 3)
    r = translation(shift)
    print(f"shift the digit by {shift} pixels:")
    print(f"  conv feature map, compared in place: relative change {r['map_change']:.2f}")
    print(f"  its strongest response moved by {r['peak_moved_by']}; shifted back, the maps differ by "
          f"{r['equivariance_error']:.1e} (equivariance)")
    print(f"  max-pooled features (one per channel): relative change {r['pooled_change']:.1e} (invariance)")
    return {"conv_params": conv, "dense_params": dense, **r}


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
