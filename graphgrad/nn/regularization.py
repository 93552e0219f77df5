"""Regularization layers: inverted Dropout and BatchNorm, both with a training and an evaluation mode.

Mode-dependent values are ``train_eval`` nodes, resolved when compiling with
``training=True`` or ``False``; BatchNorm's running statistics are
non-trainable params written by ``assign`` nodes, kept only in training mode.
"""
from __future__ import annotations

import zlib

from .. import functional as F
from ..errors import GraphError
from .layers import Layer


def train_eval(training_value, eval_value):
    return training_value.graph.apply("train_eval", [training_value, eval_value])


class Dropout(Layer):
    """Zero each element with probability ``rate`` and scale the rest by 1 / (1 − rate); identity in eval mode.

    Masks come from a generator seeded by ``seed`` (default: derived from the layer's
    name), so a compiled step draws the same sequence of masks on every run.
    """

    def __init__(self, rate, seed=None, name=None):
        super().__init__(name)
        if not 0 <= rate < 1:
            raise GraphError(f"Dropout rate must lie in [0, 1), got {rate}")
        self.rate, self.seed = float(rate), seed

    def build(self, x):
        if self.seed is None:
            self.seed = zlib.crc32(self.name.encode())  # distinct layers draw distinct masks

    def forward(self, x):
        if self.rate == 0:
            return x
        mask = x.graph.apply("dropout_mask", [x], {"rate": self.rate, "seed": int(self.seed)})
        return train_eval(x * mask, x)


class BatchNorm(Layer):
    """Batch normalization over every axis but the channels (axis 1), with PyTorch's semantics.

    Training: normalize by the batch mean and biased variance (the gradient flows
    through both), then update ``running_mean`` and ``running_var`` (the unbiased
    variance) with ``momentum``; ``momentum=None`` keeps their cumulative average instead,
    counting the batches in ``num_batches_tracked``.  Evaluation: normalize by the running statistics.
    """

    def __init__(self, momentum=0.1, eps=1e-5, name=None):
        super().__init__(name)
        self.momentum, self.eps = momentum, eps

    def build(self, x):
        if x.ndim < 2 or x.shape[1] is None:
            raise GraphError(f"BatchNorm {self.name!r} needs (N, C, ...) input with known C, got shape {x.shape}")
        c = x.shape[1]
        self.gamma = self.param("gamma", (c,), init="ones")
        self.beta = self.param("beta", (c,), init="zeros")
        self.running_mean = self.param("running_mean", (c,), init="zeros", trainable=False)
        self.running_var = self.param("running_var", (c,), init="ones", trainable=False)
        if self.momentum is None:
            self.num_batches_tracked = self.param("num_batches_tracked", (), init="zeros", trainable=False)

    def forward(self, x):
        c = self.gamma.shape[0]
        if x.ndim < 2 or x.shape[1] != c:
            raise GraphError(f"BatchNorm {self.name!r} normalizes {c} channels, got input shape {x.shape}")
        axes = (0,) + tuple(range(2, x.ndim))
        along_channels = (1, c) + (1,) * (x.ndim - 2)
        # the statistics are one primitive (also read by the running statistics); the rest is a
        # per-channel scale and shift, x·scale + shift, which fuses with what follows (ReLU, a residual)
        stats = x.graph.apply("batch_norm_stats", [x])
        scale = self.gamma / F.sqrt(stats[1] + self.eps)
        shift = self.beta - stats[0] * scale
        running_scale = self.gamma / F.sqrt(self.running_var + self.eps)
        running_shift = self.beta - self.running_mean * running_scale
        self._update_running_stats(x, stats[0], stats[1], axes)
        scale, shift = train_eval(scale, running_scale), train_eval(shift, running_shift)
        return x * scale.reshape(along_channels) + shift.reshape(along_channels)

    def _update_running_stats(self, x, mean, var, axes):
        n = x.graph.apply("axis_size", [x], {"axis": axes})  # the batch size is known only at call time
        unbiased = var * (n / (n - 1.0))
        m = self.momentum
        if m is None:  # the k-th batch weighs 1/k
            count = self.num_batches_tracked + 1.0
            x.graph.apply("assign", [count], {"target": "params", "key": self.num_batches_tracked.node},
                          name="update_num_batches_tracked")
            m = 1.0 / count
        for stat, value in ((self.running_mean, mean), (self.running_var, unbiased)):
            x.graph.apply("assign", [(1 - m) * stat + m * value], {"target": "params", "key": stat.node},
                          name=f"update_{stat.node.rsplit('.', 1)[1]}")


def has_batch_norm(graph) -> bool:
    """Whether the graph normalizes by batch statistics in training (a batch of one cannot be)."""
    return any(d.get("op") == "batch_norm_stats" for _, d in graph.nx.nodes(data=True))
