"""Hand-written NumPy training steps for the benchmark workloads W1..W5.

These are the project's own reference implementations: as fast as we can
write them in plain NumPy, and checked against PyTorch autograd (float64) in
``tests/test_bench_references.py``.  Every workload is a class built as
``Cls(params, data)`` with

- ``step() -> float``: forward + full backward + plain SGD (``LR``) applied to
  ``params`` *in place*; returns the loss before the update;
- ``loss() -> float``: forward only, at the current params;
- ``loss_and_grads() -> (float, {name: grad})``: for checking (fresh copies).

``make_workload(name, seed=0, small=False) -> (params, data)`` builds the
random data and glorot-uniform parameters; ``WORKLOADS`` maps the ids to the
classes.  Everything runs in the dtype of the params (float32 for the
benchmarks, float64 in the gradient tests).

How the speed is had (the same tricks a good compiler should find):

- all buffers are allocated once in ``__init__`` and written with ``out=``;
- activations are kept channels-last (NHWC, i.e. a (N*H*W, C) matrix) so a
  convolution's output *is* the GEMM's output, with no transposes;
- 3x3 convolutions: im2col is one copy from a strided view of a zero-padded
  buffer, then one GEMM; the weight gradient is one GEMM against the same
  columns; the input gradient is one GEMM per kernel tap on the output
  gradient laid out on the *padded* grid, so each tap's contribution is a
  contiguous, flat shifted add (never ``np.add.at``);
- 2x2 max pooling by reshape (windows tile); its backward is an equality mask
  times the broadcast gradient.  Ties can only occur between ReLU zeros,
  whose gradient the ReLU mask kills anyway;
- ReLU backward multiplies by a 0/1 mask; W2 pools *before* the ReLU
  (max and ReLU commute), so the ReLU runs on a quarter of the data;
- bias and BatchNorm sums are GEMVs against a ones vector (far faster than
  ``sum(axis=0)`` on tall, narrow matrices);
- the backward pass is linear in its seed, so ``step()`` seeds it with the
  learning rate: the "gradients" it produces are already ``lr * grad`` and
  the update is a single in-place subtraction per parameter;
- LSTM: the input projection of all T steps is one GEMM before the loop; the
  gates are reordered to (i, f, o, g) so the three sigmoids are one slice,
  and sigmoid(a) = 0.5 * tanh(0.5 a) + 0.5 with the 0.5 folded into the
  weights, so one ``tanh`` call activates all four gates; weight gradients
  are one GEMM over all T after the backward loop.

Every matrix product goes through the module-level name ``_mm`` so the
harness can swap in a recorder and replay the exact GEMM shapes of a step
(the BLAS-bound floor).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

LR = 0.01
BN_EPS = 1e-5

# Every GEMM of every step is made through this name (see harness.gemm_floor).
_mm = np.matmul


# --------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------

class _Workload:
    """Base class: subclasses fill ``self.grads`` (name -> array shaped like
    the param, possibly a view of an internal buffer) in ``_backward(seed)``,
    where ``seed`` scales the whole backward pass."""

    params: dict
    grads: dict

    def _forward(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, seed: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> float:
        loss = self._forward()
        self._backward(LR)  # grads now hold lr * grad
        p = self.params
        for name, g in self.grads.items():
            w = p[name]
            if w.shape != g.shape:  # a grad laid out as a reshaped view
                w = w.reshape(g.shape)
            np.subtract(w, g, out=w)
        return loss

    def loss(self) -> float:
        return self._forward()

    def loss_and_grads(self):
        loss = self._forward()
        self._backward(1.0)
        p = self.params
        return loss, {k: np.array(g, copy=True).reshape(p[k].shape) for k, g in self.grads.items()}


def _as(a, dt):
    """``a`` in dtype ``dt`` (no copy when it already is)."""
    return a if a.dtype == dt else a.astype(dt)


class _SoftmaxCE:
    """Mean softmax cross-entropy over the rows of logits z (N, K)."""

    def __init__(self, N, K, dt):
        self.e = np.empty((N, K), dt)
        self.m = np.empty((N, 1), dt)
        self.s = np.empty((N, 1), dt)
        self.rows = np.arange(N)
        self.N = N

    def forward(self, z, y) -> float:
        e = self.e
        np.max(z, axis=1, keepdims=True, out=self.m)
        np.subtract(z, self.m, out=e)
        zy = e[self.rows, y]
        np.exp(e, out=e)
        np.sum(e, axis=1, keepdims=True, out=self.s)
        self.y = y
        return float(np.mean(np.log(self.s[:, 0]) - zy, dtype=np.float64))

    def backward(self, seed, out):
        """out = seed * d(loss)/dz = seed/N * (softmax - onehot)."""
        np.divide(self.e, self.s, out=out)
        out[self.rows, self.y] -= 1.0
        np.multiply(out, seed / self.N, out=out)
        return out


class _Conv3:
    """3x3 convolution, stride 1, padding 1, on NHWC activations.

    The caller writes the input into ``self.xin`` (the interior of a zero-
    padded buffer), calls ``forward(W, b)`` -> z (N*H*W, O), and later
    ``backward(dz, W)`` which fills ``dW`` (a (O, C, 3, 3) view) and ``db``
    and returns dx as a (N, H, W, C) view (when ``need_dx``).
    """

    def __init__(self, N, H, W, C, O, dt, need_dx):
        self.N, self.H, self.W, self.C, self.O = N, H, W, C, O
        self.need_dx = need_dx
        M = N * H * W
        self.xp = np.zeros((N, H + 2, W + 2, C), dt)
        self.xin = self.xp[:, 1:H + 1, 1:W + 1, :]
        s0, s1, s2, s3 = self.xp.strides
        if C < 4:
            # tap-major columns (9C, M): the copy's inner loop runs along W
            # instead of along a tiny channel axis
            self.win = as_strided(self.xp, (3, 3, C, N, H, W), (s1, s2, s3, s0, s1, s2))
            self.cols = np.empty((3, 3, C, N, H, W), dt)
            self.A = self.cols.reshape(9 * C, M).T
        else:
            self.win = as_strided(self.xp, (N, H, W, 3, 3, C), (s0, s1, s2, s1, s2, s3))
            self.cols = np.empty((N, H, W, 3, 3, C), dt)
            self.A = self.cols.reshape(M, 9 * C)
        self.Wm = np.empty((3, 3, C, O), dt)  # rows (i, j, c) x O
        self.Wm2 = self.Wm.reshape(9 * C, O)
        self.z = np.empty((M, O), dt)
        self.dWm = np.empty((O, 9 * C), dt)
        self.dW = self.dWm.reshape(O, 3, 3, C).transpose(0, 3, 1, 2)
        self.db = np.empty(O, dt)
        self.ones = np.ones(M, dt)
        if need_dx:
            L = N * (H + 2) * (W + 2)
            self.Wt = np.empty((3, 3, O, C), dt)
            # output gradient on the padded grid, top-left aligned, zero border
            self.dzp = np.zeros((N, H + 2, W + 2, O), dt)
            self.dzp_in = self.dzp[:, :H, :W, :]
            self.dzp2 = self.dzp.reshape(L, O)
            self.dxp = np.empty((N, H + 2, W + 2, C), dt)
            self.dxp2 = self.dxp.reshape(L, C)
            self.dx = self.dxp[:, 1:H + 1, 1:W + 1, :]
            self.G = np.empty((L, C), dt)
            self.L = L

    def forward(self, W, b):
        np.copyto(self.Wm, W.transpose(2, 3, 1, 0))
        np.copyto(self.cols, self.win)
        _mm(self.A, self.Wm2, out=self.z)
        if b is not None:
            np.add(self.z, b, out=self.z)
        return self.z

    def backward(self, dz, W):
        _mm(dz.T, self.A, out=self.dWm)
        np.dot(self.ones, dz, out=self.db)
        if not self.need_dx:
            return None
        N, H, Wd, C, O = self.N, self.H, self.W, self.C, self.O
        np.copyto(self.Wt, W.transpose(2, 3, 0, 1))
        np.copyto(self.dzp_in, dz.reshape(N, H, Wd, O))
        # dxp[q + i*(W+2) + j] += dzp[q] @ W[:, :, i, j]   (flat padded index q)
        L, dzp2, dxp2, G = self.L, self.dzp2, self.dxp2, self.G
        _mm(dzp2, self.Wt[0, 0], out=dxp2)
        for i in range(3):
            for j in range(3):
                off = i * (Wd + 2) + j
                if off == 0:
                    continue
                n = L - off
                _mm(dzp2[:n], self.Wt[i, j], out=G[:n])
                np.add(dxp2[off:], G[:n], out=dxp2[off:])
        return self.dx


class _Pool2:
    """2x2 max pooling, stride 2, of a contiguous NHWC tensor (H, W even)."""

    def __init__(self, N, H, W, C, dt):
        self.shape6 = (N, H // 2, 2, W // 2, 2, C)
        self.tmp = np.empty((N, H // 2, W // 2, 2, C), dt)
        self.mask = np.empty(self.shape6, dt)

    def forward(self, x4, out):
        x6 = x4.reshape(self.shape6)
        np.maximum(x6[:, :, 0], x6[:, :, 1], out=self.tmp)
        np.maximum(self.tmp[:, :, :, 0], self.tmp[:, :, :, 1], out=out)
        return out

    def backward(self, x4, pooled, dpooled, dx4):
        """dx4 (contiguous, like x4) = [x == its window max] * dpooled."""
        x6 = x4.reshape(self.shape6)
        np.equal(x6, pooled[:, :, None, :, None, :], out=self.mask)
        np.multiply(self.mask, dpooled[:, :, None, :, None, :], out=dx4.reshape(self.shape6))
        return dx4


# --------------------------------------------------------------------------
# W1 mlp
# --------------------------------------------------------------------------

class MLP(_Workload):
    """W1: x (N, 784) -> Dense 256 -> ReLU -> Dense 256 -> ReLU -> Dense 10
    -> softmax cross-entropy (batch mean).  Params ``fc{k}.W`` (in, out) and
    ``fc{k}.b``; any number of layers ``fc1..fcK`` (ReLU between)."""

    def __init__(self, params, data):
        self.params = p = params
        K = 1
        while f"fc{K + 1}.W" in p:
            K += 1
        self.K = K
        dt = p["fc1.W"].dtype
        self.x = _as(data["x"], dt)
        self.y = np.asarray(data["y"])
        N = self.x.shape[0]
        self.h = [self.x] + [np.empty((N, p[f"fc{k}.W"].shape[1]), dt) for k in range(1, K + 1)]
        self.dh = [None] + [np.empty_like(a) for a in self.h[1:]]
        self.mask = [None] + [np.empty_like(a) for a in self.h[1:K]]
        self.ones = np.ones(N, dt)
        self.ce = _SoftmaxCE(N, self.h[K].shape[1], dt)
        self.grads = {}
        for k in range(1, K + 1):
            self.grads[f"fc{k}.W"] = np.empty_like(p[f"fc{k}.W"])
            self.grads[f"fc{k}.b"] = np.empty_like(p[f"fc{k}.b"])

    def _forward(self):
        p, h = self.params, self.h
        for k in range(1, self.K + 1):
            _mm(h[k - 1], p[f"fc{k}.W"], out=h[k])
            np.add(h[k], p[f"fc{k}.b"], out=h[k])
            if k < self.K:
                np.maximum(h[k], 0, out=h[k])
        return self.ce.forward(h[self.K], self.y)

    def _backward(self, seed):
        p, h, dh, g = self.params, self.h, self.dh, self.grads
        K = self.K
        self.ce.backward(seed, dh[K])
        for k in range(K, 0, -1):
            _mm(h[k - 1].T, dh[k], out=g[f"fc{k}.W"])
            np.dot(self.ones, dh[k], out=g[f"fc{k}.b"])
            if k > 1:
                _mm(dh[k], p[f"fc{k}.W"].T, out=dh[k - 1])
                np.greater(h[k - 1], 0, out=self.mask[k - 1])
                np.multiply(dh[k - 1], self.mask[k - 1], out=dh[k - 1])


# --------------------------------------------------------------------------
# W2 cnn
# --------------------------------------------------------------------------

class CNN(_Workload):
    """W2: x (N, 1, 28, 28) -> conv1 3x3 16ch pad 1 + bias -> ReLU -> maxpool 2
    -> conv2 3x3 32ch pad 1 + bias -> ReLU -> maxpool 2 -> flatten (C, H, W
    order, as PyTorch: 1568) -> fc (1568, 10) + bias -> softmax CE."""

    def __init__(self, params, data):
        self.params = p = params
        dt = p["conv1.W"].dtype
        self.x = _as(data["x"], dt)
        self.y = np.asarray(data["y"])
        N, Cin, H, W = self.x.shape
        C1, C2 = p["conv1.W"].shape[0], p["conv2.W"].shape[0]
        H2, W2, H4, W4 = H // 2, W // 2, H // 4, W // 4
        K = p["fc.W"].shape[1]
        self.dims = (N, Cin, H, W, C1, C2, K)
        self.conv1 = _Conv3(N, H, W, Cin, C1, dt, need_dx=False)
        self.conv2 = _Conv3(N, H2, W2, C1, C2, dt, need_dx=True)
        self.pool1 = _Pool2(N, H, W, C1, dt)
        self.pool2 = _Pool2(N, H2, W2, C2, dt)
        self.p2 = np.empty((N, H4, W4, C2), dt)  # pooled, then ReLU'd in place
        self.feat = self.p2.reshape(N, H4 * W4 * C2)  # NHWC flatten
        self.fcW = np.empty((H4 * W4 * C2, K), dt)  # fc.W rows permuted to NHWC
        self.logits = np.empty((N, K), dt)
        self.ce = _SoftmaxCE(N, K, dt)
        self.dlogits = np.empty((N, K), dt)
        self.dfcW = np.empty((H4 * W4 * C2, K), dt)
        self.dfeat = np.empty((N, H4 * W4 * C2), dt)
        self.dp2 = self.dfeat.reshape(N, H4, W4, C2)
        self.mask2 = np.empty((N, H4, W4, C2), dt)
        self.dz2 = np.empty((N * H2 * W2, C2), dt)
        self.mask1 = np.empty((N, H2, W2, C1), dt)
        self.dp1 = np.empty((N, H2, W2, C1), dt)
        self.dz1 = np.empty((N * H * W, C1), dt)
        self.onesN = np.ones(N, dt)
        self.grads = {
            "conv1.W": self.conv1.dW, "conv1.b": self.conv1.db,
            "conv2.W": self.conv2.dW, "conv2.b": self.conv2.db,
            # fc.W's rows in PyTorch's (c, h, w) flatten order, as a
            # (C2, H4, W4, K) view of dfcW (rows in NHWC order)
            "fc.W": self.dfcW.reshape(H4, W4, C2, K).transpose(2, 0, 1, 3),
            "fc.b": np.empty(K, dt),
        }

    def _forward(self):
        p = self.params
        N, Cin, H, W, C1, C2, K = self.dims
        c1, c2 = self.conv1, self.conv2
        np.copyto(c1.xin, self.x.transpose(0, 2, 3, 1))
        z1 = c1.forward(p["conv1.W"], p["conv1.b"])
        # pool then ReLU (they commute); the result lands in conv2's input
        self.pool1.forward(z1.reshape(N, H, W, C1), c2.xin)
        np.maximum(c2.xin, 0, out=c2.xin)
        z2 = c2.forward(p["conv2.W"], p["conv2.b"])
        self.pool2.forward(z2.reshape(N, H // 2, W // 2, C2), self.p2)
        np.maximum(self.p2, 0, out=self.p2)
        np.copyto(self.fcW.reshape(H // 4, W // 4, C2, K),
                  p["fc.W"].reshape(C2, H // 4, W // 4, K).transpose(1, 2, 0, 3))
        _mm(self.feat, self.fcW, out=self.logits)
        np.add(self.logits, p["fc.b"], out=self.logits)
        return self.ce.forward(self.logits, self.y)

    def _backward(self, seed):
        p, g = self.params, self.grads
        N, Cin, H, W, C1, C2, K = self.dims
        c1, c2 = self.conv1, self.conv2
        dl = self.ce.backward(seed, self.dlogits)
        _mm(self.feat.T, dl, out=self.dfcW)
        np.dot(self.onesN, dl, out=g["fc.b"])
        _mm(dl, self.fcW.T, out=self.dfeat)
        np.greater(self.p2, 0, out=self.mask2)
        np.multiply(self.dp2, self.mask2, out=self.dp2)
        z2 = c2.z.reshape(N, H // 2, W // 2, C2)
        self.pool2.backward(z2, self.p2, self.dp2, self.dz2.reshape(z2.shape))
        dx2 = c2.backward(self.dz2, p["conv2.W"])
        np.greater(c2.xin, 0, out=self.mask1)
        np.multiply(dx2, self.mask1, out=self.dp1)
        z1 = c1.z.reshape(N, H, W, C1)
        self.pool1.backward(z1, c2.xin, self.dp1, self.dz1.reshape(z1.shape))
        c1.backward(self.dz1, p["conv1.W"])


# --------------------------------------------------------------------------
# W3 lstm
# --------------------------------------------------------------------------

class LSTM(_Workload):
    """W3: x (B, T, I) batch-first -> LSTM (PyTorch equations and gate order
    i, f, g, o; h0 = c0 = 0) -> last hidden state -> fc (H, 10) + bias ->
    softmax CE; full backprop through time."""

    def __init__(self, params, data):
        self.params = p = params
        dt = p["lstm.W_ih"].dtype
        self.x = _as(data["x"], dt)
        self.y = np.asarray(data["y"])
        B, T, I = self.x.shape
        H = p["lstm.W_hh"].shape[1]
        K = p["fc.W"].shape[1]
        self.dims = (B, T, I, H, K)
        # internal gate order (i, f, o, g): the three sigmoid gates contiguous
        self.perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
        self.inv = np.argsort(self.perm)
        self.scale = np.concatenate([np.full(3 * H, 0.5), np.ones(H)]).astype(dt)[:, None]
        self.Wih = np.empty((4 * H, I), dt)    # permuted, sigmoid rows halved
        self.Whh = np.empty((4 * H, H), dt)    # permuted, sigmoid rows halved
        self.Whh_u = np.empty((4 * H, H), dt)  # permuted, unscaled (backward)
        self.bias = np.empty(4 * H, dt)
        self.bsum = np.empty(4 * H, dt)
        self.xs = np.empty((T, B, I), dt)
        self.XW = np.empty((T, B, 4 * H), dt)
        self.A = np.empty((T, B, 4 * H), dt)   # activated gates
        self.Cs = np.zeros((T + 1, B, H), dt)  # cell states, Cs[0] = 0
        self.TC = np.empty((T, B, H), dt)      # tanh(c_t)
        self.Hs = np.zeros((T + 1, B, H), dt)  # hidden states, Hs[0] = 0
        self.tmp = np.empty((B, H), dt)
        self.logits = np.empty((B, K), dt)
        self.ce = _SoftmaxCE(B, K, dt)
        self.dlogits = np.empty((B, K), dt)
        self.dG = np.empty((T, B, 4 * H), dt)  # d loss / d pre-activations
        self.D = np.empty((T, B, 4 * H), dt)     # gates' local derivatives
        self.Q = np.empty((T, B, H), dt)         # o * (1 - tanh(c)^2)
        self.dh = np.empty((B, H), dt)
        self.dc = np.empty((B, H), dt)
        self.dWih = np.empty((4 * H, I), dt)
        self.dWhh = np.empty((4 * H, H), dt)
        self.db = np.empty(4 * H, dt)
        self.onesB = np.ones(B, dt)
        self.onesTB = np.ones(T * B, dt)
        self.grads = {
            "lstm.W_ih": np.empty((4 * H, I), dt),
            "lstm.W_hh": np.empty((4 * H, H), dt),
            "lstm.b_ih": np.empty(4 * H, dt),
            "lstm.b_hh": np.empty(4 * H, dt),
            "fc.W": np.empty((H, K), dt),
            "fc.b": np.empty(K, dt),
        }

    def _forward(self):
        p = self.params
        B, T, I, H, K = self.dims
        np.take(p["lstm.W_ih"], self.perm, axis=0, out=self.Wih)
        np.multiply(self.Wih, self.scale, out=self.Wih)
        np.take(p["lstm.W_hh"], self.perm, axis=0, out=self.Whh_u)
        np.multiply(self.Whh_u, self.scale, out=self.Whh)
        np.add(p["lstm.b_ih"], p["lstm.b_hh"], out=self.bsum)
        np.take(self.bsum, self.perm, out=self.bias)
        np.multiply(self.bias, self.scale[:, 0], out=self.bias)
        np.copyto(self.xs, self.x.transpose(1, 0, 2))
        XW2 = self.XW.reshape(T * B, 4 * H)
        _mm(self.xs.reshape(T * B, I), self.Wih.T, out=XW2)
        np.add(XW2, self.bias, out=XW2)
        A, Cs, TC, Hs, tmp = self.A, self.Cs, self.TC, self.Hs, self.tmp
        WhhT = self.Whh.T
        H3 = 3 * H
        for t in range(T):
            a = A[t]
            if t == 0:
                np.tanh(self.XW[0], out=a)
            else:
                _mm(Hs[t], WhhT, out=a)
                np.add(a, self.XW[t], out=a)
                np.tanh(a, out=a)
            s = a[:, :H3]
            np.multiply(s, 0.5, out=s)
            np.add(s, 0.5, out=s)
            c = Cs[t + 1]
            np.multiply(a[:, H:2 * H], Cs[t], out=c)
            np.multiply(a[:, :H], a[:, H3:], out=tmp)
            np.add(c, tmp, out=c)
            np.tanh(c, out=TC[t])
            np.multiply(a[:, 2 * H:H3], TC[t], out=Hs[t + 1])
        _mm(Hs[T], p["fc.W"], out=self.logits)
        np.add(self.logits, p["fc.b"], out=self.logits)
        return self.ce.forward(self.logits, self.y)

    def _backward(self, seed):
        p, g = self.params, self.grads
        B, T, I, H, K = self.dims
        H2, H3 = 2 * H, 3 * H
        dl = self.ce.backward(seed, self.dlogits)
        _mm(self.Hs[T].T, dl, out=g["fc.W"])
        np.dot(self.onesB, dl, out=g["fc.b"])
        dh, dc, tmp = self.dh, self.dc, self.tmp
        _mm(dl, p["fc.W"].T, out=dh)
        A, Cs, TC, dG, D, Q = self.A, self.Cs, self.TC, self.dG, self.D, self.Q
        # local derivatives for all T at once, outside the loop:
        # D = s (1 - s) for the sigmoid gates, 1 - g^2 for g; Q = o (1 - tanh(c)^2)
        np.multiply(A, A, out=D)
        np.subtract(A[..., :H3], D[..., :H3], out=D[..., :H3])
        np.subtract(1, D[..., H3:], out=D[..., H3:])
        np.multiply(TC, TC, out=Q)
        np.subtract(1, Q, out=Q)
        np.multiply(Q, A[..., H2:H3], out=Q)
        Whh_u = self.Whh_u
        for t in range(T - 1, -1, -1):
            a, d = A[t], dG[t]
            np.multiply(dh, TC[t], out=d[:, H2:H3])         # d o
            if t == T - 1:                                  # dc += dh o (1 - tc^2)
                np.multiply(dh, Q[t], out=dc)
            else:
                np.multiply(dh, Q[t], out=tmp)
                np.add(dc, tmp, out=dc)
            np.multiply(dc, a[:, H3:], out=d[:, :H])        # d i
            np.multiply(dc, Cs[t], out=d[:, H:H2])          # d f
            np.multiply(dc, a[:, :H], out=d[:, H3:])        # d g
            np.multiply(dc, a[:, H:H2], out=dc)             # dc_{t-1}
            np.multiply(d, D[t], out=d)                     # pre-activation grads
            if t > 0:
                _mm(d, Whh_u, out=dh)
        TB = T * B
        dG2 = dG.reshape(TB, 4 * H)
        _mm(dG2.T, self.xs.reshape(TB, I), out=self.dWih)
        _mm(dG[1:].reshape(TB - B, 4 * H).T, self.Hs[1:T].reshape(TB - B, H), out=self.dWhh)
        np.dot(self.onesTB, dG2, out=self.db)
        np.take(self.dWih, self.inv, axis=0, out=g["lstm.W_ih"])
        np.take(self.dWhh, self.inv, axis=0, out=g["lstm.W_hh"])
        np.take(self.db, self.inv, out=g["lstm.b_ih"])
        np.copyto(g["lstm.b_hh"], g["lstm.b_ih"])


# --------------------------------------------------------------------------
# W4 resnet bottleneck
# --------------------------------------------------------------------------

class _BN:
    """BatchNorm (training mode, batch statistics, biased variance) over the
    rows of a (M, C) matrix, as y = z * scale + shift: column sums are GEMVs,
    and the normalised input is never stored (the backward is written in z)."""

    def __init__(self, M, C, dt):
        self.M = M
        self.ones = np.ones(M, dt)
        self.tmp = np.empty((M, C), dt)
        self.mean = np.empty(C, dt)
        self.inv = np.empty(C, dt)
        self.scale = np.empty(C, dt)
        self.shift = np.empty(C, dt)
        self.sdz = np.empty(C, dt)
        self.dgamma = np.empty(C, dt)
        self.dbeta = np.empty(C, dt)

    def forward(self, z, gamma, beta, out):
        """``out`` (may be an (N, H, W, C) view) = BN(z); keeps z for backward."""
        self.z = z
        M, tmp, mean, inv = self.M, self.tmp, self.mean, self.inv
        np.dot(self.ones, z, out=mean)
        np.multiply(mean, 1.0 / M, out=mean)
        np.multiply(z, z, out=tmp)
        np.dot(self.ones, tmp, out=inv)                 # sum z^2
        np.multiply(inv, 1.0 / M, out=inv)
        inv -= mean * mean                              # biased variance
        np.add(inv, BN_EPS, out=inv)
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        np.multiply(gamma, inv, out=self.scale)
        np.subtract(beta, mean * self.scale, out=self.shift)
        np.multiply(z.reshape(out.shape), self.scale, out=out)
        np.add(out, self.shift, out=out)
        return out

    def backward(self, dy, gamma, dz):
        """With xh = (z - mean) inv, k = gamma inv:
        dgamma = sum(dy xh) = inv (sum(dy z) - mean sum(dy)), dbeta = sum(dy),
        dz = k dy - k inv dgamma / M (z - mean) - k dbeta / M.
        ``dz`` may alias ``dy``."""
        M, z, tmp, inv, mean = self.M, self.z, self.tmp, self.inv, self.mean
        np.multiply(dy, z, out=tmp)
        np.dot(self.ones, tmp, out=self.sdz)
        np.dot(self.ones, dy, out=self.dbeta)
        np.multiply(inv, self.sdz - mean * self.dbeta, out=self.dgamma)
        k = gamma * inv
        a = -k * inv * self.dgamma / M
        c = -a * mean - k * self.dbeta / M
        np.multiply(z, a, out=tmp)
        np.multiply(dy, k, out=dz)
        np.add(dz, tmp, out=dz)
        np.add(dz, c, out=dz)
        return dz


class Bottleneck(_Workload):
    """W4: x (N, 64, 16, 16) -> conv1 1x1 64->16 (no bias) -> bn1 -> ReLU ->
    conv2 3x3 16->16 pad 1 (no bias) -> bn2 -> ReLU -> conv3 1x1 16->64 (no
    bias) -> bn3 -> + x -> ReLU; loss = mean of squares of the output.
    BatchNorm in training mode (batch statistics, biased variance, eps 1e-5)."""

    def __init__(self, params, data):
        self.params = p = params
        dt = p["conv1.W"].dtype
        self.x = _as(data["x"], dt)
        N, C, H, W = self.x.shape
        Cm = p["conv1.W"].shape[0]
        M = N * H * W
        self.dims = (N, C, H, W, Cm, M)
        self.X = np.empty((M, C), dt)
        self.z1 = np.empty((M, Cm), dt)
        self.bn1 = _BN(M, Cm, dt)
        self.conv2 = _Conv3(N, H, W, Cm, Cm, dt, need_dx=True)
        self.bn2 = _BN(M, Cm, dt)
        self.a2 = np.empty((M, Cm), dt)
        self.z3 = np.empty((M, C), dt)
        self.bn3 = _BN(M, C, dt)
        self.out = np.empty((M, C), dt)
        self.dout = np.empty((M, C), dt)
        self.da2 = np.empty((M, Cm), dt)
        self.mask2 = np.empty((M, Cm), dt)
        self.da1 = np.empty((M, Cm), dt)
        self.mask1 = np.empty((N, H, W, Cm), dt)
        self.grads = {
            "conv1.W": np.empty((Cm, C), dt).reshape(Cm, C, 1, 1),
            "bn1.gamma": self.bn1.dgamma, "bn1.beta": self.bn1.dbeta,
            "conv2.W": self.conv2.dW,
            "bn2.gamma": self.bn2.dgamma, "bn2.beta": self.bn2.dbeta,
            "conv3.W": np.empty((C, Cm), dt).reshape(C, Cm, 1, 1),
            "bn3.gamma": self.bn3.dgamma, "bn3.beta": self.bn3.dbeta,
        }

    def _forward(self):
        p = self.params
        N, C, H, W, Cm, M = self.dims
        X = self.X
        np.copyto(X.reshape(N, H, W, C), self.x.transpose(0, 2, 3, 1))
        _mm(X, p["conv1.W"].reshape(Cm, C).T, out=self.z1)
        c2 = self.conv2
        a1 = c2.xin  # (N, H, W, Cm) interior of conv2's padded input
        self.bn1.forward(self.z1, p["bn1.gamma"], p["bn1.beta"], a1)
        np.maximum(a1, 0, out=a1)
        z2 = c2.forward(p["conv2.W"], None)
        self.bn2.forward(z2, p["bn2.gamma"], p["bn2.beta"], self.a2)
        np.maximum(self.a2, 0, out=self.a2)
        _mm(self.a2, p["conv3.W"].reshape(C, Cm).T, out=self.z3)
        out = self.out
        self.bn3.forward(self.z3, p["bn3.gamma"], p["bn3.beta"], out)
        np.add(out, X, out=out)
        np.maximum(out, 0, out=out)
        o = out.reshape(-1)
        return float(np.dot(o, o)) / o.size

    def _backward(self, seed):
        p, g = self.params, self.grads
        N, C, H, W, Cm, M = self.dims
        # d/d(pre-ReLU) of mean(out^2) is 2 out / size (0 where the ReLU is off)
        dy = np.multiply(self.out, 2.0 * seed / self.out.size, out=self.dout)
        dz3 = self.bn3.backward(dy, p["bn3.gamma"], dy)
        _mm(dz3.T, self.a2, out=g["conv3.W"].reshape(C, Cm))
        _mm(dz3, p["conv3.W"].reshape(C, Cm), out=self.da2)
        np.greater(self.a2, 0, out=self.mask2)
        np.multiply(self.da2, self.mask2, out=self.da2)
        dz2 = self.bn2.backward(self.da2, p["bn2.gamma"], self.da2)
        c2 = self.conv2
        dx = c2.backward(dz2, p["conv2.W"])
        np.greater(c2.xin, 0, out=self.mask1)
        da1 = self.da1
        np.multiply(dx, self.mask1, out=da1.reshape(N, H, W, Cm))
        dz1 = self.bn1.backward(da1, p["bn1.gamma"], da1)
        _mm(dz1.T, self.X, out=g["conv1.W"].reshape(Cm, C))


# --------------------------------------------------------------------------
# W5 unet
# --------------------------------------------------------------------------

class UNet(_Workload):
    """W5, a two-level U-Net.  Exactly (NCHW shapes for the full size, batch 4):

    ====  ==========================================================  ==============
    name  layer                                                       output
    ====  ==========================================================  ==============
    x     input                                                       (4, 1, 32, 32)
    enc1  conv 3x3, 1->8, pad 1, bias; ReLU             -> e1         (4, 8, 32, 32)
          maxpool 2                                                   (4, 8, 16, 16)
    enc2  conv 3x3, 8->16, pad 1, bias; ReLU            -> e2         (4, 16, 16, 16)
          maxpool 2                                                   (4, 16, 8, 8)
    enc3  conv 3x3, 16->32, pad 1, bias; ReLU           -> e3         (4, 32, 8, 8)
    up2   ConvTranspose2d 32->16, kernel 2, stride 2, bias (no act.)  (4, 16, 16, 16)
          concat channels [e2, up2]   (skip first)                    (4, 32, 16, 16)
    dec2  conv 3x3, 32->16, pad 1, bias; ReLU           -> d2         (4, 16, 16, 16)
    up1   ConvTranspose2d 16->8, kernel 2, stride 2, bias (no act.)   (4, 8, 32, 32)
          concat channels [e1, up1]   (skip first)                    (4, 16, 32, 32)
    dec1  conv 3x3, 16->8, pad 1, bias; ReLU            -> d1         (4, 8, 32, 32)
    out   conv 1x1, 8->1, bias                          -> logits     (4, 1, 32, 32)
    loss  binary cross-entropy with logits against y (0/1 mask, same shape), mean
    ====  ==========================================================  ==============

    Params: ``enc1.W`` (8,1,3,3) ``enc1.b`` (8), ``enc2.W`` (16,8,3,3),
    ``enc2.b``, ``enc3.W`` (32,16,3,3), ``enc3.b``, ``up2.W`` (32,16,2,2)
    ``up2.b`` (16), ``dec2.W`` (16,32,3,3), ``dec2.b``, ``up1.W`` (16,8,2,2),
    ``up1.b`` (8), ``dec1.W`` (8,16,3,3), ``dec1.b``, ``out.W`` (1,8,1,1),
    ``out.b`` (1).  Conv W is (out, in, kh, kw); ConvTranspose W is
    (in, out, kh, kw), both as in PyTorch.  Channel counts and sizes are read
    from the params and x, so the small test configuration reuses this class.
    """

    def __init__(self, params, data):
        self.params = p = params
        dt = p["enc1.W"].dtype
        self.x = _as(data["x"], dt)
        self.y = _as(data["y"], dt).reshape(-1)
        N, Cin, S, _ = self.x.shape
        c1, c2, c3 = p["enc1.W"].shape[0], p["enc2.W"].shape[0], p["enc3.W"].shape[0]
        S2, S4 = S // 2, S // 4
        M1, M2, M3 = N * S * S, N * S2 * S2, N * S4 * S4
        self.dims = (N, Cin, S, c1, c2, c3)
        self.enc1 = _Conv3(N, S, S, Cin, c1, dt, need_dx=False)
        self.enc2 = _Conv3(N, S2, S2, c1, c2, dt, need_dx=True)
        self.enc3 = _Conv3(N, S4, S4, c2, c3, dt, need_dx=True)
        self.dec2 = _Conv3(N, S2, S2, 2 * c2, c2, dt, need_dx=True)
        self.dec1 = _Conv3(N, S, S, 2 * c1, c1, dt, need_dx=True)
        self.pool1 = _Pool2(N, S, S, c1, dt)
        self.pool2 = _Pool2(N, S2, S2, c2, dt)
        self.up2 = _UpConv2(N, S4, S4, c3, c2, dt, self.dec2, c2)
        self.up1 = _UpConv2(N, S2, S2, c2, c1, dt, self.dec1, c1)
        self.Wo = np.empty((c1, 1), dt)
        self.logits = np.empty((M1, 1), dt)
        self.t1 = np.empty(M1, dt)
        self.t2 = np.empty(M1, dt)
        self.dlog = np.empty((M1, 1), dt)
        self.dd1 = np.empty((M1, c1), dt)
        self.mask_d1 = np.empty((M1, c1), dt)
        self.dd2 = np.empty((M2, c2), dt)
        self.mask_d2 = np.empty((M2, c2), dt)
        self.de3 = np.empty((M3, c3), dt)
        self.mask_e3 = np.empty((M3, c3), dt)
        self.de2 = np.empty((M2, c2), dt)
        self.mask_e2 = np.empty((M2, c2), dt)
        self.de1 = np.empty((M1, c1), dt)
        self.mask_e1 = np.empty((M1, c1), dt)
        self.ones1 = np.ones(M1, dt)
        self.grads = {}
        for name, conv in (("enc1", self.enc1), ("enc2", self.enc2), ("enc3", self.enc3),
                           ("dec2", self.dec2), ("dec1", self.dec1)):
            self.grads[name + ".W"] = conv.dW
            self.grads[name + ".b"] = conv.db
        for name, up in (("up2", self.up2), ("up1", self.up1)):
            self.grads[name + ".W"] = up.dW
            self.grads[name + ".b"] = up.db
        self.dWo = np.empty((1, c1), dt)
        self.grads["out.W"] = self.dWo.reshape(1, c1, 1, 1)
        self.grads["out.b"] = np.empty(1, dt)

    def _forward(self):
        p = self.params
        N, Cin, S, c1, c2, c3 = self.dims
        S2, S4 = S // 2, S // 4
        e1c, e2c, e3c, d2c, d1c = self.enc1, self.enc2, self.enc3, self.dec2, self.dec1
        np.copyto(e1c.xin, self.x.transpose(0, 2, 3, 1))
        e1 = e1c.forward(p["enc1.W"], p["enc1.b"])
        np.maximum(e1, 0, out=e1)
        e1_4 = e1.reshape(N, S, S, c1)
        np.copyto(d1c.xin[..., :c1], e1_4)           # skip
        self.pool1.forward(e1_4, e2c.xin)
        e2 = e2c.forward(p["enc2.W"], p["enc2.b"])
        np.maximum(e2, 0, out=e2)
        e2_4 = e2.reshape(N, S2, S2, c2)
        np.copyto(d2c.xin[..., :c2], e2_4)           # skip
        self.pool2.forward(e2_4, e3c.xin)
        e3 = e3c.forward(p["enc3.W"], p["enc3.b"])
        np.maximum(e3, 0, out=e3)
        self.up2.forward(e3, p["up2.W"], p["up2.b"])  # into dec2's input [..., c2:]
        d2 = d2c.forward(p["dec2.W"], p["dec2.b"])
        np.maximum(d2, 0, out=d2)
        self.up1.forward(d2, p["up1.W"], p["up1.b"])  # into dec1's input [..., c1:]
        d1 = d1c.forward(p["dec1.W"], p["dec1.b"])
        np.maximum(d1, 0, out=d1)
        np.copyto(self.Wo, p["out.W"].reshape(1, c1).T)
        z = self.logits
        _mm(d1, self.Wo, out=z)
        np.add(z, p["out.b"], out=z)
        # BCE with logits: max(z, 0) - z y + log1p(exp(-|z|))
        z1, t1, t2 = z.reshape(-1), self.t1, self.t2
        np.abs(z1, out=t1)
        np.negative(t1, out=t1)
        np.exp(t1, out=t1)
        np.log1p(t1, out=t1)
        np.maximum(z1, 0, out=t2)
        np.add(t1, t2, out=t1)
        np.multiply(z1, self.y, out=t2)
        np.subtract(t1, t2, out=t1)
        return float(np.sum(t1, dtype=np.float64)) / t1.size

    def _backward(self, seed):
        p, g = self.params, self.grads
        N, Cin, S, c1, c2, c3 = self.dims
        S2, S4 = S // 2, S // 4
        e1c, e2c, e3c, d2c, d1c = self.enc1, self.enc2, self.enc3, self.dec2, self.dec1
        z1, dz = self.logits.reshape(-1), self.dlog.reshape(-1)
        M1 = z1.size
        # d/dz = (sigmoid(z) - y) / M, sigmoid via tanh
        np.multiply(z1, 0.5, out=dz)
        np.tanh(dz, out=dz)
        np.multiply(dz, 0.5, out=dz)
        np.add(dz, 0.5, out=dz)
        np.subtract(dz, self.y, out=dz)
        np.multiply(dz, seed / M1, out=dz)
        d1 = d1c.z
        _mm(self.dlog.T, d1, out=self.dWo)
        g["out.b"][0] = np.sum(dz)
        _mm(self.dlog, self.Wo.T, out=self.dd1)
        np.greater(d1, 0, out=self.mask_d1)
        np.multiply(self.dd1, self.mask_d1, out=self.dd1)
        dx1 = d1c.backward(self.dd1, p["dec1.W"])     # (N, S, S, 2 c1)
        d2 = d2c.z
        self.up1.backward(dx1[..., c1:], d2, p["up1.W"], self.dd2)
        np.greater(d2, 0, out=self.mask_d2)
        np.multiply(self.dd2, self.mask_d2, out=self.dd2)
        dx2 = d2c.backward(self.dd2, p["dec2.W"])     # (N, S2, S2, 2 c2)
        e3 = e3c.z
        self.up2.backward(dx2[..., c2:], e3, p["up2.W"], self.de3)
        np.greater(e3, 0, out=self.mask_e3)
        np.multiply(self.de3, self.mask_e3, out=self.de3)
        dp2 = e3c.backward(self.de3, p["enc3.W"])     # (N, S4, S4, c2)
        e2 = e2c.z
        de2 = self.de2
        self.pool2.backward(e2.reshape(N, S2, S2, c2), e3c.xin, dp2, de2)
        np.add(de2.reshape(N, S2, S2, c2), dx2[..., :c2], out=de2.reshape(N, S2, S2, c2))
        np.greater(e2, 0, out=self.mask_e2)
        np.multiply(de2, self.mask_e2, out=de2)
        dp1 = e2c.backward(de2, p["enc2.W"])          # (N, S2, S2, c1)
        e1 = e1c.z
        de1 = self.de1
        self.pool1.backward(e1.reshape(N, S, S, c1), e2c.xin, dp1, de1)
        np.add(de1.reshape(N, S, S, c1), dx1[..., :c1], out=de1.reshape(N, S, S, c1))
        np.greater(e1, 0, out=self.mask_e1)
        np.multiply(de1, self.mask_e1, out=de1)
        e1c.backward(de1, p["enc1.W"])


class _UpConv2:
    """ConvTranspose2d, kernel 2, stride 2, with bias, NHWC: one GEMM
    X (M, Cin) @ W (Cin, 2*2*Cout), the result scattered (plus bias) into
    channels ``[c0:]`` of ``dest``'s padded input (the concat buffer)."""

    def __init__(self, N, H, W, Cin, Cout, dt, dest, c0):
        self.N, self.H, self.W, self.Cin, self.Cout = N, H, W, Cin, Cout
        M = N * H * W
        self.Wm = np.empty((Cin, 2, 2, Cout), dt)
        self.Wm2 = self.Wm.reshape(Cin, 4 * Cout)
        self.U = np.empty((M, 4 * Cout), dt)
        self.U6 = self.U.reshape(N, H, W, 2, 2, Cout).transpose(0, 1, 3, 2, 4, 5)
        xp = dest.xp
        s0, s1, s2, s3 = xp.strides
        # (N, H, 2, W, 2, Cout) view of dest's interior channels [c0:]
        self.out6 = as_strided(xp[:, 1:, 1:, c0:], (N, H, 2, W, 2, Cout),
                               (s0, 2 * s1, s1, 2 * s2, s2, s3))
        self.dU = np.empty((N, H, W, 2, 2, Cout), dt)
        self.dU6 = self.dU.transpose(0, 1, 3, 2, 4, 5)
        self.dU2 = self.dU.reshape(M, 4 * Cout)
        self.dWm = np.empty((Cin, 4 * Cout), dt)
        self.dW = self.dWm.reshape(Cin, 2, 2, Cout).transpose(0, 3, 1, 2)
        self.db = np.empty(Cout, dt)
        self.ones = np.ones(M * 4, dt)

    def forward(self, X, W, b):
        np.copyto(self.Wm, W.transpose(0, 2, 3, 1))
        _mm(X, self.Wm2, out=self.U)
        np.add(self.U6, b, out=self.out6)

    def backward(self, dout4, X, W, dX):
        """dout4: (N, 2H, 2W, Cout) view of the gradient; fills dW, db, dX."""
        N, H, Wd, Cout = self.N, self.H, self.W, self.Cout
        s0, s1, s2, s3 = dout4.strides
        np.copyto(self.dU6, as_strided(dout4, (N, H, 2, Wd, 2, Cout),
                                       (s0, 2 * s1, s1, 2 * s2, s2, s3)))
        np.dot(self.ones, self.dU2.reshape(-1, Cout), out=self.db)
        _mm(X.T, self.dU2, out=self.dWm)
        _mm(self.dU2, self.Wm2.T, out=dX)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

WORKLOADS = {"W1": MLP, "W2": CNN, "W3": LSTM, "W4": Bottleneck, "W5": UNet, "C1": LSTM}
NAMES = {"W1": "mlp", "W2": "cnn", "W3": "lstm", "W4": "resnet", "W5": "unet",
         "C1": "compile (W3 LSTM, T=100)"}


def glorot_uniform(rng, shape, dtype=np.float32):
    """Glorot/Xavier uniform with PyTorch's fan convention: fan_in =
    shape[1] * receptive field, fan_out = shape[0] * receptive field for
    (out, in, ...) weights; Dense (in, out) weights pass their shape
    reversed.  (The bound sqrt(6 / (fan_in + fan_out)) is symmetric, so the
    convention only matters for which dims count.)"""
    rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * rf, shape[0] * rf
    lim = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, size=shape).astype(dtype)


def _dense(rng, p, name, n_in, n_out):
    p[name + ".W"] = glorot_uniform(rng, (n_out, n_in)).T.copy()
    p[name + ".b"] = np.zeros(n_out, np.float32)


def _conv(rng, p, name, c_out, c_in, k, bias=True):
    p[name + ".W"] = glorot_uniform(rng, (c_out, c_in, k, k))
    if bias:
        p[name + ".b"] = np.zeros(c_out, np.float32)


def make_workload(name, seed=0, small=False):
    """Random float32 data and glorot-uniform params (zero biases, BatchNorm
    gamma 1 / beta 0) for workload ``name`` ("W1".."W5", or "C1": the W3
    LSTM with T = 100).  ``small`` gives a
    tiny configuration with the same structure, for tests."""
    rng = np.random.default_rng(seed)
    p, d = {}, {}
    f32 = np.float32
    if name == "W1":
        N, dims = (6, [20, 12, 12, 10]) if small else (128, [784, 256, 256, 10])
        for k in range(len(dims) - 1):
            _dense(rng, p, f"fc{k + 1}", dims[k], dims[k + 1])
        d["x"] = rng.standard_normal((N, dims[0])).astype(f32)
        d["y"] = rng.integers(0, dims[-1], N).astype(np.int64)
    elif name == "W2":
        N, S, C1, C2 = (3, 8, 4, 6) if small else (32, 28, 16, 32)
        _conv(rng, p, "conv1", C1, 1, 3)
        _conv(rng, p, "conv2", C2, C1, 3)
        _dense(rng, p, "fc", C2 * (S // 4) ** 2, 10)
        d["x"] = rng.standard_normal((N, 1, S, S)).astype(f32)
        d["y"] = rng.integers(0, 10, N).astype(np.int64)
    elif name in ("W3", "C1"):  # C1: the W3 LSTM with T = 100
        B, T, I, H = (3, 5, 4, 6) if small else (32, 50, 32, 128)
        if name == "C1":
            T *= 2
        lim = math.sqrt(6.0 / (I + 4 * H))
        p["lstm.W_ih"] = rng.uniform(-lim, lim, (4 * H, I)).astype(f32)
        lim = math.sqrt(6.0 / (H + 4 * H))
        p["lstm.W_hh"] = rng.uniform(-lim, lim, (4 * H, H)).astype(f32)
        p["lstm.b_ih"] = np.zeros(4 * H, f32)
        p["lstm.b_hh"] = np.zeros(4 * H, f32)
        _dense(rng, p, "fc", H, 10)
        d["x"] = rng.standard_normal((B, T, I)).astype(f32)
        d["y"] = rng.integers(0, 10, B).astype(np.int64)
    elif name == "W4":
        N, C, Cm, S = (2, 8, 4, 4) if small else (16, 64, 16, 16)
        for k, (co, ci, ks) in enumerate([(Cm, C, 1), (Cm, Cm, 3), (C, Cm, 1)], 1):
            _conv(rng, p, f"conv{k}", co, ci, ks, bias=False)
            p[f"bn{k}.gamma"] = np.ones(co, f32)
            p[f"bn{k}.beta"] = np.zeros(co, f32)
        d["x"] = rng.standard_normal((N, C, S, S)).astype(f32)
    elif name == "W5":
        N, S, c1, c2, c3 = (2, 8, 2, 3, 4) if small else (4, 32, 8, 16, 32)
        _conv(rng, p, "enc1", c1, 1, 3)
        _conv(rng, p, "enc2", c2, c1, 3)
        _conv(rng, p, "enc3", c3, c2, 3)
        p["up2.W"] = glorot_uniform(rng, (c3, c2, 2, 2))
        p["up2.b"] = np.zeros(c2, f32)
        _conv(rng, p, "dec2", c2, 2 * c2, 3)
        p["up1.W"] = glorot_uniform(rng, (c2, c1, 2, 2))
        p["up1.b"] = np.zeros(c1, f32)
        _conv(rng, p, "dec1", c1, 2 * c1, 3)
        _conv(rng, p, "out", 1, c1, 1)
        d["x"] = rng.standard_normal((N, 1, S, S)).astype(f32)
        d["y"] = (rng.random((N, 1, S, S)) < 0.5).astype(f32)
    else:
        raise KeyError(f"unknown workload {name!r}; expected one of {sorted(WORKLOADS)}")
    return p, d


def build(name, params, data):
    """The reference implementation of workload ``name`` on ``params``."""
    return WORKLOADS[name](params, data)
