"""NumPy kernels of the recurrent scan ops: one Python loop over time forward, one in reverse.

This module imports numpy only: code generation pastes its source into
standalone generated modules.  Kernels compute in the dtype of their inputs.

Both arrays are time-major, so one step is one block ``a[t]`` of shape (N, width):

- the tape (T, N, S·H) is what the forward loop keeps for the backward loop:
    rnn  [h]                     (S = 1)
    lstm [h, c, i, f, g, o]      (S = 6; gate activations in PyTorch's order)
    gru  [h, r, z, n, hn]        (S = 5; hn = W_hn h + b_hn, which the reset gate scales)
- the steps (T, N, D·H) are what the reverse loop gives per step: the gradients of the
  pre-activations (input side ``x W_ihᵀ + b_ih``, then recurrent side ``h W_hhᵀ + b_hh``
  where they differ) and the gradient that flowed into the previous state:
    rnn  [da, dh_prev]
    lstm [di, df, dg, do, dh_prev, dc_prev]
    gru  [dr, dz, dn, dr, dz, dhn, dh_prev]
  The weight gradients are then one GEMM over all steps (``sum_outer``).

σ(a) is computed as 0.5·tanh(0.5·a) + 0.5: no overflow, and one tanh call serves all gates.
"""
import numpy as np


def _rk_project(x, W_ih, bias):
    """x W_ihᵀ + bias for every step at once, time-major (T, N, G·H): one GEMM instead of T small ones."""
    N, T, I = x.shape
    return (x.transpose(1, 0, 2).reshape(T * N, I) @ W_ih.T + bias).reshape(T, N, -1)


def _rk_start(x, H, state):
    """The initial state, zeros when none is given."""
    return np.zeros((x.shape[0], H), dtype=x.dtype) if state is None else state


def _rk_sigmoid_from_tanh(y):
    """In place: tanh(a/2) -> σ(a)."""
    y *= 0.5
    y += 0.5


def _rk_cut(t, truncate):
    """Truncated BPTT: no gradient flows from step t into step t − 1 at chunk boundaries."""
    return truncate and t > 0 and t % truncate == 0


def sum_outer(a, b):
    """Σ over all leading axes of aᵀb per position: a weight gradient over all steps as one GEMM."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


# -- Elman RNN: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) ---------------------------
def rnn_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None):
    N, T, _ = x.shape
    H = W_hh.shape[1]
    xp = _rk_project(x, W_ih, b_ih + b_hh)
    tape = np.empty((T, N, H), dtype=xp.dtype)
    h = _rk_start(x, H, h0)
    for t in range(T):
        h = np.tanh(xp[t] + h @ W_hh.T, out=tape[t])
    return tape


def rnn_scan_grad(g_tape, tape, W_hh, h0=None, c0=None, truncate=0):
    T, N, H = tape.shape
    steps = np.empty((T, N, 2 * H), dtype=tape.dtype)
    dh_next = np.zeros((N, H), dtype=tape.dtype)
    for t in range(T - 1, -1, -1):
        h, s = tape[t], steps[t]
        da = np.multiply(g_tape[t] + dh_next, 1 - h * h, out=s[:, :H])  # tanh' = 1 − h²
        if _rk_cut(t, truncate):
            s[:, H:] = 0
            dh_next = s[:, H:]
        else:
            dh_next = np.matmul(da, W_hh, out=s[:, H:])
    return steps


# -- LSTM (PyTorch): i, f, g, o = σ, σ, tanh, σ of x W_ihᵀ + b_ih + h W_hhᵀ + b_hh;
#    c' = f c + i g;  h' = o tanh(c') ------------------------------------------------------
def _rk_lstm_scale(H, dtype):
    """0.5 for the sigmoid gates i, f, o and 1 for g: tanh(scale · a) then gives all four gates."""
    scale = np.full(4 * H, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1
    return scale


def lstm_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None, c0=None):
    N, T, _ = x.shape
    H = W_hh.shape[1]
    scale = _rk_lstm_scale(H, x.dtype)
    # the tanh scale folded into the weights once, so each step is one GEMM, one add and one tanh
    xp = _rk_project(x, W_ih * scale[:, None], (b_ih + b_hh) * scale)
    W_hh_scaled = W_hh.T * scale
    tape = np.empty((T, N, 6 * H), dtype=xp.dtype)
    h, c = _rk_start(x, H, h0), _rk_start(x, H, c0)
    for t in range(T):
        row = tape[t]
        gates = row[:, 2 * H:]
        np.matmul(h, W_hh_scaled, out=gates)
        gates += xp[t]
        np.tanh(gates, out=gates)
        _rk_sigmoid_from_tanh(gates[:, :2 * H])
        _rk_sigmoid_from_tanh(gates[:, 3 * H:])
        i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
        c = np.add(f * c, i * g, out=row[:, H:2 * H])
        h = np.multiply(o, np.tanh(c), out=row[:, :H])
    return tape


def lstm_scan_grad(g_tape, tape, W_hh, h0=None, c0=None, truncate=0):
    T, N, width = tape.shape
    H = width // 6
    steps = np.empty((T, N, 6 * H), dtype=tape.dtype)
    dh_next = np.zeros((N, H), dtype=tape.dtype)
    dc_next = np.zeros((N, H), dtype=tape.dtype)
    c_start = _rk_start(tape[0], H, c0)
    for t in range(T - 1, -1, -1):
        row, grow, s = tape[t], g_tape[t], steps[t]
        c, act = row[:, H:2 * H], row[:, 2 * H:]
        i, f, g, o = (act[:, k * H:(k + 1) * H] for k in range(4))
        c_prev = tape[t - 1, :, H:2 * H] if t else c_start
        tc = np.tanh(c)
        dh = grow[:, :H] + dh_next
        dc = grow[:, H:2 * H] + dc_next + dh * o * (1 - tc * tc)
        # gradient of each gate activation: its use in c' and h', plus any direct use of the tape
        dgates = s[:, :4 * H]
        np.multiply(dc, g, out=dgates[:, :H])
        np.multiply(dc, c_prev, out=dgates[:, H:2 * H])
        np.multiply(dc, i, out=dgates[:, 2 * H:3 * H])
        np.multiply(dh, tc, out=dgates[:, 3 * H:])
        dgates += grow[:, 2 * H:]
        # through the activations, reusing their values: σ' = σ(1 − σ), tanh' = 1 − tanh²
        slope = act * (1 - act)
        slope[:, 2 * H:3 * H] = 1 - g * g
        dgates *= slope
        if _rk_cut(t, truncate):
            s[:, 4 * H:] = 0
            dh_next, dc_next = s[:, 4 * H:5 * H], s[:, 5 * H:]
        else:
            dh_next = np.matmul(dgates, W_hh, out=s[:, 4 * H:5 * H])
            dc_next = np.multiply(dc, f, out=s[:, 5 * H:])
    return steps


# -- GRU (PyTorch): r, z = σ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) for their rows;
#    n = tanh(x W_inᵀ + b_in + r (W_hn h + b_hn));  h' = (1 − z) n + z h ----------------------
def gru_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None):
    N, T, _ = x.shape
    H = W_hh.shape[1]
    xp = _rk_project(x, W_ih, b_ih)  # b_hh stays on the recurrent side: r scales W_hn h + b_hn
    tape = np.empty((T, N, 5 * H), dtype=xp.dtype)
    h = _rk_start(x, H, h0)
    for t in range(T):
        row = tape[t]
        gh = h @ W_hh.T + b_hh
        rz = row[:, H:3 * H]
        np.multiply(xp[t, :, :2 * H] + gh[:, :2 * H], 0.5, out=rz)
        np.tanh(rz, out=rz)
        _rk_sigmoid_from_tanh(rz)
        r, z = rz[:, :H], rz[:, H:]
        hn = row[:, 4 * H:]
        hn[...] = gh[:, 2 * H:]
        n = np.tanh(xp[t, :, 2 * H:] + r * hn, out=row[:, 3 * H:4 * H])
        h = np.add(n, z * (h - n), out=row[:, :H])  # (1 − z) n + z h
    return tape


def gru_scan_grad(g_tape, tape, W_hh, h0=None, c0=None, truncate=0):
    T, N, width = tape.shape
    H = width // 5
    steps = np.empty((T, N, 7 * H), dtype=tape.dtype)
    dh_next = np.zeros((N, H), dtype=tape.dtype)
    h_start = _rk_start(tape[0], H, h0)
    for t in range(T - 1, -1, -1):
        row, grow, s = tape[t], g_tape[t], steps[t]
        r, z, n, hn = (row[:, k * H:(k + 1) * H] for k in range(1, 5))
        h_prev = tape[t - 1, :, :H] if t else h_start
        dh = grow[:, :H] + dh_next
        dn = np.multiply(dh * (1 - z) + grow[:, 3 * H:4 * H], 1 - n * n, out=s[:, 2 * H:3 * H])
        dr = np.multiply((dn * hn + grow[:, H:2 * H]) * r, 1 - r, out=s[:, :H])
        dz = np.multiply((dh * (h_prev - n) + grow[:, 2 * H:3 * H]) * z, 1 - z, out=s[:, H:2 * H])
        s[:, 3 * H:4 * H] = dr
        s[:, 4 * H:5 * H] = dz
        np.add(dn * r, grow[:, 4 * H:], out=s[:, 5 * H:6 * H])  # d hn: through n, and any direct use
        if _rk_cut(t, truncate):
            s[:, 6 * H:] = 0
        else:
            np.add(s[:, 3 * H:6 * H] @ W_hh, dh * z, out=s[:, 6 * H:])
        dh_next = s[:, 6 * H:]
    return steps
