"""A small ResNet of bottleneck blocks (1×1 reduce → 3×3 → 1×1 expand, BatchNorm, shortcuts) on digits,
and a drawing of its graph.

    python examples/resnet_block.py [--out FOLDER] [--quick]

Files go into FOLDER (default: ./out of the current directory).

Prints the test accuracy and writes resnet.svg (or resnet.dot without Graphviz's `dot`).
"""
import pathlib
import sys
import time


import graphgrad as gg




def draw(loss, path):
    """The forward graph as DOT source, and as SVG when Graphviz's `dot` binary is installed."""
    dot = gg.render(loss)
    path.with_suffix(".dot").write_text(dot.source)
    try:
        dot.render(path, format="svg", cleanup=True)
        return path.with_suffix(".svg")
    except Exception as e:  # the dot binary is optional
        print(f"(no SVG: {e})", file=sys.stderr)
        return path.with_suffix(".dot")


def main(out="out", quick=False):
    out = pathlib.Path(out)
    start = time.perf_counter()
    (X, y), (Xt, yt) = gg.demos.digits((1, 8, 8))
    if quick:
        X, y = X[:128], y[:128]
    g, loss, logits = gg.models.resnet(width=8 if quick else 16, blocks=2)
    params = g.init_params(seed=0)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=3e-3))
    predict = gg.compile(logits, training=False)  # BatchNorm uses its running statistics
    accuracy = lambda p: float((predict(p, x=Xt).argmax(1) == yt).mean())  # noqa: E731
    history = gg.fit(step, params, {"x": X, "y": y}, epochs=1 if quick else 12, batch_size=32, val=accuracy,
                     progress=False)
    out.mkdir(parents=True, exist_ok=True)
    drawing = draw(loss, out / "resnet")
    print(f"ResNet ({len(g.params)} trainable tensors, {len(g.state)} running statistics) on digits: "
          f"test accuracy {history['val'][-1]:.4f} ({time.perf_counter() - start:.0f} s); wrote {drawing}")
    return history["val"][-1]


if __name__ == "__main__":
    from _cli import run

    run(main, __doc__)
