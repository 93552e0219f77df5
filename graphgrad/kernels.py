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
    # reshape copies here
    return win.reshape(N, C * kh * kw, Ho * Wo)


# --------------------------------------------------------------------------
# stride-1 convolution in a planes layout
# --------------------------------------------------------------------------

class _KnPlanes:
    """A stride-1 convolution's input (N, C, H, W), zero-padded into one flat
    buffer per channel, images end to end: the layout that turns every kernel
    tap into one long contiguous slice.

    Rows are Ws = W + pw long and images Hs = H + ph rows tall (more when the
    padding exceeds the kernel's reach): the pw zeros closing a row also pad
    the next row's start, and the ph zero rows closing an image pad the next
    image's top.  Output (n, ho, wo) sits at flat q = n*Hs*Ws + ho*Ws + wo and
    tap (i, j) reads the input at q + i*dh*Ws + j*dw, so im2col is kh*kw slice
    copies (columns) and col2im kh*kw slice adds; flat positions with ho >= Ho
    or wo >= Wo are junk that crop() drops.  Compared with padding each side
    separately this also computes fewer junk outputs.

    A workspace outlives the call, with the im2col columns it last built and
    a copy of the array they came from: the weight gradient reuses the
    columns its forward (or input gradient) built when handed the same array,
    bit for bit.  Planes whose columns and arrays have the same shapes (a
    conv's input and its output gradient, when they have as many channels)
    share one such store, ``columns``: either side's columns serve the weight
    gradient, so one copy of that size is enough.
    """

    def __init__(self, shape, dtype, kernel_hw, padding, dilation, columns):
        N, C, H, W = self.shape = shape
        (kh, kw), (ph, pw), (dh, dw) = kernel_hw, padding, dilation
        reach_h, reach_w = (kh - 1) * dh, (kw - 1) * dw
        self.Hs, self.Ws = H + ph + max(0, ph - reach_h), W + pw + max(0, pw - reach_w)
        self.out_hw = (H + 2 * ph - reach_h, W + 2 * pw - reach_w)
        self.L = N * self.Hs * self.Ws
        self.shifts = [i * dh * self.Ws + j * dw for i in range(kh) for j in range(kw)]
        self.flat = np.zeros((C, self.L + self.shifts[-1]), dtype)
        self.inside = self.flat[:, :self.L].reshape(C, N, self.Hs, self.Ws)[:, :, ph:ph + H, pw:pw + W]
        b = self.flat.itemsize
        self.taps = _kn_as_strided(self.flat, (C, kh, kw, self.L),
                                   (self.flat.strides[0], dh * self.Ws * b, dw * b, b), writeable=False)
        self.columns = columns  # (taps shape, x shape, dtype) -> [cols, source, holder]

    def _key(self, x):
        return self.taps.shape, x.shape, x.dtype.str

    def _store(self, x):
        """[im2col columns, the array they came from, the planes that built them last] for x's shape."""
        key = self._key(x)
        if key not in self.columns:
            self.columns[key] = [np.empty(self.taps.shape, x.dtype), np.empty(x.shape, x.dtype), None]
        return self.columns[key]

    def planes_of(self, x):
        """Load x; returns its planes (C, L), a view of the buffer, whose zero
        tail past L pads the last image."""
        self.inside[...] = x.transpose(1, 0, 2, 3)
        store = self.columns.get(self._key(x))
        if store is not None and store[2] is self:
            store[2] = None  # the columns it built are no longer of its planes
        return self.flat[:, :self.L]

    def columns_of(self, x):
        """im2col of x, (C*kh*kw, L): row (c, i, j) is channel c read at tap (i, j)."""
        self.planes_of(x)
        store = self._store(x)
        np.copyto(store[0], self.taps)
        np.copyto(store[1], x)
        store[2] = self
        return store[0].reshape(-1, self.L)

    def cached_columns(self, x):
        """The columns this planes built last, if they are still there and x's (compared
        bit for bit: 0.0 == -0.0, but their products differ in sign); else None."""
        bits = np.dtype(f"u{x.itemsize}")
        cols, source, holder = self.columns.get(self._key(x), (None, None, None))
        if holder is self and np.array_equal(source.view(bits), x.view(bits)):
            return cols.reshape(-1, self.L)
        return None

    def crop(self, z):
        """The outputs of z (O, L) at the valid positions, as a new (N, O, Ho, Wo) array."""
        O = z.shape[0]
        N = self.L // (self.Hs * self.Ws)
        Ho, Wo = self.out_hw
        y = np.empty((N, O, Ho, Wo), z.dtype)
        np.copyto(y, z.reshape(O, N, self.Hs, self.Ws)[:, :, :Ho, :Wo].transpose(1, 0, 2, 3))
        return y


def _kn_planes(workspace, role, x, kernel_hw, padding, dilation):
    """The planes of a conv input of x's shape, kept in ``workspace`` (the compiled step's
    state; None: a fresh one) for the next call; `role` keeps apart arrays whose geometries
    coincide (a conv's input and its output gradient).  A new batch size replaces them."""
    if workspace is None:
        return _KnPlanes(x.shape, x.dtype, kernel_hw, padding, dilation, {})
    kept = workspace.setdefault("_conv_planes", {})
    key = (role, x.shape[1:], x.dtype.str, kernel_hw, padding, dilation)
    planes = kept.get(key)
    if planes is None or planes.shape != x.shape:
        columns = workspace.setdefault("_conv_columns", {})
        planes = kept[key] = _KnPlanes(x.shape, x.dtype, kernel_hw, padding, dilation, columns)
    return planes


def _kn_correlate(workspace, role, x, w, padding, dilation):
    """Stride-1 cross-correlation of x (N, C, H, W) with w (O, C, kh, kw), in
    the workspace of `role` ("x": a conv's input, "gy": its output gradient).

    The kh*kw-fold copy goes to the side with fewer channels: im2col then one
    GEMM when C <= O (its columns are also the weight gradient's), else one
    GEMM giving every tap's output, then col2im.
    """
    O, C, kh, kw = w.shape
    planes = _kn_planes(workspace, role, x, (kh, kw), padding, dilation)
    L = planes.L
    # small inputs take im2col too: one copy costs fewer calls than kh*kw adds
    if C <= O or C * kh * kw * L < 1 << 18:
        z = np.matmul(w.reshape(O, C * kh * kw), planes.columns_of(x))
    else:
        taps = np.matmul(w.transpose(0, 2, 3, 1).reshape(O * kh * kw, C),
                         planes.planes_of(x)).reshape(O, kh * kw, L)
        z = taps[:, 0]
        for t, s in enumerate(planes.shifts[1:], 1):
            z[:, :L - s] += taps[:, t, s:]  # past L - s the input is padding
    return planes.crop(z)


def _kn_correlation_weight_grad(workspace, gy, x, kernel_hw, padding, dilation):
    """conv2d_grad_weight at stride 1: gw[o, c, i, j] = sum_q gy[o, q] x[c, q + tap],
    one GEMM of one side's im2col columns with the other side's pixel rows.

    The columns come from the workspace conv2d(x) or conv2d_grad_input(gy)
    left behind, when it still holds x's or gy's; otherwise the side with
    fewer channels is replicated.
    """
    (kh, kw), (ph, pw), (dh, dw) = kernel_hw, padding, dilation
    O, C = gy.shape[1], x.shape[1]
    xs = _kn_planes(workspace, "x", x, kernel_hw, padding, dilation)
    gs = _kn_planes(workspace, "gy", gy, kernel_hw, ((kh - 1) * dh - ph, (kw - 1) * dw - pw), dilation)
    x_cols = xs.cached_columns(x)
    gy_cols = None if x_cols is not None else gs.cached_columns(gy)
    if x_cols is None and gy_cols is None:
        if C <= O:
            x_cols = xs.columns_of(x)
        else:
            gy_cols = gs.columns_of(gy)
    # both layouts put the correlation's output (n, h, w) at flat n*Hs*Ws + h*Ws + w
    if x_cols is not None:
        gwt = np.matmul(x_cols, _kn_pixel_rows(gy, xs.Hs, xs.Ws))  # (C*kh*kw, O)
        return np.ascontiguousarray(gwt.T).reshape(O, C, kh, kw)
    # gy's columns are conv2d_grad_input's, whose output is x: its taps run flipped
    gwt = np.matmul(gy_cols, _kn_pixel_rows(x, xs.Hs, xs.Ws))  # (O*kh*kw, C)
    return np.ascontiguousarray(gwt.reshape(O, kh, kw, C)[:, ::-1, ::-1].transpose(0, 3, 1, 2))


def _kn_pixel_rows(a, Hs, Ws):
    """a (N, C, H, W) as rows (N*Hs*Ws, C): pixel (n, h, w) at row n*Hs*Ws + h*Ws + w,
    zero rows past H or W; the GEMM operand that runs along im2col columns
    (contiguous rows make the fastest GEMM here)."""
    N, C, H, W = a.shape
    rows = np.empty((N, Hs, Ws, C), a.dtype)
    rows[:, :H, :W] = a.transpose(0, 2, 3, 1)
    rows[:, H:] = 0
    rows[:, :H, W:] = 0
    return rows.reshape(N * Hs * Ws, C)


def _kn_fits_planes(stride, padding, kernel_hw, dilation, in_hw, out_hw):
    """Whether the stride-1 workspaces serve a conv's gradients: their adjoint
    is a correlation padded by the kernel's reach minus the padding, so the
    padding must not exceed the reach, and the output must be the full one
    (a transposed conv's output_padding can add a row the output never reads)."""
    reach = [(k - 1) * d for k, d in zip(kernel_hw, dilation)]
    return (stride == (1, 1) and all(p <= r for p, r in zip(padding, reach))
            and tuple(out_hw) == tuple(n + 2 * p - r for n, p, r in zip(in_hw, padding, reach)))


def _kn_planes_pay_off(x, O, kernel_hw):
    """Whether a stride-1 conv of x goes through the planes layout, whose long
    slices make im2col cheap but whose outputs need cropping: when im2col
    (C*kh*kw rows) outweighs the output (O rows), at any size (one GEMM for
    the batch: W5's 16x16 and 8x8 convs, forward and gradients, 10-25 %
    faster than per image).  Else im2col per image, with GEMMs writing
    straight into NCHW order."""
    return x.shape[1] * kernel_hw[0] * kernel_hw[1] > O


def _kn_pointwise(stride, padding, kernel_hw):
    # a 1x1 kernel at stride 1 without padding is a GEMM per image, no im2col
    return kernel_hw == (1, 1) and stride == (1, 1) and padding == (0, 0)


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------

def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), workspace=None):
    """Cross-correlation like torch.nn.functional.conv2d (no bias, groups=1).

    x (N, C, H, W), w (O, C, kh, kw) -> (N, O, Ho, Wo).
    """
    stride, padding, dilation = as_pair(stride), as_pair(padding), as_pair(dilation)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    if _kn_pointwise(stride, padding, (kh, kw)):
        return np.matmul(w.reshape(O, C), x.reshape(N, C, H * W)).reshape(N, O, H, W)
    if stride == (1, 1) and _kn_planes_pay_off(x, O, (kh, kw)):
        return _kn_correlate(workspace, "x", x, w, padding, dilation)
    # per-image im2col and GEMMs, written straight into NCHW order
    Ho = conv_out_len(H, kh, stride[0], padding[0], dilation[0])
    Wo = conv_out_len(W, kw, stride[1], padding[1], dilation[1])
    cols = _kn_im2col(x, kh, kw, Ho, Wo, stride, padding, dilation)
    y = np.matmul(w.reshape(O, C * kh * kw), cols)
    return y.reshape(N, O, Ho, Wo)


def conv2d_grad_input(gy, w, input_hw, stride, padding, dilation, workspace=None):
    """Gradient of conv2d w.r.t. x, shape (N, C, H, W) with (H, W) = input_hw."""
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    H, W = input_hw
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    # (H, W) != (Ho, Wo): a transposed conv's output_padding (past the stride, below the dilation)
    # adds input rows no output reads
    if _kn_pointwise((sh, sw), (ph, pw), (kh, kw)) and (H, W) == (Ho, Wo):
        return np.matmul(w.reshape(O, C).T, gy.reshape(N, O, Ho * Wo)).reshape(N, C, H, W)
    if _kn_fits_planes((sh, sw), (ph, pw), (kh, kw), (dh, dw), (H, W), (Ho, Wo)):
        # the transpose of a stride-1 correlation: correlate gy, padded by the
        # kernel's reach minus the padding, with the flipped, transposed kernel
        flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        return _kn_correlate(workspace, "gy", gy, flipped, ((kh - 1) * dh - ph, (kw - 1) * dw - pw), (dh, dw))
    # one GEMM gives every tap's contribution (col2im columns); each tap then
    # adds into a strided slice of a padded buffer (a tap touches distinct
    # pixels, so plain slice adds replace np.add.at).  When the stride steps
    # over the dilated kernel (a patchifying conv), taps never share a pixel:
    # assigning skips reading the buffer back.
    cols = np.matmul(w.reshape(O, C * kh * kw).T, gy.reshape(N, O, Ho * Wo)).reshape(N, C, kh, kw, Ho, Wo)
    gxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    disjoint = sh > (kh - 1) * dh and sw > (kw - 1) * dw
    for i in range(kh):
        for j in range(kw):
            taps = _kn_tap(gxp, i * dh, j * dw, Ho, Wo, sh, sw)
            if disjoint:
                taps[...] = cols[:, :, i, j]
            else:
                taps += cols[:, :, i, j]
    if ph == 0 and pw == 0:
        return gxp
    return gxp[:, :, ph:ph + H, pw:pw + W]


def conv2d_grad_weight(gy, x, kernel_hw, stride, padding, dilation, workspace=None):
    """Gradient of conv2d w.r.t. w, shape (O, C, kh, kw)."""
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    kh, kw = kernel_hw
    N, O, Ho, Wo = gy.shape
    C, H, W = x.shape[1:]
    if _kn_pointwise((sh, sw), (ph, pw), (kh, kw)) and (H, W) == (Ho, Wo):  # (as in conv2d_grad_input)
        # per-image GEMMs against x's transposed view; the (N, O, C) partials are tiny to sum
        gw = np.matmul(gy.reshape(N, O, Ho * Wo), x.reshape(N, C, H * W).transpose(0, 2, 1)).sum(axis=0)
        return gw.reshape(O, C, 1, 1)
    if (_kn_fits_planes((sh, sw), (ph, pw), (kh, kw), (dh, dw), (H, W), (Ho, Wo))
            and _kn_planes_pay_off(x, O, (kh, kw))):
        return _kn_correlation_weight_grad(workspace, gy, x, (kh, kw), (ph, pw), (dh, dw))
    cols = _kn_im2col(x, kh, kw, Ho, Wo, (sh, sw), (ph, pw), (dh, dw))
    # Batched GEMM against the transposed view avoids copying cols into a
    # (N*Ho*Wo, K) layout; the (N, O, K) partials are tiny to sum.
    gw = np.matmul(gy.reshape(N, O, Ho * Wo), cols.transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(O, C, kh, kw)


def conv_transpose2d(x, w, stride, padding, output_padding=(0, 0), dilation=(1, 1), workspace=None):
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
    return conv2d_grad_input(x, w, (Ho, Wo), (sh, sw), (ph, pw), (dh, dw), workspace)


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

    The kh rows of a band of tiles first, each a slice of whole rows (x viewed
    as (bands, kh, W) needs no copy), then the kw columns, strided slices of
    the result (or blocks of a copy): every call runs over the whole array,
    none over a tiny trailing axis (several times slower).
    """
    N, C, H, W = x.shape
    rows = x.reshape(-1, kh, W)
    band = op(rows[:, 0], rows[:, 1]) if kh > 1 else rows[:, 0]
    for i in range(2, kh):
        op(band, rows[:, i], out=band)
    if kw > 1 and op is np.maximum:
        # NumPy's maximum runs an unvectorized loop on strided operands (3x slower than add there): one
        # transposing copy puts each tile column in a block of its own (W2's 2x2 pools: 0.35 -> 0.28 ms)
        band = np.ascontiguousarray(band.reshape(-1, W // kw, kw).transpose(2, 0, 1))
        columns = [band[j] for j in range(kw)]
    else:
        columns = [band[:, j::kw] for j in range(kw)]
    tiles = op(columns[0], columns[1]) if kw > 1 else band.copy()
    for j in range(2, kw):
        op(tiles, columns[j], out=tiles)
    return tiles.reshape(N, C, H // kh, W // kw)


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


def _kn_repeat_columns(a):
    """a (..., n) as (..., 2n), every value twice: the product with 1+1j, read
    as real numbers (one call; the second copy of a -0.0 is +0.0)."""
    one_one = np.array(1 + 1j, np.result_type(a.dtype, np.complex64))
    return np.multiply(a, one_one).view(a.dtype)


def _kn_keep_first_flags(pairs):
    """Clear the second flag of every pair whose first is set, for pairs of
    bools viewed as uint16 words (the first flag is the low byte on
    little-endian machines)."""
    first_on_second = pairs << 8 if np.little_endian else pairs >> 8
    pairs ^= first_on_second & pairs


def _kn_maxpool2x2_grad(gy, x, y):
    """maxpool2d_grad for 2x2 tiles of a float x, with no copy of x.

    x viewed as (window rows, 2, W) lines up with y and gy repeated along
    columns (one call each), so the hits x == y and the routed gradient are
    two whole-array calls, written in x's layout.  Only when some window has
    two hits (ties: equal values, often zeros) the first one in row-major
    order is kept, by word tricks on the flags.
    """
    N, C, H, W = x.shape
    m = N * C * H // 2
    hit = np.equal(x.reshape(m, 2, W), _kn_repeat_columns(y.reshape(m, W // 2))[:, None])
    if np.count_nonzero(hit) != y.size:
        pairs = hit.view(np.uint16)  # a window row's two hits as one word
        _kn_keep_first_flags(pairs)  # right only where left missed
        pairs[:, 1] *= pairs[:, 0] == 0  # bottom row only where the top row missed
    gx = np.multiply(_kn_repeat_columns(gy.reshape(m, W // 2))[:, None], hit)
    return gx.reshape(N, C, H, W)


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
    # small maps keep the per-tap loop below: few rows to walk, fewer calls
    if tiled and (kh, kw) == (2, 2) and x.dtype == gy.dtype and x.dtype.char in "fd":
        return _kn_maxpool2x2_grad(gy, x, y)
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


def bilinear_matrix(n, s, dtype):
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
    ah = bilinear_matrix(H, sh, x.dtype)
    aw = bilinear_matrix(W, sw, x.dtype)
    # the width pass as one flat GEMM, the height pass batched over (N, C)
    t = np.matmul(x.reshape(N * C * H, W), aw.T).reshape(N, C, H, W * sw)
    return np.matmul(ah, t)


def upsample_bilinear2d_grad(gy, input_hw, scale):
    """Gradient of upsample_bilinear2d w.r.t. x: A_h.T @ gy @ A_w."""
    sh, sw = as_pair(scale)
    H, W = input_hw
    N, C, Ho, Wo = gy.shape
    ah = bilinear_matrix(H, sh, gy.dtype)
    aw = bilinear_matrix(W, sw, gy.dtype)
    t = np.matmul(gy.reshape(N * C * Ho, Wo), aw).reshape(N, C, Ho, W)
    return np.matmul(ah.T, t)
