"""What the reference pages print: the command line's help, the registered ops and functions, drawings."""
from __future__ import annotations

import inspect

import graphgrad as gg
from graphgrad import cli

from . import drawing, numbers, shows, text


@shows
def cli_help():
    """Every ``graphgrad`` command's --help, as argparse prints it."""
    parser = cli.parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # argparse keeps subparsers here
    return [text(parser.format_help(), "graphgrad --help"),
            *(text(sub.format_help(), f"graphgrad {name} --help") for name, sub in commands.items())]


@shows
def registered_ops():
    """The op registry, as gg.ops() lists it."""
    names = sorted(gg.ops())
    per_row = 6
    rows = [names[i:i + per_row] + [""] * (per_row - len(names[i:i + per_row])) for i in range(0, len(names), per_row)]
    return numbers([""] * per_row, rows, f"gg.ops(): the {len(names)} registered ops.")


@shows
def mlp_forward():
    """The README's MLP, drawn."""
    return drawing(gg.render(gg.models.mlp()[1]), "gg.render(loss) of gg.models.mlp(): inputs, params, ops.")


def _neuron():
    g = gg.Graph("neuron")
    x = g.input("x", (None, 3))
    return g, gg.sigmoid(x @ g.param("w", (3, 1))).sum()


@shows
def neuron_backward():
    """The chain rule of one neuron, drawn."""
    return drawing(gg.render(_neuron()[1], backward=True), "gg.render(loss, backward=True) for σ(x·w) summed.")


@shows
def explain_neuron():
    g, loss = _neuron()
    return text(gg.explain(loss, g["w"]), "gg.explain(loss, w)")


@shows
def momentum_step():
    """A compiled training step with momentum, drawn: forward, chain rule, update."""
    g = gg.Graph("sgd")
    x = g.input("x", (None, 2))
    loss = gg.sigmoid(x @ g.param("w", (2, 1))).sum()
    return drawing(gg.render(gg.compile(loss, optimizer=gg.optim.Momentum(lr=0.1, momentum=0.9))),
                   "gg.render of gg.compile(loss, optimizer=gg.optim.Momentum(lr=0.1, momentum=0.9)).")


@shows
def op_functions():
    """The one-op gg.* functions (made from the op registry, so not in the source as ``def``s)."""
    rows = []
    for name in sorted(gg.__all__):
        fn = getattr(gg, name)
        if isinstance(getattr(fn, "op", None), str) and not isinstance(fn, type):
            try:
                local = str(gg.derivative(fn))
            except gg.GraphError:  # a structural op: its derivative is a vector-Jacobian rule
                local = "(a vjp rule)"
            rows.append([f"gg.{name}{inspect.signature(fn)}".replace("'", ""), fn.__doc__, local])
    return numbers(["function", "docstring", "local derivative (gg.derivative)"], rows,
                   "Each adds one node of the op of the same name to x's graph.")
