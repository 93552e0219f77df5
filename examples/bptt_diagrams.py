"""Draw backpropagation through time: the RNN and LSTM forward graphs and their unrolled backward
diagrams (one cluster per step, shared weights once, backward edges labelled and coloured by
the gradient that flows along them), written as SVG into the output folder.

    python examples/bptt_diagrams.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).
"""
import pathlib

import numpy as np

import graphgrad as gg


def model(layer_class, steps=5, features=3, hidden=4):
    g = gg.Graph(layer_class.__name__.lower())
    x = g.input("x", (None, steps, features))
    y = g.input("y", (None,), dtype="int64")
    layer = layer_class(hidden, lowering="unrolled", name=layer_class.__name__.lower())
    loss = gg.softmax_cross_entropy(gg.nn.Dense(2, name="fc")(layer(x)), y)
    return g, loss, layer


def main(out="out", quick=False):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = []
    for layer_class in (gg.nn.RNN, gg.nn.LSTM):
        g, loss, layer = model(layer_class)
        feeds = {"x": rng.normal(size=(8, 5, 3)), "y": rng.integers(0, 2, 8)}
        params = g.init_params(seed=0)
        norms = gg.nn.gradient_norms_over_time(loss, layer, params, feeds)
        name = layer.name
        values = {**params, **feeds}  # render computes ‖∂L/∂h_t‖ at these itself
        drawings = {
            f"{name}_forward": gg.render(loss, unroll=True),
            f"{name}_bptt": gg.render(loss, backward=True, unroll=True, grads=values),
            f"{name}_bptt_collapsed": gg.render(loss, backward=True, unroll=True, grads=values, collapsed=True),
        }
        for stem, dot in drawings.items():
            (out / f"{stem}.dot").write_text(dot.source)
            for fmt in ("svg",) if quick else ("svg", "png"):
                dot.render(out / stem, format=fmt, cleanup=True)
            written.append(out / f"{stem}.svg")
        print(f"{name}: ‖∂L/∂h_t‖ for t = 0..4: " + " ".join(f"{v:.2e}" for v in norms))
    print("wrote " + ", ".join(str(p) for p in written))
    return written


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
