"""NumPy helpers that structural ops emit calls to.

This module's source is pasted into generated modules, so it imports numpy
only and nothing else.
"""
import numpy as np


def softmax_lastdims(x, axis):
    """Softmax along ``axis``, shifted by the max so that exp never overflows."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax_lastdims(x, axis):
    """log(softmax(x)) as x − max − log Σ exp(x − max): finite for any finite logits."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def scatter_into_zeros(g, like, index):
    """Zeros shaped like ``like`` with ``g`` written at ``index``: the vjp of indexing."""
    out = np.zeros(like.shape, dtype=g.dtype)
    out[index] = g
    return out


def one_hot(labels, num_classes, dtype):
    """Rows of the identity picked by integer labels; a label out of range raises IndexError."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise IndexError(f"labels must lie in [0, {num_classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    return np.eye(num_classes, dtype=dtype)[labels]
