"""Shape rules shared by many ops: broadcasting with a symbolic batch dimension."""
from __future__ import annotations


def broadcast_shapes(*shapes) -> tuple:
    """NumPy broadcasting where ``None`` (the batch) broadcasts with 1 and with itself."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for dims in zip(*[(1,) * (ndim - len(s)) + tuple(s) for s in shapes]):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError("shapes do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def unbroadcast(t, shape):
    """Sum ``t`` over the axes that broadcasting added to ``shape``: the vjp of broadcasting."""
    shape = tuple(shape)
    if t.shape == shape:
        return t
    lead = len(t.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and t.shape[lead + i] != 1)
    summed = t.sum(axis=axes, keepdims=True) if axes else t
    return summed if summed.shape == shape else summed.reshape(shape)
