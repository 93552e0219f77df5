"""Recurrent layers (RNN, LSTM, GRU) over (batch, time, features), and gradient norms over time.

The cell equations, weight layout and gate order are PyTorch's, so weights
copy to and from ``torch.nn.RNN/LSTM/GRU`` unchanged.  Short sequences are
unrolled into the graph (one tagged copy of the cell per step); long ones
become one loop node, so compile time and code size stay flat in T.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autodiff import grad
from ..errors import GraphError
from ..ir import Tensor
from ..ops import recurrent as R
from .layers import Layer

UNROLL_LIMIT = 16  # lowering="auto" unrolls sequences up to this length and loops beyond


class Recurrent(Layer):
    """Base of RNN, LSTM and GRU.

    - ``return_sequences``: the hidden state of every step (N, T, H) instead of the last (N, H).
    - ``return_state``: also return the final state (h, or (h, c) for an LSTM).
    - ``initial_state`` (call argument): h0, or (h0, c0) for an LSTM, each (N, H); zeros if omitted.
    - ``lowering``: "unrolled", "loop" or "auto" (loop when T > 16).  Both lowerings differentiate
      to any order: a first derivative runs the loop's reverse-loop kernel, and `gg.grad` of it
      re-derives that derivative through the unrolled cells, whose ops all have vjps.
    - ``truncate=k``: truncated BPTT; the state's gradient is cut every k steps.
    """

    cell = ""

    def __init__(self, hidden_size: int, return_sequences: bool = False, return_state: bool = False,
                 lowering: str = "auto", truncate: int = None, name=None):
        super().__init__(name)
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, numbers.Integral) or hidden_size < 1:
            raise GraphError(f"{type(self).__name__}: hidden_size must be a positive int, got {hidden_size!r}")
        if lowering not in ("auto", "unrolled", "loop"):
            raise GraphError(f"lowering must be 'auto', 'unrolled' or 'loop', got {lowering!r}")
        self.hidden_size, self.return_sequences, self.return_state = hidden_size, return_sequences, return_state
        self.lowering, self.truncate = lowering, truncate
        self.hidden_states = None  # unrolled: the Tensor h_t of every step
        self.tape = None  # loop: the scan's tape

    @property
    def gates(self) -> int:
        return R.CELLS[self.cell].gates

    def _check(self, x):
        kind = type(self).__name__
        if x.ndim != 3 or x.shape[1] is None or x.shape[2] is None:
            raise GraphError(f"{kind} {self.name!r} expects a sequence (batch, time, features) with known time "
                             f"and features, got shape {x.shape}")
        if self.graph is not None and hasattr(self, "W_ih") and x.shape[2] != self.W_ih.shape[1]:
            raise GraphError(f"{kind} {self.name!r} expects {self.W_ih.shape[1]} features per step, "
                             f"got shape {x.shape}")

    def build(self, x, initial_state=None):
        self._check(x)
        H, G = self.hidden_size, self.gates
        bound = ("uniform", 1.0 / np.sqrt(H))  # PyTorch's initialisation
        self.W_ih = self.param("W_ih", (G * H, x.shape[2]), init=bound)
        self.W_hh = self.param("W_hh", (G * H, H), init=bound)
        self.b_ih = self.param("b_ih", (G * H,), init=self.bias_init("ih", bound))
        self.b_hh = self.param("b_hh", (G * H,), init=self.bias_init("hh", bound))

    def bias_init(self, which, default):
        return default

    def _states(self, initial_state):
        if initial_state is None:
            return ()
        states = (initial_state,) if isinstance(initial_state, Tensor) else tuple(initial_state)
        expected = len(R.CELLS[self.cell].states)
        if len(states) != expected:
            raise GraphError(f"{type(self).__name__} {self.name!r} takes {expected} initial state(s), "
                             f"got {len(states)}")
        return states

    def forward(self, x, initial_state=None):
        self._check(x)
        states = self._states(initial_state)
        weights = (self.W_ih, self.W_hh, self.b_ih, self.b_hh)
        T = x.shape[1]
        loop = self.lowering == "loop" or (self.lowering == "auto" and T > UNROLL_LIMIT)
        if loop:
            out, final = self._loop(x, weights, states)
        else:
            out, final = self._unrolled(x, weights, states)
        return (out, final if len(final) > 1 else final[0]) if self.return_state else out

    def _unrolled(self, x, weights, states):
        values = R.unrolled(x, weights, states, self.cell, self.truncate)
        self.hidden_states = [v["h"] for v in values]
        out = (x.graph.apply("stack", self.hidden_states, {"axis": 1}) if self.return_sequences
               else self.hidden_states[-1])
        return out, tuple(values[-1][s] for s in R.CELLS[self.cell].states)

    def _loop(self, x, weights, states):
        tape = self.tape = R.scan(x, weights, states, self.cell, self.truncate)
        blocks = {s: R.tape_block(tape, self.cell, s, self.hidden_size) for s in R.CELLS[self.cell].states}
        out = blocks["h"].transpose(1, 0, 2) if self.return_sequences else blocks["h"][-1]
        return out, tuple(b[-1] for b in blocks.values())


class RNN(Recurrent):
    """Elman RNN, h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (``torch.nn.RNN``).

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 5, 3))
    >>> gg.nn.RNN(4, name="rnn")(x).shape
    (None, 4)
    """

    cell = "rnn"


class GRU(Recurrent):
    """GRU with gates r, z, n; the reset gate scales W_hn h + b_hn (``torch.nn.GRU``)."""

    cell = "gru"


class LSTM(Recurrent):
    """LSTM with gates i, f, g, o and cell state c (``torch.nn.LSTM``).

    ``forget_bias=b`` starts both biases at zero except b on the forget gate
    of ``b_ih`` (Jozefowicz et al., 2015) instead of PyTorch's uniform start.

    >>> import graphgrad as gg
    >>> g = gg.Graph(); x = g.input("x", (None, 8, 8))
    >>> gg.nn.LSTM(16, return_sequences=True, name="lstm")(x).shape
    (None, 8, 16)
    """

    cell = "lstm"

    def __init__(self, hidden_size: int, return_sequences: bool = False, return_state: bool = False,
                 lowering: str = "auto", truncate: int = None, forget_bias: float = None, name=None):
        super().__init__(hidden_size, return_sequences, return_state, lowering, truncate, name)
        self.forget_bias = forget_bias

    def bias_init(self, which, default):
        if self.forget_bias is None:
            return default
        H = self.hidden_size
        value = np.zeros(4 * H)
        if which == "ih":
            value[H:2 * H] = self.forget_bias
        return value


def gradient_norms_over_time(loss: Tensor, layer, params: dict, feeds: dict) -> np.ndarray:
    """‖∂loss/∂h_t‖ for every step t of a recurrent layer (Frobenius norm over batch and units).

    ``layer`` is a called `Recurrent` layer (either lowering) or a list of the
    hidden-state Tensors h_t.  The derivative is the total one: through every
    later step, as backpropagation through time delivers it.  Vanishing
    gradients show as norms shrinking towards t = 0.
    """
    from ..runtime import compile

    graph = loss.graph.copy()
    hidden = layer if isinstance(layer, (list, tuple)) else layer.hidden_states
    if hidden is not None:
        grads = grad(graph.tensor(loss.node), [graph.tensor(h.node) for h in hidden])
        values = compile(grads)(params, **feeds)
        return np.array([np.linalg.norm(v) for v in values])
    # loop lowering: the direct cotangent of the tape plus what the reverse loop sends to h_{t-1}
    tape = graph.tensor(layer.tape.node)
    scan_args = [graph.tensor(a) for a in graph.args(tape.node)]
    g_tape = grad(graph.tensor(loss.node), [tape])[0]
    steps = R.backward_steps(g_tape, scan_args, tape, tape.attrs)
    g_value, steps_value = compile([g_tape, steps])(params, **feeds)
    H, cell = layer.hidden_size, R.CELLS[layer.cell]
    total = g_value[:, :, :H].copy()
    total[:-1] += steps_value[1:, :, cell.state_grad * H:(cell.state_grad + 1) * H]
    return np.sqrt((total ** 2).sum(axis=(1, 2)))
