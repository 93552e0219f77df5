"""What the docs show, computed by graphgrad while the docs build.

A page writes ``<!-- show: NAME -->``; the hook (docs/gen_figures.py) calls the
function registered under NAME in one of the topic modules here and puts what
it returns on the page.  Every result says where it came from: a figure or
number graphgrad computed, a drawing `gg.render` made, or a formula SymPy printed.
"""
from __future__ import annotations

import html
import importlib
import numbers as numeric
from dataclasses import dataclass, field

SHOWN: dict = {}
TOPICS = ("backprop", "activations", "regularization", "cnn", "resnet", "unet", "rnn", "lstm", "reference")

PROVENANCE = {
    "plot": "Plot computed by graphgrad while these docs were built.",
    "drawing": "Drawn by gg.render while these docs were built.",
    "numbers": "Numbers computed by graphgrad while these docs were built.",
    "text": "Printed by graphgrad while these docs were built.",
    "formula": "Formula printed by SymPy while these docs were built.",
}


@dataclass
class Shown:
    """One result for a page: ``kind`` is a key of PROVENANCE, ``value`` what to draw or print."""

    kind: str
    value: object
    caption: str = ""
    extra: dict = field(default_factory=dict)


def plot(fig, caption=""):
    return Shown("plot", fig, caption)


def drawing(dot, caption=""):
    return Shown("drawing", dot, caption)


def numbers(header, rows, caption=""):
    return Shown("numbers", (header, rows), caption)


def text(value, caption=""):
    return Shown("text", str(value), caption)


def formula(latex_or_expr, caption=""):
    return Shown("formula", latex_or_expr, caption)


def shows(fn):
    """Register ``fn`` (returning a Shown or a list of them) under its name."""
    SHOWN[fn.__name__] = fn
    return fn


def load_all():
    for topic in TOPICS:
        importlib.import_module(f"{__name__}.{topic}")
    return SHOWN


def fmt(value, digits=3):
    """A number as people write it: ints with thousands separators, floats in 3 significant digits."""
    if isinstance(value, numeric.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, numeric.Real) and not isinstance(value, numeric.Integral):
        value = float(value)
        return f"{value:.{digits}g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.{digits - 1}e}"
    return html.escape(str(value))


_MEMO: dict = {}


def once(fn):
    """Compute ``fn`` once per docs build (``reset`` runs at the start of every build)."""
    def wrapper():
        if fn.__name__ not in _MEMO:
            _MEMO[fn.__name__] = fn()
        return _MEMO[fn.__name__]

    wrapper.__name__ = fn.__name__
    return wrapper


def reset():
    _MEMO.clear()


@once
def digits():
    """scikit-learn's 8×8 digits as (X, y) train and test splits, X scaled to [0, 1]."""
    import graphgrad as gg

    return gg.demos.digits()


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "graphgrad",
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def generated_step(source: str) -> str:
    """The ``step`` function of a generated module: the lines people read, without the helpers."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def step("))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("return results"))
    return "\n".join(lines[start:end + 1])
