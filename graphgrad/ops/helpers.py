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


def work_array(state, name, shape, dtype):
    """Scratch array ``name`` kept in the compiled function's ``state`` between calls (a new one without
    ``state``), for a kernel's temporaries that never leave it: reused memory is still in cache."""
    if state is None:
        return np.empty(shape, dtype)
    arrays = state.setdefault("_work_arrays", {})
    key = (name, tuple(shape), np.dtype(dtype).str)
    if key not in arrays:
        arrays[key] = np.empty(shape, dtype)
    return arrays[key]


_ONES = {}


def _ones(n, dtype):
    """A read-only vector of ``n`` ones, kept between calls."""
    key = (n, dtype)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = np.ones(n, dtype=dtype)
        ones.flags.writeable = False
    return ones


def reduce_sum(x, axis, keepdims, k0, k1):
    """np.sum over ``axis`` when the kept axes are the block ``k0:k1`` (bias and channel sums;
    ``k1`` None: to the end, else the axes from ``k1`` on are all reduced): a contiguous float
    array is summed by matrix-vector products against ones, which BLAS does in one read where
    np.sum over a leading axis walks the rows; anything else is np.sum."""
    if (x.dtype.kind != "f" or not x.flags.c_contiguous or not x.size
            or k1 is not None and axis[-1] != x.ndim - 1 or k1 is None and k0 >= x.ndim):
        return np.sum(x, axis=axis, keepdims=keepdims)  # (the last: a full reduction, kept a NumPy scalar)
    shape = x.shape
    if k1 is None:
        k1 = x.ndim
    a = 1
    for d in shape[:k0]:
        a *= d
    k = 1
    for d in shape[k0:k1]:
        k *= d
    b = x.size // (a * k)
    if a == 1 and b == 1:  # nothing is summed: np.sum copies, a reshape would be a view
        return np.sum(x, axis=axis, keepdims=keepdims)
    out = x.reshape(a * k, b) @ _ones(b, x.dtype) if b > 1 else x.reshape(a, k)
    if a > 1:
        out = _ones(a, x.dtype) @ out.reshape(a, k)
    if keepdims:
        return out.reshape((1,) * k0 + shape[k0:k1] + (1,) * (len(shape) - k1))
    return out.reshape(shape[k0:k1])


def reduce_mean(x, axis, keepdims, k0, k1):
    """np.mean over ``axis`` by way of `reduce_sum`; a float array keeps its dtype."""
    if (x.dtype.kind != "f" or not x.flags.c_contiguous or not x.size
            or k1 is not None and axis[-1] != x.ndim - 1 or k1 is None and k0 >= x.ndim):
        return np.mean(x, axis=axis, keepdims=keepdims)
    total = reduce_sum(x, axis, keepdims, k0, k1)  # a fresh array
    return np.divide(total, x.size // total.size, out=total)


def softmax_xent(logits, targets):
    """Mean over all leading positions of −Σ targets · log_softmax(logits) along the last axis."""
    c = logits.shape[-1]
    z = logits.reshape(-1, c)
    t = targets.reshape(-1, c)
    shifted = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    n = z.shape[0]
    return (t.sum(axis=1) @ lse - np.vdot(t, shifted)) / n
