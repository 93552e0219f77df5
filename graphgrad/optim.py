"""Optimizers compiled into the training step: each update rule is graph ops ending in ``assign``.

Update formulas and defaults follow ``torch.optim`` (SGD with momentum or
nesterov, Adagrad, RMSprop, Adam, AdamW), so the same settings give the same steps.
"""
from __future__ import annotations

from . import functional as F


class Optimizer:
    """Base: ``build`` adds the update of every param to the graph.

    ``clip_norm`` rescales all gradients together when their global L2 norm
    exceeds it (``torch.nn.utils.clip_grad_norm_``); ``weight_decay`` adds
    ``weight_decay * p`` to each gradient, as torch's optimizers do.
    """

    def __init__(self, lr, clip_norm=None, weight_decay=0.0):
        self.lr, self.clip_norm, self.weight_decay = lr, clip_norm, weight_decay

    def build(self, graph, params, grads):
        self.graph = graph
        if self.clip_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_norm)
        with graph.scope(type(self).__name__.lower()):
            self.prepare()
            for p, g in zip(params, grads):
                if self.weight_decay:
                    g = g + self.weight_decay * p
                with graph.scope(p.node):
                    graph.apply("assign", [self.update(p, g)], {"target": "params", "key": p.node}, name="update")

    def gradient_scale(self) -> float:
        """The factor ``build`` receives the gradients scaled by (the seed of the chain rule)."""
        return 1.0

    def prepare(self):
        """Per-step work shared by all params (a step counter)."""

    def update(self, p, g):
        """The new value of ``p`` given its gradient ``g``."""
        raise NotImplementedError

    def slot(self, p, kind, value_fn, fill=0.0):
        """Optimizer state shaped like ``p``: read the old value, schedule the write of the new one."""
        name = self.graph.unique_name(f"{type(self).__name__.lower()}.{kind}/{p.node}")
        old = self.graph._source("state", name, p.shape, p.dtype, {"fill": fill})
        new = value_fn(old)
        self.graph.apply("assign", [new], {"target": "state", "key": name}, name=f"{kind}_update")
        return new


def clip_by_global_norm(grads, max_norm):
    total = F.sqrt(F.l2(grads))
    scale = F.minimum(max_norm / (total + 1e-6), 1.0)
    return [g * scale for g in grads]


class SGD(Optimizer):
    """p ← p − lr·g.

    ``l1=λ`` adds the proximal step of an L1 penalty λ·Σ|p| (ISTA): after the gradient step every
    weight moves lr·λ towards zero and stops there, so a weight the data does not hold up becomes
    exactly 0. (``gg.l1`` in the loss instead gives the subgradient λ·sign(p), which leaves such
    weights jittering within lr·λ of zero.)

    The chain rule is linear in its seed, so plain SGD seeds the backward pass with lr and
    receives lr·g directly: no pass scaling each gradient (as hand-written trainers do).
    """

    def __init__(self, lr=1e-3, clip_norm=None, weight_decay=0.0, l1=0.0):
        super().__init__(lr, clip_norm, weight_decay)
        self.l1 = l1

    def gradient_scale(self) -> float:
        plain = self.clip_norm is None and not self.weight_decay  # both need the unscaled gradient
        return self.lr if plain else 1.0

    def update(self, p, g):
        folded = self.gradient_scale() == self.lr  # g is lr·g already (also right when lr is 1)
        q = p - g if folded else p - self.lr * g
        if not self.l1:
            return q
        reach = self.lr * self.l1
        return q - F.minimum(F.maximum(q, -reach), reach)  # soft-thresholding: 0 wherever |q| ≤ lr·λ


class Momentum(Optimizer):
    """b ← μb + g; p ← p − lr·b (torch SGD with momentum, no dampening).

    lr defaults to torch SGD's 1e-3; momentum to 0.9, as torch's 0 would be plain SGD.
    """

    def __init__(self, lr=1e-3, momentum=0.9, clip_norm=None, weight_decay=0.0):
        super().__init__(lr, clip_norm, weight_decay)
        self.momentum = momentum

    def update(self, p, g):
        b = self.slot(p, "momentum", lambda b: self.momentum * b + g)
        return p - self.lr * b


class Nesterov(Momentum):
    """b ← μb + g; p ← p − lr·(g + μb) (torch SGD with nesterov=True)."""

    def update(self, p, g):
        b = self.slot(p, "momentum", lambda b: self.momentum * b + g)
        return p - self.lr * (g + self.momentum * b)


class AdaGrad(Optimizer):
    """s ← s + g²; p ← p − lr·g / (√s + ε) (torch Adagrad)."""

    def __init__(self, lr=0.01, eps=1e-10, initial_accumulator_value=0.0, clip_norm=None, weight_decay=0.0):
        super().__init__(lr, clip_norm, weight_decay)
        self.eps, self.initial = eps, initial_accumulator_value

    def update(self, p, g):
        s = self.slot(p, "sum", lambda s: s + g * g, fill=self.initial)
        return p - self.lr * g / (F.sqrt(s) + self.eps)


class RMSProp(Optimizer):
    """v ← αv + (1 − α)g²; p ← p − lr·g / (√v + ε) (torch RMSprop)."""

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, clip_norm=None, weight_decay=0.0):
        super().__init__(lr, clip_norm, weight_decay)
        self.alpha, self.eps = alpha, eps

    def update(self, p, g):
        v = self.slot(p, "square_avg", lambda v: self.alpha * v + (1 - self.alpha) * g * g)
        return p - self.lr * g / (F.sqrt(v) + self.eps)


class Adam(Optimizer):
    """m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
    p ← p − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε) (torch Adam).
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, clip_norm=None, weight_decay=0.0):
        super().__init__(lr, clip_norm, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def gradient_scale(self) -> float:
        """The factor ``build`` receives the gradients scaled by (the seed of the chain rule)."""
        return 1.0

    def prepare(self):
        name = self.graph.unique_name("adam.t")
        t_old = self.graph._source("state", name, (), "float32", {"fill": 0.0})
        self.t = t_old + 1.0
        self.graph.apply("assign", [self.t], {"target": "state", "key": name}, name="t_update")

    def update(self, p, g):
        m = self.slot(p, "m", lambda m: self.beta1 * m + (1 - self.beta1) * g)
        v = self.slot(p, "v", lambda v: self.beta2 * v + (1 - self.beta2) * g * g)
        correction1 = 1 - self.graph.const(self.beta1) ** self.t
        correction2 = 1 - self.graph.const(self.beta2) ** self.t
        return self.decay(p) - (self.lr / correction1) * m / (F.sqrt(v) / F.sqrt(correction2) + self.eps)

    def decay(self, p):
        return p


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p(1 − lr·λ) before the Adam step (torch AdamW, λ = 0.01)."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, clip_norm=None, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, clip_norm, 0.0)
        self.decoupled = weight_decay

    def decay(self, p):
        return p * (1 - self.lr * self.decoupled)
