"""Declare: the public functions that add op nodes, and the losses built from them."""
from __future__ import annotations

import numbers

from .errors import GraphError
from .ir import Tensor, normalize_axis


def _op_function(op_name, doc, **defaults):
    def fn(x, **attrs):
        return x.graph.apply(op_name, [x], {**defaults, **attrs})

    fn.__name__ = fn.__qualname__ = op_name
    fn.__doc__ = doc
    fn.op = op_name  # lets gg.derivative(gg.sigmoid) find the op
    return fn


sigmoid = _op_function("sigmoid", "σ(x) = 1 / (1 + e^−x), evaluated without overflow.")
tanh = _op_function("tanh", "Hyperbolic tangent.")
relu = _op_function("relu", "max(x, 0).")
softplus = _op_function("softplus", "log(1 + e^x), evaluated without overflow.")
silu = _op_function("silu", "x · σ(x) (swish).")
exp = _op_function("exp", "e^x.")
log = _op_function("log", "Natural logarithm.")
log1p = _op_function("log1p", "log(1 + x), accurate for small x.")
sqrt = _op_function("sqrt", "Square root.")
abs = _op_function("abs", "|x|.")  # noqa: A001  (the NumPy name)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU x·Φ(x): exact, with the error function, by default; ``approximate="tanh"`` for
    x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), as PyTorch's ``gelu``."""
    if approximate not in ("none", "tanh"):
        raise GraphError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return x.graph.apply("gelu", [x], {"approximate": approximate})


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """x for x > 0, else αx."""
    return x.graph.apply("leaky_relu", [x], {"alpha": _real(alpha, "leaky_relu alpha")})


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, else α(e^x − 1)."""
    return x.graph.apply("elu", [x], {"alpha": _real(alpha, "elu alpha")})


def _real(value, what) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GraphError(f"{what} must be a real number, got {value!r}")
    return float(value)


gelu.op, leaky_relu.op, elu.op = "gelu", "leaky_relu", "elu"


def maximum(a, b) -> Tensor:
    """Elementwise maximum; a Python number on either side is allowed."""
    return _graph_of(a, b).apply("maximum", [a, b])


def minimum(a, b) -> Tensor:
    """Elementwise minimum."""
    return _graph_of(a, b).apply("minimum", [a, b])


def where(cond, a, b) -> Tensor:
    """``a`` where ``cond`` holds (or is > 0), else ``b``; only the selected branch gets gradient."""
    return _graph_of(cond, a, b).apply("where", [cond, a, b])


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / Σ exp(x) along ``axis``, shifted by the max so it cannot overflow."""
    return x.graph.apply("softmax", [x], {"axis": normalize_axis(axis, x.ndim)[0]})


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x − log Σ exp(x) along ``axis`` (log-sum-exp, stable for any logits)."""
    return x.graph.apply("log_softmax", [x], {"axis": normalize_axis(axis, x.ndim)[0]})


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    return tensors[0].graph.apply("concat", tensors, {"axis": normalize_axis(axis, tensors[0].ndim)[0]})


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    tensors = list(tensors)
    return tensors[0].graph.apply("stack", tensors, {"axis": normalize_axis(axis, tensors[0].ndim + 1)[0]})


softmax.op, log_softmax.op, maximum.op, minimum.op, where.op = "softmax", "log_softmax", "maximum", "minimum", "where"


def _graph_of(*values):
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
    raise GraphError("at least one argument must be a Tensor")


# -- losses and penalties --------------------------------------------------------
def softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over the batch of −log softmax(logits)[label].

    ``labels`` are integer class indices of shape ``logits.shape[:-1]``, or
    probabilities shaped like ``logits``.  Computed with log-sum-exp, so
    logits of 1e4 give a finite loss and gradient.
    """
    if labels.dtype.startswith("int"):
        if labels.shape != logits.shape[:-1]:
            raise GraphError(f"softmax_cross_entropy: labels {labels.node!r} have shape {labels.shape}, "
                             f"logits {logits.node!r} need {logits.shape[:-1]}")
        targets = logits.graph.apply("one_hot", [labels], {"num_classes": logits.shape[-1]})
    else:
        targets = labels
    if isinstance(targets, Tensor) and targets.shape == logits.shape and targets.dtype.startswith("float"):
        # one primitive (a log-sum-exp kernel), its vjp (softmax − targets) / rows as graph ops
        return logits.graph.apply("softmax_cross_entropy", [logits, targets])
    return -(targets * log_softmax(logits)).sum(axis=-1).mean()


def mse(pred: Tensor, target) -> Tensor:
    """Mean squared error over all elements (PyTorch's MSELoss)."""
    diff = pred - target
    return (diff * diff).mean()


def binary_cross_entropy(logits: Tensor, targets) -> Tensor:
    """Mean binary cross-entropy on logits: softplus(z) − z·t, stable for any z (BCEWithLogitsLoss)."""
    return (softplus(logits) - logits * targets).mean()


def l1(tensors) -> Tensor:
    """Σ |w| over all tensors (an L1 penalty to add to a loss)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    return _sum_all(abs(t).sum() for t in tensors)


def l2(tensors) -> Tensor:
    """Σ w² over all tensors (an L2 penalty; PyTorch's weight_decay λ equals λ/2 · l2)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    return _sum_all((t * t).sum() for t in tensors)


def _sum_all(terms):
    terms = list(terms)
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
