"""Structural ops: each carries its shape rule, its NumPy emission and its
vector-Jacobian rules side by side.  The vjp rules are written with graph
ops, so gradients are graph nodes and can be differentiated again.
"""
from __future__ import annotations

import numpy as np

from . import helpers
from .registry import Op, register, same_dtype_as_first
from .shapes import broadcast_shapes, unbroadcast


def _no_shape(shapes, attrs):
    raise ValueError("source nodes are created by Graph.input/param/const, not applied")


def _source(name, doc):
    register(Op(name=name, shape=_no_shape, emit=None, arity=0, source=True, doc=doc))


_source("input", "a value fed at call time")
_source("param", "a parameter read from the params dict")
_source("const", "a constant embedded in the generated code")


def _bool(dtypes, attrs):
    return "bool"


def _compare(name, symbol):
    register(Op(name=name, shape=lambda s, a: broadcast_shapes(*s), arity=2, dtype=_bool,
                emit=lambda args, attrs: f"({args[0]} {symbol} {args[1]})", vjps=(None, None),
                doc=f"a {symbol} b, boolean, no derivative"))


_compare("greater", ">")
_compare("greater_equal", ">=")
_compare("equal", "==")

register(Op(
    name="cast", arity=1, shape=lambda s, a: s[0], dtype=lambda d, a: a["to"],
    local_derivative=("ḡ",),
    emit=lambda args, a: f"{args[0]}.astype(np.{a['to']})",
    vjps=(lambda g, args, out, a: g if args[0].dtype.startswith("float") else None,),
    doc="change the dtype", test_attrs={"to": "float64"},
))


# -- matmul -------------------------------------------------------------------
def _swap_last(t):
    axes = list(range(t.ndim))
    axes[-2:] = axes[-1], axes[-2]
    return t.transpose(*axes)


def _matmul_shape(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or len(b) < 2:
        raise ValueError("matmul needs operands of rank 2 or more (`@` also takes 1-D ones)")
    if a[-1] != b[-2]:
        raise ValueError(f"inner dimensions differ: {a[-1]} vs {b[-2]}")
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


register(Op(
    name="matmul", arity=2, shape=_matmul_shape, emit=lambda args, a: f"{args[0]} @ {args[1]}", fresh=True,
    local_derivative=("ḡ·bᵀ", "aᵀ·ḡ"),
    emit_into=lambda args, a, out: f"np.matmul({args[0]}, {args[1]}, out={out})",
    vjps=(lambda g, args, out, a: unbroadcast(g @ _swap_last(args[1]), args[0].shape),
          lambda g, args, out, a: unbroadcast(_swap_last(args[0]) @ g, args[1].shape)),
    dtype=same_dtype_as_first, doc="matrix product, batched over leading axes", test_shapes=((2, 3, 4), (4, 5)),
))


# -- layout ---------------------------------------------------------------------
def _transpose_shape(shapes, attrs):
    (s,), axes = shapes, attrs["axes"]
    if sorted(axes) != list(range(len(s))):
        raise ValueError(f"axes {axes} are not a permutation of {len(s)} axes")
    return tuple(s[i] for i in axes)


register(Op(
    name="transpose", arity=1, shape=_transpose_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡᵀ (axes put back)",),
    emit=lambda args, a: f"{args[0]}.transpose({tuple(a['axes'])})",
    vjps=(lambda g, args, out, a: g.transpose(*np.argsort(a["axes"]).tolist()),),
    doc="permute axes", test_attrs={"axes": (1, 0)},
))


def _reshape_shape(shapes, attrs):
    (s,), target = shapes, tuple(attrs["shape"])
    if sum(d is None or d == -1 for d in target) > 1:
        raise ValueError(f"target shape {target} has more than one unknown dimension")
    known_in = [d for d in s if d is not None]
    if (None in target) != (None in s) and -1 not in target:
        raise ValueError(f"cannot reshape to {target}: the batch dimension must be kept")
    size_in = int(np.prod(known_in))
    size_out = int(np.prod([d for d in target if d not in (None, -1)]))
    if -1 in target:
        if None in s or size_out == 0 or size_in % size_out:
            raise ValueError(f"cannot infer -1 in {target}")
        return tuple(size_in // size_out if d == -1 else d for d in target)
    if size_in != size_out:
        raise ValueError(f"cannot reshape {size_in} elements into {target}")
    return target


register(Op(
    name="reshape", arity=1, shape=_reshape_shape, dtype=same_dtype_as_first, view=True,
    local_derivative=("ḡ reshaped back",),
    emit=lambda args, a: f"{args[0]}.reshape({tuple(-1 if d is None else d for d in a['shape'])})",
    vjps=(lambda g, args, out, a: g.reshape(args[0].shape),),
    doc="reshape; None (the batch) becomes -1", test_attrs={"shape": (2, 6)},
))


def _broadcast_like_shape(shapes, attrs):
    broadcast_shapes(*shapes)
    return shapes[1]


register(Op(
    name="broadcast_like", arity=2, shape=_broadcast_like_shape, dtype=same_dtype_as_first,
    local_derivative=("Σ ḡ over the broadcast axes", None),
    emit=lambda args, a: f"np.broadcast_to({args[0]}, {args[1]}.shape)",
    vjps=(lambda g, args, out, a: unbroadcast(g, args[0].shape), None),
    doc="broadcast a to the shape of b (b gives only its shape)", test_shapes=((1, 4), (3, 4)),
))


# -- reductions -------------------------------------------------------------------
def _reduce_shape(shapes, attrs):
    (s,), axis = shapes, attrs["axis"]
    if any(not 0 <= a < len(s) for a in axis):
        raise ValueError(f"axis {axis} out of range")
    if attrs.get("keepdims"):
        return tuple(1 if i in axis else d for i, d in enumerate(s))
    return tuple(d for i, d in enumerate(s) if i not in axis)


def _kept(g, x, attrs):
    """The cotangent ``g`` of a reduction with the reduced axes put back as size 1."""
    shape = tuple(1 if i in attrs["axis"] else d for i, d in enumerate(x.shape))
    return g if g.shape == shape else g.reshape(shape)


def _emit_reduce(fn):
    return lambda args, a: f"np.{fn}({args[0]}, axis={tuple(a['axis'])}, keepdims={bool(a.get('keepdims'))})"


def _kept_block(axis):
    """``(k0, k1)`` when the reduced axes are a leading run ``0:k0`` and a trailing run from ``k1``
    (``k1`` None: no trailing run), so the kept axes are one block; None otherwise."""
    axis = sorted(axis)
    k0 = 0
    while k0 < len(axis) and axis[k0] == k0:
        k0 += 1
    rest = axis[k0:]
    if not axis or rest and rest != list(range(rest[0], rest[0] + len(rest))):
        return None
    return k0, (rest[0] if rest else None)


def _emit_fast_reduce(fn):
    """Sums whose kept axes are one block (bias and channel sums) as products against ones."""
    plain = _emit_reduce(fn)

    def emit(args, a):
        block = _kept_block(a["axis"])
        if block is None:
            return plain(args, a)
        axis = tuple(sorted(a["axis"]))
        return f"reduce_{fn}({args[0]}, {axis}, {bool(a.get('keepdims'))}, {block[0]}, {block[1]})"
    return emit


def _max_vjp(g, args, out, attrs):
    x = args[0]
    ties = x.graph.apply("equal", [x, x.graph.apply("broadcast_like", [_kept(out, x, attrs), x])]).astype(x.dtype)
    share = _kept(g, x, attrs) / ties.sum(axis=attrs["axis"], keepdims=True)
    return ties * share  # ties share the gradient, as in torch.amax


def _mean_dtype(dtypes, attrs):
    if not dtypes[0].startswith("float"):  # NumPy's mean of integers is float64: which float is the user's call
        raise ValueError(f"mean needs a float tensor, got {dtypes[0]} (as in PyTorch); "
                         "cast it first: x.astype('float32')")
    return dtypes[0]


register(Op(
    name="sum", arity=1, shape=_reduce_shape, dtype=same_dtype_as_first, emit=_emit_fast_reduce("sum"), fresh=True,
    local_derivative=("ḡ broadcast back",),
    kernels=(helpers.reduce_sum,),
    vjps=(lambda g, args, out, a: g.graph.apply("broadcast_like", [_kept(g, args[0], a), args[0]]),),
    doc="sum over axes", test_attrs={"axis": (1,)},
))
register(Op(
    name="mean", arity=1, shape=_reduce_shape, dtype=_mean_dtype, emit=_emit_fast_reduce("mean"), fresh=True,
    local_derivative=("ḡ/n broadcast back",),
    kernels=(helpers.reduce_mean,),
    vjps=(lambda g, args, out, a: g.graph.apply("mean_grad", [_kept(g, args[0], a), args[0]]),),
    doc="mean over axes", test_attrs={"axis": (0,)},
))
def _inner_shape(shapes, attrs):
    if tuple(shapes[0]) != tuple(shapes[1]):
        raise ValueError(f"inner product of shapes {shapes[0]} and {shapes[1]}: they must be equal")
    return ()


def _inner_vjp(index):
    def vjp(g, args, out, attrs):
        other = args[1 - index]
        if attrs["mean"]:
            g = g / g.graph.apply("axis_size", [other], {"axis": tuple(range(other.ndim))})
        return g * other
    return vjp


register(Op(
    name="inner", arity=2, shape=_inner_shape, dtype=same_dtype_as_first, vjps=_inner_vjp, fresh=True,
    local_derivative=("ḡ·b (÷ n when mean)", "ḡ·a (÷ n when mean)"),
    emit=lambda args, a: f"np.vdot({args[0]}, {args[1]})" + (f" / {args[0]}.size" if a["mean"] else ""),
    test_attrs={"mean": True},
    doc="Σ a·b over all elements (÷ their count when mean): one BLAS dot, no product array",
))


def _mean_grad_vjp(g, args, out, attrs):
    small, like = args
    axes = [i for i, d in enumerate(small.shape) if d == 1 and like.shape[i] != 1]
    return g.mean(axis=axes, keepdims=True) if axes else g


register(Op(
    name="mean_grad", arity=2, shape=_broadcast_like_shape, dtype=same_dtype_as_first,
    local_derivative=("Σ ḡ / n", None),
    emit=lambda args, a: f"np.broadcast_to({args[0]} / ({args[1]}.size // {args[0]}.size), {args[1]}.shape)",
    vjps=(_mean_grad_vjp, None), test_shapes=((3, 1), (3, 4)),
    doc="the vjp of mean: a spread evenly over b's shape (b gives only its shape)",
))
register(Op(
    name="max", arity=1, shape=_reduce_shape, dtype=same_dtype_as_first, emit=_emit_reduce("max"),
    local_derivative=("ḡ·[a = max a]",),
    vjps=(_max_vjp,), domain=("distinct",), doc="max over axes; ties share the gradient", test_attrs={"axis": (1,)},
))


# -- indexing and joining ----------------------------------------------------------
def _index_source(index) -> str:
    parts = []
    for item in index:
        if isinstance(item, tuple):
            _, start, stop, step = item
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts.append(text + (f":{step}" if step is not None else ""))
        else:
            parts.append(str(item))
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _getitem_shape(shapes, attrs):
    (s,), index = shapes, attrs["index"]
    out = []
    for i, d in enumerate(s):
        item = index[i] if i < len(index) else ("slice", None, None, None)
        if not isinstance(item, tuple):
            if d is not None and not -d <= item < d:
                raise ValueError(f"index {item} out of range for axis {i} of size {d}")
            continue
        if d is None:
            if item[1:] != (None, None, None):
                raise ValueError("the batch dimension can only be sliced whole")
            out.append(None)
        else:
            out.append(len(range(*slice(*item[1:]).indices(d))))
    return tuple(out)


def emit_index(index):
    return "(" + ", ".join(f"slice{item[1:]}" if isinstance(item, tuple) else str(item) for item in index) + ",)"


register(Op(
    name="getitem", arity=1, shape=_getitem_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ scattered into zeros",),
    emit=lambda args, a: f"{args[0]}[{_index_source(a['index'])}]",
    vjps=(lambda g, args, out, a: g.graph.apply("scatter", [g, args[0]], {"index": a["index"]}),),
    doc="basic indexing by slices and integers", test_attrs={"index": (("slice", 1, None, None), 2)},
))
register(Op(
    name="scatter", arity=2, shape=lambda s, a: s[1], dtype=same_dtype_as_first, kernels=(helpers.scatter_into_zeros,),
    local_derivative=("ḡ[index]", None),
    # the cotangent may be a Python float (the seed of a scalar output): give it the step's float dtype
    emit=lambda args, a: f"scatter_into_zeros(np.asarray({args[0]}, F), {args[1]}, {emit_index(a['index'])})",
    vjps=(lambda g, args, out, a: g[tuple(_as_index(a["index"]))], None),
    doc="the vjp of getitem: a written into zeros shaped like b", test_shapes=((2,), (3, 4)),
    test_attrs={"index": (("slice", 1, None, None), 2)},
))


def _as_index(index):
    return [slice(*item[1:]) if isinstance(item, tuple) else item for item in index]


def _concat_shape(shapes, attrs):
    axis = attrs["axis"]
    first = shapes[0]
    for s in shapes:
        if len(s) != len(first) or any(d != e for i, (d, e) in enumerate(zip(s, first)) if i != axis):
            raise ValueError(f"all shapes must agree except on axis {axis}")
    if any(s[axis] is None for s in shapes):
        raise ValueError("cannot concatenate along the batch dimension")
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]


def _concat_vjp(index):
    def vjp(g, args, out, attrs):
        axis = attrs["axis"]
        start = sum(a.shape[axis] for a in args[:index])
        return g[(slice(None),) * axis + (slice(start, start + args[index].shape[axis]),)]
    return vjp


register(Op(
    name="concat", shape=_concat_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ sliced at its part",),
    emit=lambda args, a: f"np.concatenate([{', '.join(args)}], axis={a['axis']})",
    vjps=_concat_vjp, doc="join along an existing axis", test_shapes=((3, 4), (3, 2)), test_attrs={"axis": 1},
))


def _stack_shape(shapes, attrs):
    if any(s != shapes[0] for s in shapes):
        raise ValueError("all shapes must be equal")
    axis = attrs["axis"]
    return shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]


register(Op(
    name="stack", shape=_stack_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ sliced at its index",),
    emit=lambda args, a: f"np.stack([{', '.join(args)}], axis={a['axis']})",
    vjps=lambda index: lambda g, args, out, a: g[(slice(None),) * a["axis"] + (index,)],
    doc="join along a new axis", test_shapes=((3, 4), (3, 4)), test_attrs={"axis": 1},
))


# -- softmax family ----------------------------------------------------------------
def _softmax_vjp(g, args, out, a):
    return out * (g - (g * out).sum(axis=a["axis"], keepdims=True))


def _log_softmax_vjp(g, args, out, a):
    return g - out.graph.apply("exp", [out]) * g.sum(axis=a["axis"], keepdims=True)


def _axis_shape(shapes, attrs):
    if not 0 <= attrs["axis"] < len(shapes[0]):
        raise ValueError(f"axis {attrs['axis']} out of range")
    return shapes[0]


register(Op(
    name="softmax", arity=1, shape=_axis_shape, dtype=same_dtype_as_first, kernels=(helpers.softmax_lastdims,),
    local_derivative=("y·(ḡ − Σ ḡ·y)",),
    emit=lambda args, a: f"softmax_lastdims({args[0]}, {a['axis']})", vjps=(_softmax_vjp,),
    doc="exp(x) / Σ exp(x) along an axis, max-shifted", test_attrs={"axis": 1},
))
register(Op(
    name="log_softmax", arity=1, shape=_axis_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ − softmax(a)·Σ ḡ",),
    kernels=(helpers.log_softmax_lastdims,), emit=lambda args, a: f"log_softmax_lastdims({args[0]}, {a['axis']})",
    vjps=(_log_softmax_vjp,), doc="x − log Σ exp(x) along an axis (log-sum-exp)", test_attrs={"axis": 1},
))


def _xent_shape(shapes, attrs):
    logits, targets = shapes
    if not logits:
        raise ValueError("softmax_cross_entropy needs logits with a class axis")
    if tuple(targets) != tuple(logits):
        raise ValueError(f"targets {targets} must have the shape of the logits {logits}")
    return ()


def _xent_scale(g, logits):
    """g / (the number of rows averaged over), the batch size known only at call time."""
    if logits.ndim == 1:
        return g
    return g / g.graph.apply("axis_size", [logits], {"axis": tuple(range(logits.ndim - 1))})


def _xent_logits_vjp(g, args, out, a):
    # d/dz of −Σ t · log_softmax(z) along the class axis: softmax(z) Σt − t
    logits, targets = args
    probs = logits.graph.apply("softmax", [logits], {"axis": logits.ndim - 1})
    if targets.op != "one_hot":  # rows of one_hot sum to 1
        probs = probs * targets.sum(axis=logits.ndim - 1, keepdims=True)
    return (probs - targets) * _xent_scale(g, logits)


def _xent_targets_vjp(g, args, out, a):
    logits, _ = args
    return -logits.graph.apply("log_softmax", [logits], {"axis": logits.ndim - 1}) * _xent_scale(g, logits)


register(Op(
    name="softmax_cross_entropy", arity=2, shape=_xent_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ·(softmax(z) − onehot(y))/N", "−ḡ·log_softmax(z)/N"),
    kernels=(helpers.softmax_xent,), emit=lambda args, a: f"softmax_xent({args[0]}, {args[1]})",
    vjps=(_xent_logits_vjp, _xent_targets_vjp),
    doc="mean over the rows of −Σ targets · log_softmax(logits) along the last axis (log-sum-exp); "
        "one node forward, (softmax − targets) / rows backward",
))
register(Op(
    name="one_hot", arity=1, shape=lambda s, a: s[0] + (a["num_classes"],), dtype=lambda d, a: "float32",
    kernels=(helpers.one_hot,), emit=lambda args, a: f"one_hot({args[0]}, {a['num_classes']}, F)",
    vjps=(None,), domain=("labels",), doc="integer labels as rows of the identity", test_attrs={"num_classes": 4},
    test_shapes=((3,),),
))
register(Op(
    name="zeros_like", arity=1, shape=lambda s, a: s[0], dtype=same_dtype_as_first,
    emit=lambda args, a: f"np.zeros_like({args[0]})", vjps=(None,),
    doc="zeros shaped like x: the gradient of a value the output does not depend on",
))


# -- the boundary of a compiled function: results, state, effects and modes ---------
def _same_shape(shapes, attrs):
    return shapes[0]


_source("state", "optimizer state read from the compiled function's own state dict")
register(Op(
    name="output", arity=1, shape=_same_shape, dtype=same_dtype_as_first, effect=True,
    emit=lambda args, a: f"results[{a['key']!r}] = {args[0]}", vjps=(None,),
    doc="marks a value the compiled function returns (key 'out:i' or 'grad:name')",
))
register(Op(
    name="assign", arity=1, shape=_same_shape, dtype=same_dtype_as_first, effect=True, stateful=True,
    emit=lambda args, a: f"{a['target']}[{a['key']!r}][...] = {args[0]}", vjps=(None,),
    doc="writes a value into params or state in place, after everything else has read them",
))


def _train_eval_shape(shapes, attrs):
    if shapes[0] != shapes[1]:
        raise ValueError("the training and evaluation values must have one shape")
    return shapes[0]


def _emit_unresolved(args, attrs):
    raise ValueError("train_eval nodes are resolved by the specialize_mode pass before code generation")


register(Op(
    name="train_eval", arity=2, shape=_train_eval_shape, dtype=same_dtype_as_first, emit=_emit_unresolved,
    local_derivative=("ḡ in training, 0 in eval", "0 in training, ḡ in eval"),
    vjps=(lambda g, args, out, a: g.graph.apply("train_eval", [g, g.graph.apply("zeros_like", [g])]),
          lambda g, args, out, a: g.graph.apply("train_eval", [g.graph.apply("zeros_like", [g]), g])),
    doc="the first value when compiled with training=True, the second otherwise (dropout, batch norm)",
))
