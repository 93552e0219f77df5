"""Convolution, pooling and up-sampling ops (NCHW) over the NumPy kernels of `graphgrad.kernels`.

Every op here is linear in its first argument, so each vjp is another op of
this file (the transpose), written as a graph node: the input-vjp of conv2d
is a ``conv2d_grad_input`` node whose own vjps are ``conv2d`` and
``conv2d_grad_weight``, and so on.  Second derivatives therefore work.
Attributes are (h, w) pairs of ints; the batch dimension may be ``None``.
"""
from __future__ import annotations

from .. import kernels as K
from ..kernels import as_pair as pair, conv_out_len
from .registry import Op, register, same_dtype_as_first


def _image(shape, what="input"):
    if len(shape) != 4:
        raise ValueError(f"{what} must be NCHW (rank 4), got rank {len(shape)}")
    if any(d is None for d in shape[1:]):
        raise ValueError(f"only the batch dimension of an {what} may be unknown")
    return shape


def _check_ranges(khw, attrs):
    """The ranges PyTorch accepts: kernel, stride and dilation at least 1, paddings at least 0."""
    lowest = {"kernel": 1, "stride": 1, "dilation": 1, "padding": 0, "output_padding": 0}
    given = {"kernel": khw, **{k: attrs[k] for k in lowest if k in attrs}}
    for k, v in given.items():
        if min(pair(v)) < lowest[k]:
            raise ValueError(f"{k} {pair(v)} must be at least {lowest[k]}")


def _conv_geometry(hw, khw, attrs):
    """Output (Ho, Wo); a kernel that does not fit in the padded input is an error."""
    _check_ranges(khw, attrs)
    stride, padding, dilation = pair(attrs["stride"]), pair(attrs["padding"]), pair(attrs["dilation"])
    out = []
    for n, k, s, p, d in zip(hw, khw, stride, padding, dilation):
        if d * (k - 1) + 1 > n + 2 * p:
            raise ValueError(f"kernel {tuple(khw)} (dilation {dilation}) is larger than the padded input "
                             f"{hw[0] + 2 * padding[0]}x{hw[1] + 2 * padding[1]}")
        out.append(conv_out_len(n, k, s, p, d))
    return tuple(out)


def _check_channels(have, want, what):
    if have != want:
        raise ValueError(f"channel mismatch: {what} has {have} channels, the weight expects {want}")


def geometry_args(a):
    return f"{pair(a['stride'])}, {pair(a['padding'])}, {pair(a['dilation'])}"


def _geometry(a):
    return {k: pair(a[k]) for k in ("stride", "padding", "dilation")}


# -- conv2d and its two transposes -------------------------------------------------
def _conv2d_shape(shapes, attrs):
    (n, c, h, w), (o, ci, kh, kw) = _image(shapes[0]), _image(shapes[1], "weight")
    _check_channels(c, ci, "the input")
    return (n, o) + _conv_geometry((h, w), (kh, kw), attrs)


def _grad_input_shape(shapes, attrs):
    (n, o, ho, wo), (o2, c, kh, kw) = _image(shapes[0], "gradient"), _image(shapes[1], "weight")
    _check_channels(o, o2, "the output gradient")
    if _conv_geometry(attrs["input_hw"], (kh, kw), attrs) != (ho, wo):
        raise ValueError(f"an input of size {tuple(attrs['input_hw'])} does not give outputs of size {(ho, wo)}")
    return (n, c) + tuple(attrs["input_hw"])


def _grad_weight_shape(shapes, attrs):
    (_, o, ho, wo), (_, c, h, w) = _image(shapes[0], "gradient"), _image(shapes[1])
    if _conv_geometry((h, w), attrs["kernel_hw"], attrs) != (ho, wo):
        raise ValueError(f"an input of size {(h, w)} does not give outputs of size {(ho, wo)}")
    return (o, c) + tuple(attrs["kernel_hw"])


def conv2d(x, w, attrs):
    return x.graph.apply("conv2d", [x, w], _geometry(attrs))


def conv2d_grad_input(gy, w, input_hw, attrs):
    return gy.graph.apply("conv2d_grad_input", [gy, w], {**_geometry(attrs), "input_hw": tuple(input_hw)})


def conv2d_grad_weight(gy, x, kernel_hw, attrs):
    return gy.graph.apply("conv2d_grad_weight", [gy, x], {**_geometry(attrs), "kernel_hw": tuple(kernel_hw)})


CONV_TEST = {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}

register(Op(
    name="conv2d", arity=2, shape=_conv2d_shape, dtype=same_dtype_as_first, kernels=(K.conv2d,),
    local_derivative=("conv_transpose(ḡ, W)", "conv(x, ḡ)"),
    # `state` keeps the kernels' padded planes and columns between calls (and lends the weight
    # gradient the columns its forward built)
    emit=lambda args, a: f"conv2d({args[0]}, {args[1]}, {geometry_args(a)}, workspace=state)",
    vjps=(lambda g, args, out, a: conv2d_grad_input(g, args[1], args[0].shape[2:], a),
          lambda g, args, out, a: conv2d_grad_weight(g, args[0], args[1].shape[2:], a)),
    domain=("real", "real"), test_shapes=((2, 3, 6, 7), (4, 3, 3, 2)), test_attrs=CONV_TEST,
    doc="2-D cross-correlation x (N, C, H, W) ⋆ w (O, C, kh, kw), as torch.nn.functional.conv2d",
))
register(Op(
    name="conv2d_grad_input", arity=2, shape=_grad_input_shape, dtype=same_dtype_as_first,
    local_derivative=("conv(ḡ, W)", "conv(a, ḡ)"),
    kernels=(K.conv2d_grad_input,),
    emit=lambda args, a: (f"conv2d_grad_input({args[0]}, {args[1]}, {tuple(a['input_hw'])}, {geometry_args(a)}, "
                          "workspace=state)"),
    vjps=(lambda g, args, out, a: conv2d(g, args[1], a),
          lambda g, args, out, a: conv2d_grad_weight(args[0], g, args[1].shape[2:], a)),
    domain=("real", "real"), test_shapes=((2, 4, 3, 5), (4, 3, 3, 2)), test_attrs={**CONV_TEST, "input_hw": (6, 7)},
    doc="the vjp of conv2d for its input: gy (N, O, Ho, Wo) spread back through w to (N, C, H, W)",
))
register(Op(
    name="conv2d_grad_weight", arity=2, shape=_grad_weight_shape, dtype=same_dtype_as_first, fresh=True,
    local_derivative=("conv(b, ḡ)", "conv_transpose(a, ḡ)"),
    kernels=(K.conv2d_grad_weight,),
    emit=lambda args, a: (f"conv2d_grad_weight({args[0]}, {args[1]}, {tuple(a['kernel_hw'])}, {geometry_args(a)}, "
                          "workspace=state)"),
    vjps=(lambda g, args, out, a: conv2d(args[1], g, a),
          lambda g, args, out, a: conv2d_grad_input(args[0], g, args[1].shape[2:], a)),
    domain=("real", "real"), test_shapes=((2, 4, 3, 5), (2, 3, 6, 7)), test_attrs={**CONV_TEST, "kernel_hw": (3, 2)},
    doc="the vjp of conv2d for its weight: gy (N, O, Ho, Wo) correlated with x, giving (O, C, kh, kw)",
))


# -- transposed convolution: conv2d's input-vjp with its output size chosen ---------
def transposed_out_hw(hw, khw, attrs):
    """(H − 1)·s − 2p + d·(k − 1) + output_padding + 1 per axis, as in PyTorch."""
    s, p, d, op = (pair(attrs[k]) for k in ("stride", "padding", "dilation", "output_padding"))
    return tuple((n - 1) * s[i] - 2 * p[i] + d[i] * (khw[i] - 1) + op[i] + 1 for i, n in enumerate(hw))


def _conv_transpose_shape(shapes, attrs):
    (n, c, h, w), (ci, o, kh, kw) = _image(shapes[0]), _image(shapes[1], "weight")
    _check_channels(c, ci, "the input")
    _check_ranges((kh, kw), attrs)
    stride, dilation = pair(attrs["stride"]), pair(attrs["dilation"])
    if any(op >= max(s, d) for op, s, d in zip(pair(attrs["output_padding"]), stride, dilation)):
        raise ValueError(f"output_padding {pair(attrs['output_padding'])} must be smaller than the stride "
                         f"{stride} or the dilation {dilation}")
    out = transposed_out_hw((h, w), (kh, kw), attrs)
    if min(out) < 1:
        raise ValueError(f"the output size {out} is not positive")
    return (n, o) + out


def _transpose_attrs(a):
    return {**_geometry(a), "output_padding": pair(a["output_padding"])}


# conv_transpose2d(x, w) is conv2d_grad_input(x, w) for an input of the output's size, so its transposes
# are conv2d (for x) and conv2d_grad_weight with the roles of x and g swapped (for w).  An output_padding
# past the stride (PyTorch allows it below the dilation) adds rows no input row reaches: conv2d(g) then has
# rows past x's, which x's vjp drops and w's vjp meets with zeros.
def _conv_transpose_x_vjp(g, args, out, a):
    x, full = args[0], conv2d(g, args[1], a)
    return full if full.shape[2:] == x.shape[2:] else full[:, :, :x.shape[2], :x.shape[3]]


def _conv_transpose_w_vjp(g, args, out, a):
    x, full = args[0], conv2d(g, args[1], a)  # one node with x's vjp after common subexpressions
    if full.shape[2:] != x.shape[2:]:  # x in zeros of full's size: getitem's transpose, at the crop's index
        x = g.graph.apply("scatter", [x, full], full[:, :, :x.shape[2], :x.shape[3]].attrs)
    return conv2d_grad_weight(x, g, args[1].shape[2:], a)


register(Op(
    name="conv_transpose2d", arity=2, shape=_conv_transpose_shape, dtype=same_dtype_as_first,
    local_derivative=("conv(ḡ, W)", "conv(ḡ, x)"),
    kernels=(K.conv_transpose2d,),
    emit=lambda args, a: (f"conv_transpose2d({args[0]}, {args[1]}, {pair(a['stride'])}, {pair(a['padding'])}, "
                          f"{pair(a['output_padding'])}, {pair(a['dilation'])}, workspace=state)"),
    vjps=(_conv_transpose_x_vjp, _conv_transpose_w_vjp),
    domain=("real", "real"), test_shapes=((2, 3, 3, 4), (3, 2, 3, 3)),
    test_attrs={"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 1), "dilation": (1, 2)},
    doc="transposed convolution x (N, Cin, H, W), w (Cin, Cout, kh, kw), as torch's conv_transpose2d",
))


# -- pooling -------------------------------------------------------------------------
def _pool_attrs(a):
    return {k: pair(a[k]) for k in ("kernel", "stride", "padding")}


def pool_args(a):
    return f"{pair(a['kernel'])}, {pair(a['stride'])}, {pair(a['padding'])}"


def _pool_shape(shapes, attrs):
    n, c, h, w = _image(shapes[0])
    (kh, kw), (sh, sw), (ph, pw) = (pair(attrs[k]) for k in ("kernel", "stride", "padding"))
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    return (n, c) + _conv_geometry((h, w), (kh, kw), {"stride": (sh, sw), "padding": (ph, pw), "dilation": 1})


def _pooled_like_shape(shapes, attrs):
    """Shape rule of an op on (pooled-shaped a, input-shaped x) returning x's shape."""
    if tuple(shapes[0]) != _pool_shape(shapes[1:], attrs):
        raise ValueError(f"a pooled gradient of shape {shapes[0]} does not match an input of shape {shapes[1]}")
    return shapes[1]


def _maxpool_grad_shape(shapes, attrs):
    """(gy, x, y = maxpool2d(x)) -> x's shape."""
    if tuple(shapes[2]) != tuple(shapes[0]):
        raise ValueError(f"the pooled output of shape {shapes[2]} does not match the gradient of shape {shapes[0]}")
    return _pooled_like_shape(shapes[:2], attrs)


def _gather_shape(shapes, attrs):
    if tuple(shapes[0]) != tuple(shapes[1]):
        raise ValueError("the cotangent and the pooled input must have one shape")
    out = _pool_shape(shapes[1:2], attrs)
    if tuple(shapes[2]) != out:
        raise ValueError(f"the pooled output of shape {shapes[2]} does not match the pooled shape {out}")
    return out


POOL_TEST = {"kernel": (2, 3), "stride": (2, 2), "padding": (1, 1)}

register(Op(
    name="maxpool2d", arity=1, shape=_pool_shape, dtype=same_dtype_as_first, kernels=(K.maxpool2d,),
    local_derivative=("ḡ to each window's arg-max",),
    emit=lambda args, a: f"maxpool2d({args[0]}, {pool_args(a)})",
    # the forward output `out` rides along so the backward does not recompute the maxima
    vjps=(lambda g, args, out, a: g.graph.apply("maxpool2d_grad", [g, args[0], out], _pool_attrs(a)),),
    domain=("distinct",), test_shapes=((2, 2, 5, 6),), test_attrs=POOL_TEST,
    doc="max over kh×kw windows; the gradient goes to each window's (first) arg-max",
))
register(Op(
    name="maxpool2d_grad", arity=3, shape=_maxpool_grad_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ read at each window's arg-max", None, None),
    kernels=(K.maxpool2d_grad,),
    emit=lambda args, a: f"maxpool2d_grad({args[0]}, {args[1]}, {pool_args(a)}, {args[2]})",
    vjps=(lambda g, args, out, a: g.graph.apply("maxpool2d_gather", [g, args[1], args[2]], _pool_attrs(a)),
          None, None),
    domain=("real", "distinct", "real"), test_shapes=((2, 2, 3, 3), (2, 2, 5, 6), (2, 2, 3, 3)),
    test_attrs=POOL_TEST,
    doc="the vjp of maxpool2d: gy routed to each window's first position where x equals y = maxpool2d(x) "
        "(its arg-max; x and y give only the routing)",
))
register(Op(
    name="maxpool2d_gather", arity=3, shape=_gather_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ to each window's arg-max", None, None),
    kernels=(K.maxpool2d_gather_at,),
    emit=lambda args, a: f"maxpool2d_gather_at({args[0]}, {args[1]}, {args[2]}, {pool_args(a)})",
    vjps=(lambda g, args, out, a: g.graph.apply("maxpool2d_grad", [g, args[1], args[2]], _pool_attrs(a)),
          None, None),
    domain=("real", "distinct", "real"), test_shapes=((2, 2, 5, 6), (2, 2, 5, 6), (2, 2, 3, 3)),
    test_attrs=POOL_TEST,
    doc="the transpose of maxpool2d_grad: c read at each window's first position where x equals y",
))
register(Op(
    name="avgpool2d", arity=1, shape=_pool_shape, dtype=same_dtype_as_first, kernels=(K.avgpool2d,),
    local_derivative=("ḡ/k² spread over each window",),
    emit=lambda args, a: f"avgpool2d({args[0]}, {pool_args(a)})",
    vjps=(lambda g, args, out, a: g.graph.apply("avgpool2d_grad", [g], {**_pool_attrs(a),
                                                                        "input_hw": tuple(args[0].shape[2:])}),),
    test_shapes=((2, 2, 5, 6),), test_attrs=POOL_TEST,
    doc="mean over kh×kw windows (padding counts as zeros, as PyTorch's count_include_pad=True)",
))


def _avgpool_grad_shape(shapes, attrs):
    n, c = _image(shapes[0], "gradient")[:2]
    like = (n, c) + tuple(attrs["input_hw"])
    return _pooled_like_shape([shapes[0], like], attrs)


register(Op(
    name="avgpool2d_grad", arity=1, shape=_avgpool_grad_shape, dtype=same_dtype_as_first,
    local_derivative=("avgpool(ḡ)",),
    kernels=(K.avgpool2d_grad,),
    emit=lambda args, a: f"avgpool2d_grad({args[0]}, {tuple(a['input_hw'])}, {pool_args(a)})",
    vjps=(lambda g, args, out, a: g.graph.apply("avgpool2d", [g], _pool_attrs(a)),),
    test_shapes=((2, 2, 3, 3),), test_attrs={**POOL_TEST, "input_hw": (5, 6)},
    doc="the vjp of avgpool2d: each window's gradient spread evenly over it",
))


# -- up-sampling -----------------------------------------------------------------------
def _upsample_shape(shapes, attrs):
    n, c, h, w = _image(shapes[0])
    sh, sw = pair(attrs["scale"])
    if sh < 1 or sw < 1:
        raise ValueError(f"scale {(sh, sw)} must be a positive integer")
    return n, c, h * sh, w * sw


def _downsample_shape(shapes, attrs):
    n, c, h, w = _image(shapes[0], "gradient")
    sh, sw = pair(attrs["scale"])
    if h % sh or w % sw:
        raise ValueError(f"size {(h, w)} is not a multiple of the scale {(sh, sw)}")
    if "input_hw" in attrs and tuple(attrs["input_hw"]) != (h // sh, w // sw):
        raise ValueError(f"size {(h, w)} is not input_hw {tuple(attrs['input_hw'])} times the scale {(sh, sw)}")
    return n, c, h // sh, w // sw


def _scale(a):
    return {"scale": pair(a["scale"])}


register(Op(
    name="upsample_nearest2d", arity=1, shape=_upsample_shape, dtype=same_dtype_as_first,
    local_derivative=("Σ ḡ over each s×s block",),
    kernels=(K.upsample_nearest2d,), emit=lambda args, a: f"upsample_nearest2d({args[0]}, {pair(a['scale'])})",
    vjps=(lambda g, args, out, a: g.graph.apply("upsample_nearest2d_grad", [g], _scale(a)),),
    test_shapes=((2, 2, 3, 4),), test_attrs={"scale": (2, 3)},
    doc="nearest-neighbour up-sampling by an integer scale (each pixel repeated)",
))
register(Op(
    name="upsample_nearest2d_grad", arity=1, shape=_downsample_shape, dtype=same_dtype_as_first,
    local_derivative=("ḡ repeated over each s×s block",),
    kernels=(K.upsample_nearest2d_grad,),
    emit=lambda args, a: f"upsample_nearest2d_grad({args[0]}, {pair(a['scale'])})",
    vjps=(lambda g, args, out, a: g.graph.apply("upsample_nearest2d", [g], _scale(a)),),
    test_shapes=((2, 2, 6, 12),), test_attrs={"scale": (2, 3)},
    doc="the vjp of nearest up-sampling: each block of the gradient summed",
))
register(Op(
    name="upsample_bilinear2d", arity=1, shape=_upsample_shape, dtype=same_dtype_as_first,
    local_derivative=("bilinear weightsᵀ·ḡ",),
    kernels=(K.upsample_bilinear2d,), emit=lambda args, a: f"upsample_bilinear2d({args[0]}, {pair(a['scale'])})",
    vjps=(lambda g, args, out, a: g.graph.apply("upsample_bilinear2d_grad", [g],
                                                {**_scale(a), "input_hw": tuple(args[0].shape[2:])}),),
    test_shapes=((2, 2, 3, 4),), test_attrs={"scale": (2, 3)},
    doc="bilinear up-sampling by an integer scale, as PyTorch's align_corners=False",
))
register(Op(
    name="upsample_bilinear2d_grad", arity=1, shape=_downsample_shape, dtype=same_dtype_as_first,
    local_derivative=("bilinear up-sampling of ḡ",),
    kernels=(K.upsample_bilinear2d_grad,),
    emit=lambda args, a: f"upsample_bilinear2d_grad({args[0]}, {tuple(a['input_hw'])}, {pair(a['scale'])})",
    vjps=(lambda g, args, out, a: g.graph.apply("upsample_bilinear2d", [g], _scale(a)),),
    test_shapes=((2, 2, 6, 12),), test_attrs={"scale": (2, 3), "input_hw": (3, 4)},
    doc="the vjp of bilinear up-sampling (the transposed interpolation)",
))
