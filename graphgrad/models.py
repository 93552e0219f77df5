"""Built-in models by name, for the command line and the docs: each returns ``(graph, loss, logits)``."""
from __future__ import annotations

from . import functional as F
from . import nn
from .ir import Graph


def mlp(features: int = 64, classes: int = 10, hidden: int = 64):
    """The API.md §1 MLP at digits size: Dense-ReLU-Dense, softmax cross-entropy."""
    g = Graph("mlp")
    x = g.input("x", (None, features))
    y = g.input("y", (None,), dtype="int64")
    h = nn.Dense(hidden, activation="relu", name="fc1")(x)
    logits = nn.Dense(classes, name="fc2")(h)
    return g, F.softmax_cross_entropy(logits, y), logits


MODELS = {"mlp": mlp}
