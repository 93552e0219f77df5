"""NumPy helpers for the layer ops that `graphgrad.kernels` does not cover: dropout masks
and batch normalization.

This module's source is pasted into generated modules, so it imports numpy and `helpers` only.
"""
import numpy as np

from .helpers import work_array


def dropout_mask(x, rate, seed, state):
    """An inverted-dropout mask shaped like ``x``: 0 with probability ``rate``, else 1 / (1 − rate).

    The generator lives in the compiled function's own ``state`` dict, created from
    ``seed`` on first use: every compiled step (and every fresh run of a saved
    module) draws the same sequence of masks.
    """
    key = f"dropout_rng:{seed}"
    rng = state.get(key)
    if rng is None:
        rng = state[key] = np.random.default_rng(seed)
    keep = rng.random(x.shape, dtype=np.float32) >= rate
    return keep.astype(x.dtype) * (1.0 / (1.0 - rate))  # a Python float: float32 stays float32


def _channel_sums(x):
    """Σ over every axis but 1 of an (N, C, ...) array, as two matrix-vector products against ones."""
    n, c = x.shape[0], x.shape[1]
    b = x.size // (n * c) if n * c else 0
    rows = x.reshape(n * c, b) @ np.ones(b, dtype=x.dtype) if b != 1 else x.reshape(n * c)
    return np.ones(n, dtype=x.dtype) @ rows.reshape(n, c)


def _channel_sum_squares(d):
    """Σ d² per channel (axis 1) over every other axis: a row-wise dot (no squared temporary), then a GEMV."""
    n, c = d.shape[0], d.shape[1]
    rows = d.reshape(n * c, -1)
    return np.ones(n, dtype=d.dtype) @ np.einsum("ij,ij->i", rows, rows).reshape(n, c)


def batch_norm_stats(x, state):
    """Rows (mean, biased variance) per channel (axis 1) of ``x``, over every other axis (two-pass,
    the centred values in a work array of ``state``)."""
    c = x.shape[1]
    if x.size == c:  # as PyTorch: the variance of one value is no statistic (and n / (n - 1) divides by 0)
        raise ValueError(f"BatchNorm in training needs more than 1 value per channel, got input shape {x.shape}")
    mean = _channel_sums(x) / (x.size // c)
    centered = work_array(state, "batch_norm_centered", x.shape, x.dtype)
    np.subtract(x, mean.reshape((1, c) + (1,) * (x.ndim - 2)), out=centered)
    return np.stack([mean, _channel_sum_squares(centered) / (x.size // c)])
