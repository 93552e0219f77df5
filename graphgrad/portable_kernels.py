"""Array API kernels: convolution, pooling, up-sampling and the other non-elementwise ops
in the functions of the Array API standard only.

Each kernel takes the namespace ``xp`` first (``array_api_compat.array_namespace`` of the
step's arrays) and builds new arrays: no ``out=``, no writes into an array, no strided
views.  im2col is a stack of strided slices; col2im, padding and every other "scatter" is a
product with a 0/1 matrix (`_place`), so the same source runs on NumPy, PyTorch, JAX, Dask
and CuPy.  Dropout masks and bilinear
weights are drawn and built on the host with NumPy, by the NumPy target's own helpers
(``HOST_HELPERS``), so both targets see the same numbers.

The code generator pastes the host helpers and then every function of this module into each
Array API module, which imports ``math``, ``numpy`` and ``array_api_compat.device`` itself.
"""
import math

import numpy as np

try:
    from array_api_compat import array_namespace, device
except ImportError:  # graphgrad without the [array-api] extra still imports (and doc-tests) this module
    array_namespace = device = None

from .kernels import bilinear_matrix, as_pair, conv_out_len
from .ops.nn_kernels import dropout_mask

HOST_HELPERS = (as_pair, conv_out_len, bilinear_matrix, dropout_mask)


def host_dtype(x):
    """The NumPy dtype of any library's array (torch.float64 -> float64)."""
    if isinstance(x.dtype, np.dtype):
        return x.dtype
    return np.dtype(str(x.dtype).rsplit(".", 1)[-1])


def read_state(xp, state, name, shape, fill, dtype, dev):
    """Optimizer state ``name``, created at its initial value in the caller's library on first use."""
    if name not in state:
        state[name] = xp.full(shape, fill, dtype=dtype, device=dev)
    return state[name]


def filled(xp, value, dtype, *like):
    """``value`` (an array or a number) broadcast to the shape of the arrays ``like``."""
    shape = np.broadcast_shapes(*(tuple(a.shape) for a in like))
    return xp.broadcast_to(xp.astype(xp.asarray(value, device=device(like[0])), dtype), shape)


def numel(x):
    return math.prod(x.shape)


def dropout(xp, x, rate, seed, state):
    """The NumPy target's dropout mask (same seed, same draws), moved to ``x``'s library and device."""
    mask = dropout_mask(np.empty(tuple(x.shape), host_dtype(x)), rate, seed, state)
    return xp.asarray(mask, device=device(x))


# -- reductions, softmax, labels ---------------------------------------------------------
def erf(xp, x):
    """The error function in any library (the standard has none): the NumPy target's series below
    |x| = 2.5 and continued fraction above, both evaluated on clamped arguments and picked by
    ``xp.where``, since boolean-mask assignment is not portable."""
    z = xp.abs(x)
    s = xp.minimum(z, 2.5)
    term, total, twice_square = s, s, 2.0 * s * s
    for n in range(1, 40):
        term = term * twice_square / (2 * n + 1)
        total = total + term
    near = total * xp.exp(-s * s) * (2.0 / math.sqrt(math.pi))
    t = xp.minimum(xp.maximum(z, 2.5), 30.0)  # erfc(30) underflows: erf is 1 there
    fraction = t
    for k in range(40, 0, -1):
        fraction = t + (k / 2) / fraction
    far = 1.0 - xp.exp(-t * t) / (math.sqrt(math.pi) * fraction)
    return xp.sign(x) * xp.where(z < 2.5, near, far)


def softmax(xp, x, axis):
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(xp, x, axis):
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def softmax_xent(xp, logits, targets):
    """Mean over the rows of −Σ targets · log_softmax(logits) along the last axis."""
    c = logits.shape[-1]
    z, t = xp.reshape(logits, (-1, c)), xp.reshape(targets, (-1, c))
    shifted = z - xp.max(z, axis=1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(shifted), axis=1))
    return (xp.sum(xp.sum(t, axis=1) * lse) - xp.sum(t * shifted)) / z.shape[0]


def one_hot(xp, labels, num_classes, dtype):
    """Rows of the identity picked by integer labels (a label out of range gives a row of zeros)."""
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device(labels))
    return xp.astype(xp.expand_dims(labels, axis=-1) == classes, dtype)


def batch_norm_stats(xp, x):
    """Rows (mean, biased variance) per channel (axis 1), over every other axis (two-pass)."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = xp.mean(x, axis=axes)
    centered = x - xp.reshape(mean, (1, x.shape[1]) + (1,) * (x.ndim - 2))
    return xp.stack([mean, xp.mean(centered * centered, axis=axes)])


# -- placing values without writing into an array ---------------------------------------------
# Placing a block into zeros (padding, col2im, the vjp of slicing) is a product with a 0/1
# matrix built on the host: exact (one term per entry, the rest zeros), and one op that keeps a
# Dask array's chunks whole where concatenated pieces would split them ever finer.
def _spread(n_out, n_in, offset, step, like):
    """(n_out, n_in) 0/1 matrix taking entry k of an axis to entry offset + k·step."""
    matrix = np.zeros((n_out, n_in), host_dtype(like))
    matrix[offset + step * np.arange(n_in), np.arange(n_in)] = 1
    return _to_library(like, matrix)


def _to_library(like, host_array):
    xp = array_namespace(like)
    return xp.asarray(host_array, device=device(like))


def _place(xp, a, top, left, sh, sw, height, width):
    """Zeros (N, C, height, width) holding a[:, :, r, c] at (top + r·sh, left + c·sw): the transpose of `_tap`."""
    rows = _spread(height, a.shape[2], top, sh, a)
    cols = _spread(width, a.shape[3], left, sw, a)
    return xp.matmul(xp.matmul(rows, a), xp.permute_dims(cols, (1, 0)))


def scatter_into_zeros(xp, g, like, index):
    """Zeros shaped like ``like`` with ``g`` at the basic ``index`` (slices and ints): the vjp of indexing."""
    for axis, item in enumerate(index):
        size = like.shape[axis]
        if isinstance(item, slice):
            positions = range(*item.indices(size))
        else:
            positions = range(item % size, item % size + 1)
            g = xp.expand_dims(g, axis=axis)
        last = tuple(i for i in range(g.ndim) if i != axis) + (axis,)  # the axis last, for a product
        back = tuple(last.index(i) for i in range(g.ndim))
        spread = _spread(size, len(positions), positions.start, positions.step, g) if len(positions) else None
        g = (xp.permute_dims(xp.matmul(xp.permute_dims(g, last), xp.permute_dims(spread, (1, 0))), back)
             if spread is not None else xp.zeros(tuple(g.shape[:axis]) + (size,) + tuple(g.shape[axis + 1:]),
                                                 dtype=g.dtype, device=device(g)))
    return g


# -- convolution ---------------------------------------------------------------------------
def _pad2d(xp, x, ph, pw, value=0):
    """x with ph rows and pw columns of ``value`` on each side."""
    if not (ph or pw):
        return x
    h, w = x.shape[2:]
    padded = _place(xp, x, ph, pw, 1, 1, h + 2 * ph, w + 2 * pw)
    if value == 0:
        return padded
    inside = np.zeros((h + 2 * ph, w + 2 * pw), bool)
    inside[ph:ph + h, pw:pw + w] = True
    return xp.where(_to_library(x, inside), padded, value)


def _tap(a, i, j, ho, wo, sh, sw):
    """a[..., i::sh, j::sw] restricted to (ho, wo) elements."""
    return a[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]


def _im2col(xp, x, kh, kw, ho, wo, stride, padding, dilation):
    """Columns (N, C·kh·kw, Ho·Wo), rows in (c, i, j) order like a flattened (O, C, kh, kw) weight."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp_ = _pad2d(xp, x, ph, pw)
    taps = [_tap(xp_, i * dh, j * dw, ho, wo, sh, sw) for i in range(kh) for j in range(kw)]
    n, c = x.shape[:2]
    return xp.reshape(xp.stack(taps, axis=2), (n, c * kh * kw, ho * wo))


def conv2d(xp, x, w, stride, padding, dilation):
    """Cross-correlation like torch.nn.functional.conv2d: x (N, C, H, W), w (O, C, kh, kw)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = conv_out_len(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_out_len(wd, kw, stride[1], padding[1], dilation[1])
    cols = _im2col(xp, x, kh, kw, ho, wo, stride, padding, dilation)
    return xp.reshape(xp.matmul(xp.reshape(w, (o, c * kh * kw)), cols), (n, o, ho, wo))


def conv2d_grad_input(xp, gy, w, input_hw, stride, padding, dilation):
    """The vjp of conv2d for x: every tap's columns placed back into the padded input (col2im)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, o, ho, wo = gy.shape
    _, c, kh, kw = w.shape
    h, wd = input_hw
    w_t = xp.permute_dims(xp.reshape(w, (o, c * kh * kw)), (1, 0))
    cols = xp.reshape(xp.matmul(w_t, xp.reshape(gy, (n, o, ho * wo))), (n, c, kh, kw, ho, wo))
    gx = sum(_place(xp, cols[:, :, i, j], i * dh, j * dw, sh, sw, h + 2 * ph, wd + 2 * pw)
             for i in range(kh) for j in range(kw))
    return gx[:, :, ph:ph + h, pw:pw + wd]


def conv2d_grad_weight(xp, gy, x, kernel_hw, stride, padding, dilation):
    """The vjp of conv2d for w: gy against x's im2col columns, summed over the batch."""
    n, o, ho, wo = gy.shape
    kh, kw = kernel_hw
    cols = _im2col(xp, x, kh, kw, ho, wo, stride, padding, dilation)
    gw = xp.sum(xp.matmul(xp.reshape(gy, (n, o, ho * wo)), xp.permute_dims(cols, (0, 2, 1))), axis=0)
    return xp.reshape(gw, (o, x.shape[1], kh, kw))


def conv_transpose2d(xp, x, w, stride, padding, output_padding, dilation):
    """Like torch's conv_transpose2d: conv2d_grad_input for an input of the transposed output's size."""
    hw = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1
          for n, k, s, p, op, d in zip(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation)]
    return conv2d_grad_input(xp, x, w, hw, stride, padding, dilation)


# -- pooling ---------------------------------------------------------------------------------
def _pool_taps(xp, x, kernel, stride, padding, value):
    """The kh·kw strided slices of x padded with ``value``, in row-major window order, and (Ho, Wo)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (conv_out_len(n, k, s, p, 1) for n, k, s, p in zip(x.shape[2:], kernel, stride, padding))
    padded = _pad2d(xp, x, ph, pw, value)
    return [_tap(padded, i, j, ho, wo, sh, sw) for i in range(kh) for j in range(kw)]


def _place_taps(xp, parts, input_hw, kernel, stride, padding):
    """Σ of per-tap values (row-major window order) placed back at their taps, cropped to the input."""
    (kh, kw), (ph, pw), (h, w) = kernel, padding, input_hw
    gx = sum(_place(xp, part, t // kw, t % kw, stride[0], stride[1], h + 2 * ph, w + 2 * pw)
             for t, part in enumerate(parts))
    return gx[:, :, ph:ph + h, pw:pw + w]


def _first_hits(xp, x, y, kernel, stride, padding):
    """Per tap, where it holds its window's first maximum (x equal to y = maxpool2d(x))."""
    free, hits = None, []
    for tap in _pool_taps(xp, x, kernel, stride, padding, -math.inf):
        hit = tap == y if free is None else (tap == y) & free
        free = ~hit if free is None else free & ~hit
        hits.append(hit)
    return hits


def maxpool2d(xp, x, kernel, stride, padding):
    taps = _pool_taps(xp, x, kernel, stride, padding, -math.inf)
    y = taps[0]
    for tap in taps[1:]:
        y = xp.maximum(y, tap)
    return y


def maxpool2d_grad(xp, gy, x, kernel, stride, padding, y):
    """gy routed to each window's first arg-max (y = maxpool2d(x)); overlapping windows add up."""
    hits = _first_hits(xp, x, y, kernel, stride, padding)
    return _place_taps(xp, [xp.where(hit, gy, 0) for hit in hits], x.shape[2:], kernel, stride, padding)


def maxpool2d_gather_at(xp, c, x, y, kernel, stride, padding):
    """c read at each window's first position where x equals y: the transpose of maxpool2d_grad."""
    hits = _first_hits(xp, x, y, kernel, stride, padding)
    return sum(xp.where(hit, tap, 0) for hit, tap in zip(hits, _pool_taps(xp, c, kernel, stride, padding, 0)))


def avgpool2d(xp, x, kernel, stride, padding):
    """Mean over windows, padding counted as zeros (count_include_pad=True)."""
    return sum(_pool_taps(xp, x, kernel, stride, padding, 0)) / (kernel[0] * kernel[1])


def avgpool2d_grad(xp, gy, input_hw, kernel, stride, padding):
    g = gy / (kernel[0] * kernel[1])
    return _place_taps(xp, [g] * (kernel[0] * kernel[1]), input_hw, kernel, stride, padding)


# -- up-sampling -----------------------------------------------------------------------------
def upsample_nearest2d(xp, x, scale):
    n, c, h, w = x.shape
    sh, sw = scale
    return xp.reshape(xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)), (n, c, h * sh, w * sw))


def upsample_nearest2d_grad(xp, gy, scale):
    n, c, h, w = gy.shape
    sh, sw = scale
    return xp.sum(xp.reshape(gy, (n, c, h // sh, sh, w // sw, sw)), axis=(3, 5))


def _bilinear(xp, like, n, s):
    return xp.asarray(bilinear_matrix(n, s, host_dtype(like)), device=device(like))


def upsample_bilinear2d(xp, x, scale):
    """A_h @ x @ A_wᵀ with PyTorch's align_corners=False interpolation matrices."""
    ah, aw = _bilinear(xp, x, x.shape[2], scale[0]), _bilinear(xp, x, x.shape[3], scale[1])
    return xp.matmul(ah, xp.matmul(x, xp.permute_dims(aw, (1, 0))))


def upsample_bilinear2d_grad(xp, gy, input_hw, scale):
    ah, aw = _bilinear(xp, gy, input_hw[0], scale[0]), _bilinear(xp, gy, input_hw[1], scale[1])
    return xp.matmul(xp.permute_dims(ah, (1, 0)), xp.matmul(gy, aw))
