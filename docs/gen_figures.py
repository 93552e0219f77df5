"""MkDocs hook: every figure and formula in the docs is produced by graphgrad itself at build time.

A page writes ``<!-- figure: NAME -->`` or ``<!-- math: NAME -->``; this hook
draws the figure (SVG, or the DOT source without the dot binary) or prints the
text of the entry NAME below.
"""
from __future__ import annotations

import pathlib
import shutil

import graphgrad as gg
from graphgrad import symbolic


def _deep(activation, depth=5):
    g = gg.Graph(f"deep_{activation}")
    h = g.input("x", (None, 4))
    for i in range(depth):
        h = gg.nn.Dense(4, activation=activation, name=f"l{i}")(h)
    return g, h.sum()


def _neuron():
    g = gg.Graph("neuron")
    x = g.input("x", (None, 3))
    return gg.sigmoid(x @ g.param("w", (3, 1))).sum()


def _regularized():
    g = gg.Graph("bn_dropout")
    x = g.input("x", (None, 8))
    h = gg.nn.Dense(8, name="fc1")(x)
    h = gg.relu(gg.nn.BatchNorm(name="bn")(h))
    h = gg.nn.Dropout(0.5, name="drop")(h)
    return gg.mse(gg.nn.Dense(1, name="fc2")(h), g.input("y", (None, 1)))


def _recurrent(layer):
    g = gg.Graph(layer.lower())
    x = g.input("x", (None, 3, 2))
    h = getattr(gg.nn, layer)(4, name=layer.lower())(x)
    return (h * h).mean()


def _sgd_step():
    g = gg.Graph("sgd")
    x = g.input("x", (None, 2))
    return gg.compile(gg.sigmoid(x @ g.param("w", (2, 1))).sum(), optimizer=gg.optim.Momentum(lr=0.1, momentum=0.9))


FIGURES = {
    "neuron_backward": lambda: gg.render(_neuron(), backward=True),
    "deep_sigmoid_backward": lambda: gg.render(_deep("sigmoid", 3)[1], backward=True, collapse=True),
    "mlp_forward": lambda: gg.render(gg.models.mlp()[1]),
    "momentum_step": lambda: gg.render(_sgd_step()),
    "bn_dropout": lambda: gg.render(_regularized(), collapse=True),
    "cnn": lambda: gg.render(gg.models.cnn()[1], collapse=True),
    "resnet": lambda: gg.render(gg.models.resnet()[1], collapse=True),
    "unet": lambda: gg.render(gg.models.unet()[1], collapse=True, backward=False),
    "rnn": lambda: gg.render(_recurrent("RNN"), collapse=True, backward=True),
    "lstm": lambda: gg.render(_recurrent("LSTM"), collapse=True),
}


def _activation_table():
    rows = ["| activation | derivative | bound |", "|---|---|---|"]
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu"):
        rows.append(f"| {name} | `{symbolic.local_text(name, 1, {}, 0)}` | {symbolic.bound(name, 1, {}, 0)[0]} |")
    return "\n".join(rows)


MATH = {
    "explain_deep_sigmoid": lambda: f"```\n{gg.explain(*reversed(_deep('sigmoid')))}\n```".replace(
        "explain", "explain"),
    "explain_neuron": lambda: f"```\n{gg.explain(_neuron(), 'w')}\n```",
    "activations": _activation_table,
    "summary_cnn": lambda: f"```\n{gg.summary(gg.models.cnn()[1])}\n```",
    "summary_resnet": lambda: f"```\n{gg.summary(gg.models.resnet()[1])}\n```",
    "summary_unet": lambda: f"```\n{gg.summary(gg.models.unet()[1])}\n```",
    "summary_lstm": lambda: f"```\n{gg.summary(_recurrent('LSTM'))}\n```",
    "conv_formula": lambda: f"$$H_\\text{{out}} = {symbolic.SHAPE_FORMULAS['conv2d'][2]}$$",
    "conv_transpose_formula": lambda: f"$$H_\\text{{out}} = {symbolic.SHAPE_FORMULAS['conv_transpose2d'][2]}$$",
}


def _explain_deep():
    g, loss = _deep("sigmoid")
    return f"```\n{gg.explain(loss, g['l0.W'])}\n```"


MATH["explain_deep_sigmoid"] = _explain_deep


def on_page_markdown(markdown, page, config, files):
    import re

    out = pathlib.Path(config["site_dir"]) / "figures"
    out.mkdir(parents=True, exist_ok=True)

    def figure(match):
        name = match.group(1)
        dot = FIGURES[name]()
        if shutil.which("dot"):
            (out / f"{name}.svg").write_bytes(dot.pipe(format="svg"))
            depth = page.file.src_uri.count("/")
            return f'<img src="{"../" * depth}figures/{name}.svg" alt="{name}">'
        return f"```dot\n{dot.source}\n```"

    markdown = re.sub(r"<!-- figure: (\w+) -->", figure, markdown)
    return re.sub(r"<!-- math: (\w+) -->", lambda m: MATH[m.group(1)](), markdown)
