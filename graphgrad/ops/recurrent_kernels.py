"""NumPy kernels of the recurrent scan ops: one Python loop over time forward, one in reverse.

This module imports numpy and `helpers` only: code generation pastes its source (and theirs) into
standalone generated modules.  Kernels compute in the dtype of their inputs.

Both loop results are time-major, one step's blocks side by side along the last axis:

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
  `scan_weight_grad` turns them into the weight gradients, one GEMM over all steps.

In memory both are feature-major: (T, width, N) arrays, returned transposed.  One step is
then a C-contiguous (width, N) block whose gates are contiguous (H, N) slabs, so the dozen
small elementwise calls of a step never walk strided columns (several times slower per
call at these sizes), and the recurrent GEMM is (G·H, K) @ (K, N), which OpenBLAS runs
about twice as fast as (N, K) @ (K, G·H) for a batch of 32.  The input side rides in the
same GEMM: step t multiplies [W_hh | W_ih | b] by [h_{t−1}; x_t; 1], so there is no
separate input projection or bias add.

Gates come from one exp call per step: σ(a) = 1 / (1 + e^−a), and the LSTM's
tanh(a) = 2 / (1 + e^−2a) − 1, the −1 and −2 folded into the gates' rows of the weights
once per call; an e that overflows gives the gate's limit, so the loops ignore overflow.
NumPy's float32 exp costs about half its tanh per element (σ as 0.5·tanh(0.5·a) + 0.5 took
as many calls), and the gates are most of a step's elementwise work.

The reverse loop multiplies by local derivatives that it computes a chunk of steps at a
time, so each step is its GEMM and a handful of elementwise calls.

Large arrays are not allocated per call: results go into the generated step's reusable
buffers (``out``) where code generation allows, temporaries into ``helpers.work_array`` arrays
kept in its ``state``, whose memory is still in cache on the next call.
"""
import numpy as np

from .helpers import work_array

_RK_CHUNK_BYTES = 1 << 20  # local derivatives per chunk of the reverse loop: well inside a 2 MB L2


def _rk_result(out, shape, dtype):
    """The (T, width, N) array a loop writes: the memory of ``out``, a reusable C-contiguous (T, N, width)
    buffer of the generated step, or a new array."""
    return np.empty(shape, dtype) if out is None else out.reshape(shape)


def _rk_step_weights(W_ih, W_hh, bias, out, scale=None):
    """[W_hh | W_ih | bias] (G·H, H + I + 1) into ``out``, row r times scale[r]: the left operand of every
    step's GEMM."""
    H, I = W_hh.shape[1], W_ih.shape[1]
    rows = 1 if scale is None else scale[:, None]
    np.multiply(W_hh, rows, out=out[:, :H])
    np.multiply(W_ih, rows, out=out[:, H:H + I])
    np.multiply(bias[:, None], rows, out=out[:, H + I:])
    return out


def _rk_step_inputs(x, H, h0, state):
    """Z (T + 1, H + I + 1, N), Z[t] = [h_{t−1}; x_t; 1]: the right operand of step t's GEMM.

    The forward loop writes h_t into Z[t + 1] (of Z[T] only that block is used).
    """
    N, T, I = x.shape
    Z = work_array(state, "step_inputs", (T + 1, H + I + 1, N), x.dtype)
    Z[0, :H] = 0 if h0 is None else h0.T
    Z[:T, H:H + I] = x.transpose(1, 2, 0)
    Z[:, H + I] = 1
    return Z


def _rk_feature_major(a):
    """(T, N, W) as (T, W, N), C-contiguous: a view of the kernels' own results, a copy of anything else."""
    return np.ascontiguousarray(a.transpose(0, 2, 1))


def _rk_previous(seq, start, out):
    """out[t] = seq[t − 1] for (k, H, N) blocks, out[0] = start (H, N), zeros if None: what each step
    started from."""
    out[0] = 0 if start is None else start
    out[1:] = seq[:-1]
    return out


def _rk_chunks(T, step_bytes):
    """(k, [(t0, t1), ...]): the steps in chunks of at most k, last first, for the reverse loop.

    It computes the local derivatives of a chunk with one call per factor and uses them while
    they are still in cache: for the whole sequence at once they would go through main
    memory twice, which costs more than the calls they save.
    """
    k = min(T, max(1, _RK_CHUNK_BYTES // step_bytes))
    return k, [(max(t1 - k, 0), t1) for t1 in range(T, 0, -k)]


def _rk_transposed(W, state):
    """Wᵀ, C-contiguous: the reverse loop's GEMM Wᵀ @ (G·H, N) runs fastest on it."""
    W_T = work_array(state, "W_T", W.shape[::-1], W.dtype)
    np.copyto(W_T, W.T)
    return W_T


def _rk_final(cotangent, H, N, dtype):
    """The cotangent (N, H) of a final state as the (H, N) gradient entering the reverse loop; zeros if
    there is none."""
    return np.zeros((H, N), dtype=dtype) if cotangent is None else np.ascontiguousarray(cotangent.T, dtype=dtype)


def _rk_direct(k, sequence, g_rows, H):
    """The cotangent (T, H, N) reaching state k of every step directly, not through later steps: of its
    sequence (T, N, H), of its block of the tape's cotangent ``g_rows`` (T, ·, N), their sum, or None."""
    parts = [] if sequence[k] is None else [sequence[k].transpose(0, 2, 1)]
    if g_rows is not None:
        parts.append(g_rows[:, k * H:(k + 1) * H])
    return parts[0] + parts[1] if len(parts) == 2 else parts[0] if parts else None


def _rk_sigmoid_from_exp(e):
    """In place: e = exp(−a) -> σ(a)."""
    e += 1
    np.reciprocal(e, out=e)


def _rk_sigmoid_slope(s, out):
    """σ' = σ − σ² from the activations σ."""
    np.multiply(s, s, out=out)
    return np.subtract(s, out, out=out)


def _rk_tanh_slope(y, out):
    """tanh' = 1 − y² from the activations y."""
    np.multiply(y, y, out=out)
    return np.subtract(1, out, out=out)


def _rk_cut(t, truncate):
    """Truncated BPTT: no gradient flows from step t into step t − 1 at chunk boundaries."""
    return truncate and t > 0 and t % truncate == 0


def scan_weight_grad(steps, tape, x, h0, H, input_grad, recurrent_grad, state=None, out=None):
    """[dW_hh | db_hh | dW_ih | db_ih] (G·H, H + 1 + I + 1): every weight's gradient summed over steps and batch.

    One GEMM (G·H, T·N) @ (T·N, H + 1 + I + 1) of the pre-activation gradients against the
    stacked [h_{t−1}; 1; x_t; 1] (two for a GRU, whose two sides' gradients differ).
    ``input_grad`` and ``recurrent_grad`` are [start, stop) columns of the steps.
    """
    T, N, _ = steps.shape
    I = x.shape[2]
    by_step = _rk_feature_major(steps)

    def over_steps(name, start, stop):  # (rows, T·N): the columns of all steps side by side
        rows = work_array(state, name, (stop - start, T, N), steps.dtype)
        np.copyto(rows, by_step[:, start:stop].transpose(1, 0, 2))
        return rows.reshape(stop - start, T * N)

    Z = work_array(state, "weight_inputs", (H + 1 + I + 1, T, N), steps.dtype)
    _rk_previous(_rk_feature_major(tape)[:, :H], None if h0 is None else h0.T, Z[:H].transpose(1, 0, 2))
    np.copyto(Z[H + 1:H + 1 + I], x.transpose(2, 1, 0))
    Z[H] = Z[-1] = 1
    Z = Z.reshape(-1, T * N)
    d_input = over_steps("d_input", *input_grad)
    grads = np.empty((d_input.shape[0], Z.shape[0]), dtype=steps.dtype) if out is None else out
    if input_grad == recurrent_grad:
        return np.matmul(d_input, Z.T, out=grads)
    np.matmul(over_steps("d_recurrent", *recurrent_grad), Z[:H + 1].T, out=grads[:, :H + 1])
    np.matmul(d_input, Z[H + 1:].T, out=grads[:, H + 1:])
    return grads


# -- Elman RNN: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) ---------------------------
def rnn_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None, *, state=None, out=None):
    N, T, I = x.shape
    H = W_hh.shape[1]
    W = _rk_step_weights(W_ih, W_hh, b_ih + b_hh, work_array(state, "step_weights", (H, H + I + 1), x.dtype))
    Z = _rk_step_inputs(x, H, h0, state)
    tape = _rk_result(out, (T, H, N), x.dtype)
    for t in range(T):
        np.tanh(np.matmul(W, Z[t], out=tape[t]), out=Z[t + 1, :H])
    tape[...] = Z[1:, :H]  # tape[t] held the pre-activation until now
    return tape.transpose(0, 2, 1)


def rnn_scan_grad(tape, W_hh, initial, final, sequence, g_tape, truncate, state=None, out=None):
    T, N, H = tape.shape
    h = _rk_feature_major(tape)
    g_h = _rk_direct(0, sequence, None if g_tape is None else g_tape.transpose(0, 2, 1), H)
    steps = _rk_result(out, (T, 2 * H, N), tape.dtype)
    W_hh_T = _rk_transposed(W_hh, state)
    dh_next, dh = _rk_final(final[0], H, N, tape.dtype), np.empty((H, N), dtype=tape.dtype)
    k, chunks = _rk_chunks(T, h[0].nbytes)
    slope = work_array(state, "slope", (k, H, N), tape.dtype)
    for t0, t1 in chunks:
        _rk_tanh_slope(h[t0:t1], slope[:t1 - t0])
        for t in range(t1 - 1, t0 - 1, -1):
            s = steps[t]
            da = np.multiply(dh_next if g_h is None else np.add(dh_next, g_h[t], out=dh), slope[t - t0], out=s[:H])
            if _rk_cut(t, truncate):
                s[H:] = 0
            else:
                np.matmul(W_hh_T, da, out=s[H:])
            dh_next = s[H:]
    return steps.transpose(0, 2, 1)


# -- LSTM (PyTorch): i, f, g, o = σ, σ, tanh, σ of x W_ihᵀ + b_ih + h W_hhᵀ + b_hh;
#    c' = f c + i g;  h' = o tanh(c') ------------------------------------------------------
def _rk_lstm_scale(H, dtype):
    """−1 for the sigmoid gates i, f, o and −2 for g: the step's GEMM then gives scale · a, whose exp e gives
    σ(a) = 1 / (1 + e) and tanh(g) = 2 / (1 + e) − 1."""
    scale = np.full(4 * H, -1, dtype=dtype)
    scale[2 * H:3 * H] = -2
    return scale


def lstm_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None, c0=None, *, state=None, out=None):
    N, T, I = x.shape
    H = W_hh.shape[1]
    W = _rk_step_weights(W_ih, W_hh, b_ih + b_hh, work_array(state, "step_weights", (4 * H, H + I + 1), x.dtype),
                         _rk_lstm_scale(H, x.dtype))
    Z = _rk_step_inputs(x, H, h0, state)
    tape = _rk_result(out, (T, 6 * H, N), x.dtype)
    ig, tanh_c = np.empty((H, N), dtype=x.dtype), np.empty((H, N), dtype=x.dtype)
    c = np.zeros((H, N), dtype=x.dtype) if c0 is None else c0.T
    with np.errstate(over="ignore", under="ignore"):  # e = inf or 0 gives the gate's limit 0 or 1 (g: −1 or 1)
        for t in range(T):
            c_prev, row = c, tape[t]
            gates, g = np.matmul(W, Z[t], out=row[2 * H:]), row[4 * H:5 * H]
            _rk_sigmoid_from_exp(np.exp(gates, out=gates))
            g *= 2  # tanh(g) = 2σ(2g) − 1: two calls on g beat dividing all gates by a column of numerators
            g -= 1
            c = np.multiply(row[3 * H:4 * H], c_prev, out=row[H:2 * H])  # f c
            c += np.multiply(row[2 * H:3 * H], g, out=ig)  # + i g
            np.multiply(row[5 * H:], np.tanh(c, out=tanh_c), out=Z[t + 1, :H])  # h = o tanh(c)
    tape[:, :H] = Z[1:, :H]
    return tape.transpose(0, 2, 1)


def _rk_lstm_local(rows, c_before, P, RQ):
    """The local derivatives of steps ``rows`` (k, 6H, N), c_before the cell state before the first:
    P = [g σ'(i), c_prev σ'(f), i tanh'(g)] and RQ = [tanh(c) σ'(o), o tanh'(c)], (k, ·, H, N).

    tanh(c) is h / o (no second tanh): R = h (1 − o) and Q = o − h tanh(c); where o is 0, so is h,
    and dividing by max(o, tiny) gives Q = 0 as it should.
    """
    H = rows.shape[1] // 6
    h, c, i, f, g, o = (rows[:, k * H:(k + 1) * H] for k in range(6))
    np.multiply(_rk_sigmoid_slope(i, P[:, 0]), g, out=P[:, 0])
    np.multiply(_rk_sigmoid_slope(f, P[:, 1]), _rk_previous(c, c_before, P[:, 2]), out=P[:, 1])
    np.multiply(_rk_tanh_slope(g, P[:, 2]), i, out=P[:, 2])
    R, Q = RQ[:, 0], RQ[:, 1]
    tanh_c = np.divide(h, np.maximum(o, np.finfo(o.dtype).tiny, out=R), out=Q)
    np.subtract(o, np.multiply(tanh_c, h, out=Q), out=Q)
    np.multiply(np.subtract(1, o, out=R), h, out=R)


def _rk_lstm_direct(rows, g_rows, E):
    """E (k, 4H, N): what a direct use of the gates adds to the gradients of their pre-activations."""
    H = rows.shape[1] // 6
    for k, slope in enumerate((_rk_sigmoid_slope, _rk_sigmoid_slope, _rk_tanh_slope, _rk_sigmoid_slope)):
        gate = slice((k + 2) * H, (k + 3) * H)
        np.multiply(slope(rows[:, gate], E[:, k * H:(k + 1) * H]), g_rows[:, gate], out=E[:, k * H:(k + 1) * H])


def lstm_scan_grad(tape, W_hh, initial, final, sequence, g_tape, truncate, state=None, out=None):
    T, N, width = tape.shape
    H = width // 6
    dtype = tape.dtype
    rows = _rk_feature_major(tape)
    g_rows = None if g_tape is None else g_tape.transpose(0, 2, 1)
    g_h, g_c = _rk_direct(0, sequence, g_rows, H), _rk_direct(1, sequence, g_rows, H)
    steps = _rk_result(out, (T, 6 * H, N), dtype)
    d_ifg = steps[:, :3 * H].reshape(T, 3, H, N)
    d_o_and_dh_Q = steps[:, 3 * H:5 * H].reshape(T, 2, H, N)
    W_hh_T = _rk_transposed(W_hh, state)
    dh_next, dc_next = (_rk_final(d, H, N, dtype) for d in final)
    dh, dc = np.empty((H, N), dtype=dtype), np.empty((H, N), dtype=dtype)
    c_start = None if initial[1] is None else initial[1].T
    k, chunks = _rk_chunks(T, 5 * rows[0, :H].nbytes)
    P, RQ = work_array(state, "P", (k, 3, H, N), dtype), work_array(state, "RQ", (k, 2, H, N), dtype)
    E = None if g_rows is None else work_array(state, "E", (k, 4 * H, N), dtype)
    # with dc the gradient of c_t: d[i, f, g] = dc·P, d o = dh·R, dc = dc_{t+1}·f_{t+1} + dh·Q
    for t0, t1 in chunks:
        m = t1 - t0
        _rk_lstm_local(rows[t0:t1], rows[t0 - 1, H:2 * H] if t0 else c_start, P[:m], RQ[:m])
        if g_rows is not None:
            _rk_lstm_direct(rows[t0:t1], g_rows[t0:t1], E[:m])
        for t in range(t1 - 1, t0 - 1, -1):
            s, j = steps[t], t - t0
            dh = dh_next if g_h is None else np.add(dh_next, g_h[t], out=dh)
            np.multiply(RQ[j], dh, out=d_o_and_dh_Q[t])  # dh·Q waits where the GEMM puts dh_prev
            np.add(s[4 * H:5 * H], dc_next, out=dc)
            if g_c is not None:
                dc += g_c[t]
            np.multiply(P[j], dc, out=d_ifg[t])
            if g_rows is not None:
                s[:4 * H] += E[j]
            if _rk_cut(t, truncate):
                s[4 * H:] = 0
            else:
                np.matmul(W_hh_T, s[:4 * H], out=s[4 * H:5 * H])
                np.multiply(dc, rows[t, 3 * H:4 * H], out=s[5 * H:])  # through f
            dh_next, dc_next = s[4 * H:5 * H], s[5 * H:]
    return steps.transpose(0, 2, 1)


# -- GRU (PyTorch): r, z = σ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) for their rows;
#    n = tanh(x W_inᵀ + b_in + r (W_hn h + b_hn));  h' = (1 − z) n + z h ----------------------
def _rk_gru_step_weights(W_ih, W_hh, b_ih, b_hh, out):
    """The step GEMM's rows [r, z, x W_inᵀ + b_in, hn] (4H, H + I + 1): n's two sides stay apart, as r scales one."""
    H, I = W_hh.shape[1], W_ih.shape[1]
    out[:3 * H, H:H + I] = W_ih
    out[:3 * H, H + I] = b_ih
    out[:2 * H, H + I] += b_hh[:2 * H]
    out[:2 * H, :H] = W_hh[:2 * H]
    out[2 * H:3 * H, :H] = 0
    out[3 * H:, :H] = W_hh[2 * H:]
    out[3 * H:, H:H + I] = 0
    out[3 * H:, H + I] = b_hh[2 * H:]
    out[:2 * H] *= -1  # σ from exp
    return out


def gru_scan(x, W_ih, W_hh, b_ih, b_hh, h0=None, *, state=None, out=None):
    N, T, I = x.shape
    H = W_hh.shape[1]
    W = _rk_gru_step_weights(W_ih, W_hh, b_ih, b_hh, work_array(state, "step_weights", (4 * H, H + I + 1), x.dtype))
    Z = _rk_step_inputs(x, H, h0, state)
    tape = _rk_result(out, (T, 5 * H, N), x.dtype)
    scratch = np.empty((H, N), dtype=x.dtype)
    with np.errstate(over="ignore", under="ignore"):  # e = inf or 0 gives σ's limit 0 or 1
        for t in range(T):
            row = tape[t]
            np.matmul(W, Z[t], out=row[H:])  # −r, −z (pre-activations), x W_inᵀ + b_in in n's place, hn
            rz = row[H:3 * H]
            _rk_sigmoid_from_exp(np.exp(rz, out=rz))
            r, z, n, hn = (row[k * H:(k + 1) * H] for k in range(1, 5))
            n += np.multiply(r, hn, out=scratch)
            np.tanh(n, out=n)
            h_prev = Z[t, :H]
            # (1 − z) n + z h
            np.add(n, np.multiply(z, np.subtract(h_prev, n, out=scratch), out=scratch), out=Z[t + 1, :H])
    tape[:, :H] = Z[1:, :H]
    return tape.transpose(0, 2, 1)


def _rk_gru_local(rows, h_before, F, slopes):
    """The local derivatives of steps ``rows`` (k, 5H, N), h_before the state before the first: every
    gradient of a step is dh times F = [dr, dz, dn, dr, dz, dhn] per unit of dh, (k, 6, H, N), with
    dn = (1 − z) tanh'(n), dr = dn hn σ'(r), dz = (h_prev − n) σ'(z), dhn = dn r;
    slopes = [σ'(r), σ'(z), tanh'(n)]."""
    H = rows.shape[1] // 5
    h, r, z, n, hn = (rows[:, k * H:(k + 1) * H] for k in range(5))
    dr, dz, dn, dhn = F[:, 0], F[:, 1], F[:, 2], F[:, 5]
    r_slope, z_slope, n_slope = _rk_sigmoid_slope(r, slopes[:, 0]), _rk_sigmoid_slope(z, slopes[:, 1]), _rk_tanh_slope(
        n, slopes[:, 2])
    np.multiply(np.subtract(1, z, out=dn), n_slope, out=dn)
    np.multiply(np.multiply(dn, hn, out=dr), r_slope, out=dr)
    np.multiply(np.subtract(_rk_previous(h, h_before, dz), n, out=dz), z_slope, out=dz)
    np.multiply(dn, r, out=dhn)
    F[:, 3:5] = F[:, 0:2]  # the recurrent side's dr, dz are the input side's


def _rk_gru_direct(rows, g_rows, slopes, E):
    """E (k, 6, H, N): what a direct use of r, z, n, hn adds to the steps' gradients (the chain of `_rk_gru_local`)."""
    H = rows.shape[1] // 5
    r, hn = rows[:, H:2 * H], rows[:, 4 * H:]
    g_r, g_z, g_n, g_hn = (g_rows[:, k * H:(k + 1) * H] for k in range(1, 5))
    dr, dz, dn, dhn = E[:, 0], E[:, 1], E[:, 2], E[:, 5]
    np.multiply(g_n, slopes[:, 2], out=dn)
    np.multiply(np.add(np.multiply(dn, hn, out=dr), g_r, out=dr), slopes[:, 0], out=dr)
    np.multiply(g_z, slopes[:, 1], out=dz)
    np.add(np.multiply(dn, r, out=dhn), g_hn, out=dhn)
    E[:, 3:5] = E[:, 0:2]


def gru_scan_grad(tape, W_hh, initial, final, sequence, g_tape, truncate, state=None, out=None):
    T, N, width = tape.shape
    H = width // 5
    dtype = tape.dtype
    rows = _rk_feature_major(tape)
    g_rows = None if g_tape is None else g_tape.transpose(0, 2, 1)
    g_h = _rk_direct(0, sequence, g_rows, H)
    steps = _rk_result(out, (T, 7 * H, N), dtype)
    grads = steps[:, :6 * H].reshape(T, 6, H, N)
    W_hh_T = _rk_transposed(W_hh, state)
    dh_next, dh, dh_z = _rk_final(final[0], H, N, dtype), np.empty((H, N), dtype=dtype), np.empty((H, N), dtype=dtype)
    h_start = None if initial[0] is None else initial[0].T
    k, chunks = _rk_chunks(T, 9 * rows[0, :H].nbytes)
    F, slopes = work_array(state, "F", (k, 6, H, N), dtype), work_array(state, "slopes", (k, 3, H, N), dtype)
    E = None if g_rows is None else work_array(state, "E", (k, 6, H, N), dtype)
    for t0, t1 in chunks:
        m = t1 - t0
        _rk_gru_local(rows[t0:t1], rows[t0 - 1, :H] if t0 else h_start, F[:m], slopes[:m])
        if g_rows is not None:
            _rk_gru_direct(rows[t0:t1], g_rows[t0:t1], slopes[:m], E[:m])
        for t in range(t1 - 1, t0 - 1, -1):
            s, j = steps[t], t - t0
            dh = dh_next if g_h is None else np.add(dh_next, g_h[t], out=dh)
            np.multiply(F[j], dh, out=grads[t])
            if g_rows is not None:
                grads[t] += E[j]
            if _rk_cut(t, truncate):
                s[6 * H:] = 0
            else:
                np.matmul(W_hh_T, s[3 * H:6 * H], out=s[6 * H:])
                s[6 * H:] += np.multiply(dh, rows[t, 2 * H:3 * H], out=dh_z)  # h' = ... + z h
            dh_next = s[6 * H:]
    return steps.transpose(0, 2, 1)
