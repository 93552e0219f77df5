"""Pure NumPy kernels for convolution, pooling and upsampling (NCHW).

This module imports only numpy: the code generator pastes its source verbatim
into standalone generated modules.  Every kernel computes in the dtype of its
inputs (float32 in, float32 out).  Conventions follow PyTorch's functional
API; stride/padding/dilation/kernel arguments accept an int or an (h, w) pair.
"""
import numpy as np

_kn_as_strided = np.lib.stride_tricks.as_strided


def as_pair(v):
    """An int or an (h, w) pair as a tuple of two ints."""
    if isinstance(v, (tuple, list)):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def conv_out_len(n, k, s, p, d):
    """Output length of a convolution or pool along one axis (PyTorch's formula, floor mode)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _kn_pad(x, ph, pw, value=0):
    """Pad the last two axes of x; returns x itself when there is no padding."""
    if ph == 0 and pw == 0:
        return x
    N, C, H, W = x.shape
    if value == 0:
        # np.zeros is calloc-backed: cheaper than np.full for the common case.
        xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    else:
        xp = np.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    return xp


def _kn_lowest(dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return np.iinfo(dtype).min


def _kn_tap(a, i, j, ho, wo, sh, sw):
    """Strided view a[..., i::sh, j::sw] restricted to (ho, wo) elements."""
    return a[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]


def _kn_im2col(x, kh, kw, Ho, Wo, stride, padding, dilation):
    """Columns of shape (N, C*kh*kw, Ho*Wo) so that conv == w2d @ cols per image.

    The (N, C, kh, kw, Ho, Wo) order keeps the GEMM output in NCHW order, so
    the forward needs no transpose afterwards.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    # as_strided works from xp's own strides, so no contiguous copy is needed
    xp = _kn_pad(x, ph, pw)
    N, C = xp.shape[:2]
    bn, bc, bh, bw = xp.strides
    win = _kn_as_strided(xp, (N, C, kh, kw, Ho, Wo),
                         (bn, bc, bh * dh, bw * dw, bh * sh, bw * sw),
                         writeable=False)
    # reshape copies here (except for 1x1/stride 1, where it stays a view)
    return win.reshape(N, C * kh * kw, Ho * Wo)


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------

def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Cross-correlation like torch.nn.functional.conv2d (no bias, groups=1).

    x (N, C, H, W), w (O, C, kh, kw) -> (N, O, Ho, Wo).
    """
    stride, padding, dilation = as_pair(stride), as_pair(padding), as_pair(dilation)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho = conv_out_len(H, kh, stride[0], padding[0], dilation[0])
    Wo = conv_out_len(W, kw, stride[1], padding[1], dilation[1])
    cols = _kn_im2col(x, kh, kw, Ho, Wo, stride, padding, dilation)
    y = np.matmul(w.reshape(O, C * kh * kw), cols)
    return y.reshape(N, O, Ho, Wo)


def _kn_planes(x, ph, pw, slack):
    """Zero-padded x as a flat buffer of (C, N, Hp, Wp) planes plus `slack` zeros.

    With every plane laid end to end, kernel tap (i, j) of a stride-1 conv is
    the constant shift i*dh*Wp + j*dw of the flat index, so per-tap slices are
    long contiguous runs rather than Ho rows of Wo elements.  Positions past a
    plane's valid (Ho, Wo) corner are junk and get cropped / multiplied by 0.
    """
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    flat = np.zeros(C * N * Hp * Wp + slack, dtype=x.dtype)
    flat[:C * N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, ph:ph + H, pw:pw + W] = \
        x.transpose(1, 0, 2, 3)
    return flat


def _kn_use_planes(stride, C, O, kh, kw):
    # The planes layout costs a transpose of gy (N*O*Ho*Wo) and of the result;
    # it pays off when the short-row strided col2im/im2col passes it replaces
    # (N*C*kh*kw*Ho*Wo) dominate.  Only stride 1 maps taps to flat shifts.
    return stride == (1, 1) and C * kh * kw > O


def conv2d_grad_input(gy, w, input_hw, stride, padding, dilation):
    """Gradient of conv2d w.r.t. x, shape (N, C, H, W) with (H, W) = input_hw.

    One GEMM produces every tap's contribution (col2im columns); each of the
    kh*kw taps is then added into a shifted slice of a padded buffer (a tap
    touches distinct pixels, so plain slice adds replace np.add.at).
    """
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    H, W = input_hw
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    w2t = w.reshape(O, C * kh * kw).T
    if _kn_use_planes((sh, sw), C, O, kh, kw):
        L = N * Hp * Wp
        gyw = np.zeros((O, N, Hp, Wp), dtype=gy.dtype)
        gyw[:, :, :Ho, :Wo] = gy.transpose(1, 0, 2, 3)
        cols = np.matmul(w2t, gyw.reshape(O, L)).reshape(C, kh, kw, L)
        gxf = np.zeros(C * L + (kh - 1) * dh * Wp + (kw - 1) * dw, dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                s = i * dh * Wp + j * dw
                gxf[s:s + C * L].reshape(C, L)[...] += cols[:, i, j]
        gx = gxf[:C * L].reshape(C, N, Hp, Wp)[:, :, ph:ph + H, pw:pw + W]
        return np.ascontiguousarray(gx.transpose(1, 0, 2, 3))
    cols = np.matmul(w2t, gy.reshape(N, O, Ho * Wo)).reshape(N, C, kh, kw, Ho, Wo)
    gxp = np.zeros((N, C, Hp, Wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            _kn_tap(gxp, i * dh, j * dw, Ho, Wo, sh, sw)[...] += cols[:, :, i, j]
    if ph == 0 and pw == 0:
        return gxp
    return gxp[:, :, ph:ph + H, pw:pw + W]


def conv2d_grad_weight(gy, x, kernel_hw, stride, padding, dilation):
    """Gradient of conv2d w.r.t. w, shape (O, C, kh, kw)."""
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    kh, kw = kernel_hw
    N, O, Ho, Wo = gy.shape
    C, H, W = x.shape[1:]
    if _kn_use_planes((sh, sw), C, O, kh, kw):
        Hp, Wp = H + 2 * ph, W + 2 * pw
        L = N * Hp * Wp
        xf = _kn_planes(x, ph, pw, (kh - 1) * dh * Wp + (kw - 1) * dw)
        b = xf.itemsize
        cols = _kn_as_strided(xf, (C, kh, kw, L), (L * b, dh * Wp * b, dw * b, b),
                              writeable=False).reshape(C * kh * kw, L)
        # gy scattered onto the same padded grid, zero at the junk positions
        gyw = np.zeros((N, Hp, Wp, O), dtype=gy.dtype)
        gyw[:, :Ho, :Wo, :] = gy.transpose(0, 2, 3, 1)
        # (K, L) @ (L, O) is the fastest BLAS orientation for this long reduction
        return np.matmul(cols, gyw.reshape(L, O)).T.reshape(O, C, kh, kw)
    cols = _kn_im2col(x, kh, kw, Ho, Wo, (sh, sw), (ph, pw), (dh, dw))
    # Batched GEMM against the transposed view avoids copying cols into a
    # (N*Ho*Wo, K) layout; the (N, O, K) partials are tiny to sum.
    gw = np.matmul(gy.reshape(N, O, Ho * Wo), cols.transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(O, C, kh, kw)


def conv_transpose2d(x, w, stride, padding, output_padding=(0, 0), dilation=(1, 1)):
    """Like torch.nn.functional.conv_transpose2d (no bias, groups=1).

    x (N, Cin, H, W), w (Cin, Cout, kh, kw) -> (N, Cout, Ho, Wo) with
    Ho = (H-1)*s - 2p + d*(kh-1) + output_padding + 1.

    A transposed convolution is exactly the input-gradient of conv2d using the
    same weight (read as a conv2d weight with O=Cin, C=Cout), evaluated for an
    input of the transposed output's size.  Hence its gradients are
      d/dx: conv2d(gy, w, stride, padding, dilation)[:, :, :H, :W]
      d/dw: conv2d_grad_weight(x, gy, (kh, kw), stride, padding, dilation)
    (the crop only bites when output_padding >= stride, which PyTorch allows
    for dilation > output_padding; conv2d then yields extra rows/columns).
    """
    (sh, sw), (ph, pw) = as_pair(stride), as_pair(padding)
    (oph, opw), (dh, dw) = as_pair(output_padding), as_pair(dilation)
    H, W = x.shape[2:]
    kh, kw = w.shape[2:]
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return conv2d_grad_input(x, w, (Ho, Wo), (sh, sw), (ph, pw), (dh, dw))


def conv1d(x, w, stride=1, padding=0, dilation=1):
    """Like torch.nn.functional.conv1d (no bias): x (N, C, L), w (O, C, k)."""
    y = conv2d(x[:, :, None, :], w[:, :, None, :], (1, stride), (0, padding),
               (1, dilation))
    return y[:, :, 0, :]


def conv1d_grad_input(gy, w, input_len, stride, padding, dilation):
    """Gradient of conv1d w.r.t. x, shape (N, C, input_len)."""
    gx = conv2d_grad_input(gy[:, :, None, :], w[:, :, None, :], (1, input_len),
                           (1, stride), (0, padding), (1, dilation))
    return gx[:, :, 0, :]


def conv1d_grad_weight(gy, x, kernel_len, stride, padding, dilation):
    """Gradient of conv1d w.r.t. w, shape (O, C, kernel_len)."""
    gw = conv2d_grad_weight(gy[:, :, None, :], x[:, :, None, :], (1, kernel_len),
                            (1, stride), (0, padding), (1, dilation))
    return gw[:, :, 0, :]


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------

def _kn_pool_geometry(x_hw, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = as_pair(kernel), as_pair(stride), as_pair(padding)
    H, W = x_hw
    Ho = conv_out_len(H, kh, sh, ph, 1)
    Wo = conv_out_len(W, kw, sw, pw, 1)
    tiled = (kh == sh and kw == sw and ph == 0 and pw == 0
             and H % kh == 0 and W % kw == 0)
    return kh, kw, sh, sw, ph, pw, Ho, Wo, tiled


def _kn_tiled_reduce(x, kh, kw, op):
    """Reduce each (kh, kw) tile of x (N, C, H, W) with binary ufunc `op`.

    Columns first: x[..., j::kw] is one uniformly strided run that numpy walks
    in a single inner loop, and it shrinks the data before the row pass (whose
    slices are many short rows).  A .max/.sum over the tiny tile axes of a
    6-D view is more than 10x slower.
    """
    N, C, H, W = x.shape
    cols = x.reshape(N, C, H, W // kw, kw)
    acc = cols[..., 0].copy()
    for j in range(1, kw):
        op(acc, cols[..., j], out=acc)
    rows = acc.reshape(N, C, H // kh, kh, W // kw)
    out = rows[:, :, :, 0].copy()
    for i in range(1, kh):
        op(out, rows[:, :, :, i], out=out)
    return out


def _kn_repeat2d(x, sh, sw):
    # np.repeat copies whole chunks; broadcast_to(...).reshape iterates over
    # length-s inner axes and is ~2.5x slower
    return np.repeat(np.repeat(x, sw, axis=3), sh, axis=2)


def maxpool2d(x, kernel, stride, padding=(0, 0)):
    """Like torch.nn.functional.max_pool2d (ceil_mode=False, dilation 1)."""
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo, tiled = _kn_pool_geometry((H, W), kernel, stride, padding)
    if tiled:
        return _kn_tiled_reduce(x, kh, kw, np.maximum)
    xp = _kn_pad(x, ph, pw, _kn_lowest(x.dtype))
    # an elementwise maximum over the taps beats reducing tiny trailing axes
    y = _kn_tap(xp, 0, 0, Ho, Wo, sh, sw).copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                np.maximum(y, _kn_tap(xp, i, j, Ho, Wo, sh, sw), out=y)
    return y


def maxpool2d_grad(gy, x, kernel, stride, padding=(0, 0), y=None):
    """Gradient of maxpool2d w.r.t. x; y, when given, must be maxpool2d(x, ...)
    (the forward output, so the maxima are not recomputed).

    Each window's gradient goes to its first maximum in row-major window order
    (PyTorch's tie rule); overlapping windows accumulate.  Non-finite values in
    gy spread to a window's other positions (0 * inf), unlike PyTorch.
    """
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo, tiled = _kn_pool_geometry((H, W), kernel, stride, padding)
    if y is None:
        y = maxpool2d(x, (kh, kw), (sh, sw), (ph, pw))
    if tiled:
        src = x.reshape(N, C, Ho, kh, Wo, kw)
        gx = np.empty((N, C, Ho, kh, Wo, kw), dtype=gy.dtype)
    else:
        src = _kn_pad(x, ph, pw, _kn_lowest(x.dtype))
        gx = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gy.dtype)
    # `free` marks windows whose arg-max no earlier tap has claimed
    free = None
    hit = np.empty(y.shape, dtype=bool)
    last = kh * kw - 1
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        if tiled:
            v, g = src[:, :, :, i, :, j], gx[:, :, :, i, :, j]
        else:
            v, g = _kn_tap(src, i, j, Ho, Wo, sh, sw), _kn_tap(gx, i, j, Ho, Wo, sh, sw)
        np.equal(v, y, out=hit)
        if free is None:
            free = ~hit
        else:
            hit &= free
            if t < last:
                free ^= hit
        # multiply by a 0/1 mask: np.where / where= are ~10x slower here
        if tiled:
            np.multiply(gy, hit, out=g)
        else:
            g += gy * hit
    if tiled:
        return gx.reshape(N, C, H, W)
    if ph == 0 and pw == 0:
        return gx
    return gx[:, :, ph:ph + H, pw:pw + W]


def maxpool2d_gather_at(c, x, y, kernel, stride, padding=(0, 0)):
    """c (shaped like x) read at each window's first position where x equals y:
    the transpose of maxpool2d_grad(., x, ..., y).  With y = maxpool2d(x) that
    is each window's first arg-max; a window with no match reads 0.
    """
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo, _ = _kn_pool_geometry((H, W), kernel, stride, padding)
    src = _kn_pad(x, ph, pw, _kn_lowest(x.dtype))
    cp = _kn_pad(c, ph, pw)
    out = np.zeros(y.shape, dtype=c.dtype)
    free = np.ones(y.shape, dtype=bool)
    hit = np.empty(y.shape, dtype=bool)
    for i in range(kh):
        for j in range(kw):
            np.equal(_kn_tap(src, i, j, Ho, Wo, sh, sw), y, out=hit)
            hit &= free
            free ^= hit
            out += _kn_tap(cp, i, j, Ho, Wo, sh, sw) * hit
    return out


def avgpool2d(x, kernel, stride, padding=(0, 0)):
    """Like torch.nn.functional.avg_pool2d (count_include_pad=True, ceil_mode=False)."""
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo, tiled = _kn_pool_geometry((H, W), kernel, stride, padding)
    if tiled:
        y = _kn_tiled_reduce(x, kh, kw, np.add)
    else:
        xp = _kn_pad(x, ph, pw)
        y = _kn_tap(xp, 0, 0, Ho, Wo, sh, sw).copy()
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    y += _kn_tap(xp, i, j, Ho, Wo, sh, sw)
    # divide (not multiply by a reciprocal) to round like PyTorch; the python
    # int is a weak scalar, so the dtype stays that of x
    y /= kh * kw
    return y


def avgpool2d_grad(gy, input_hw, kernel, stride, padding=(0, 0)):
    """Gradient of avgpool2d w.r.t. x, shape (N, C, H, W) with (H, W) = input_hw."""
    H, W = input_hw
    N, C, Ho, Wo = gy.shape
    kh, kw, sh, sw, ph, pw, _, _, tiled = _kn_pool_geometry((H, W), kernel, stride, padding)
    g = gy / (kh * kw)
    if tiled:
        return _kn_repeat2d(g, kh, kw)
    gx = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            _kn_tap(gx, i, j, Ho, Wo, sh, sw)[...] += g
    if ph == 0 and pw == 0:
        return gx
    return gx[:, :, ph:ph + H, pw:pw + W]


# --------------------------------------------------------------------------
# upsampling
# --------------------------------------------------------------------------

def upsample_nearest2d(x, scale):
    """Like F.interpolate(x, scale_factor=scale, mode="nearest"), integer scale."""
    sh, sw = as_pair(scale)
    return _kn_repeat2d(x, sh, sw)


def upsample_nearest2d_grad(gy, scale):
    """Gradient of upsample_nearest2d w.r.t. x: the sum over each scale tile."""
    sh, sw = as_pair(scale)
    return _kn_tiled_reduce(gy, sh, sw, np.add)


def _kn_bilinear_matrix(n, s, dtype):
    """(n*s, n) interpolation matrix of PyTorch's align_corners=False bilinear.

    Computed in `dtype` because PyTorch evaluates source coordinates in the
    tensor's own precision; the two weights of a row may hit the same column
    at the border, so they are summed via one-hot masks, not assigned.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    one = dtype.type(1)
    half = dtype.type(0.5)
    inv = dtype.type(1.0 / s)
    src = (np.arange(n * s, dtype=dtype) + half) * inv - half
    src = np.maximum(src, dtype.type(0))
    i0 = src.astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    l1 = src - i0.astype(dtype)
    l0 = one - l1
    col = np.arange(n)
    return ((col == i0[:, None]) * l0[:, None]
            + (col == i1[:, None]) * l1[:, None]).astype(dtype, copy=False)


def upsample_bilinear2d(x, scale):
    """Like F.interpolate(x, scale_factor=scale, mode="bilinear",
    align_corners=False) for integer scale: y = A_h @ x @ A_w.T."""
    sh, sw = as_pair(scale)
    N, C, H, W = x.shape
    ah = _kn_bilinear_matrix(H, sh, x.dtype)
    aw = _kn_bilinear_matrix(W, sw, x.dtype)
    # the width pass as one flat GEMM, the height pass batched over (N, C)
    t = np.matmul(x.reshape(N * C * H, W), aw.T).reshape(N, C, H, W * sw)
    return np.matmul(ah, t)


def upsample_bilinear2d_grad(gy, input_hw, scale):
    """Gradient of upsample_bilinear2d w.r.t. x: A_h.T @ gy @ A_w."""
    sh, sw = as_pair(scale)
    H, W = input_hw
    N, C, Ho, Wo = gy.shape
    ah = _kn_bilinear_matrix(H, sh, gy.dtype)
    aw = _kn_bilinear_matrix(W, sw, gy.dtype)
    t = np.matmul(gy.reshape(N * C * Ho, Wo), aw).reshape(N, C, Ho, W)
    return np.matmul(ah.T, t)
