"""Recurrent cells (Elman RNN, LSTM, GRU) and their two lowerings.

- unrolled: T copies of the cell written with ordinary graph ops, each node
  tagged with its time step; the weights are single param nodes used by every
  step, so the chain rule sums their gradients over time by fan-out.
- loop: one ``recurrent_scan`` node whose generated code is a ``for t in
  range(T)`` loop (see `recurrent_kernels`); its vjp is one
  ``recurrent_scan_grad`` node running the reverse loop, followed by one GEMM
  per weight over all steps (``sum_outer``).

Both follow PyTorch's equations, weight layout and gate order, so weights copy
across: W_ih (G·H, I), W_hh (G·H, H), b_ih and b_hh (G·H,), G = 1, 4, 3.
Arguments of the scan are ``(x, W_ih, W_hh, b_ih, b_hh, *initial_states)``
with x of shape (N, T, I); without initial states they are zeros.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import recurrent_kernels as kernels
from .registry import Op, register, same_dtype_as_first
from ..errors import GraphError


@dataclass(frozen=True)
class Cell:
    """The shape of a cell; widths are in units of the hidden size H (see `recurrent_kernels`)."""

    name: str
    gates: int  # G: rows of W_ih are G blocks of H, in PyTorch's gate order
    states: tuple  # the carried state: ("h",) or ("h", "c")
    tape: tuple  # the blocks of one tape step
    input_grad: tuple  # [start, stop) of d(x W_ihᵀ + b_ih) in a steps row
    recurrent_grad: tuple  # [start, stop) of d(h W_hhᵀ + b_hh)
    state_grad: int  # start of dh_prev (then dc_prev) in a steps row

    @property
    def steps_width(self) -> int:
        return self.state_grad + len(self.states)


CELLS = {
    "rnn": Cell("rnn", 1, ("h",), ("h",), (0, 1), (0, 1), 1),
    "lstm": Cell("lstm", 4, ("h", "c"), ("h", "c", "i", "f", "g", "o"), (0, 4), (0, 4), 4),
    "gru": Cell("gru", 3, ("h",), ("h", "r", "z", "n", "hn"), (0, 3), (3, 6), 6),
}
ARGUMENTS = ("x", "W_ih", "W_hh", "b_ih", "b_hh")


def tape_block(tape, cell: str, name: str, hidden: int):
    """The (T, N, H) block ``name`` (h, c, a gate) of a scan's tape."""
    k = CELLS[cell].tape.index(name)
    return tape[:, :, k * hidden:(k + 1) * hidden]


# -- the scan op ------------------------------------------------------------------------
def _scan_shape(shapes, attrs):
    cell = CELLS[attrs["cell"]]
    x, W_ih, W_hh, b_ih, b_hh, *states = shapes
    if len(x) != 3:
        raise ValueError(f"the sequence must be (batch, time, features), got rank {len(x)}")
    if len(W_hh) != 2 or W_hh[0] != cell.gates * W_hh[1]:
        raise ValueError(f"W_hh must be ({cell.gates}·H, H)")
    H = W_hh[1]
    expected = {"W_ih": (cell.gates * H, x[2]), "b_ih": (cell.gates * H,), "b_hh": (cell.gates * H,)}
    for name, shape in zip(("W_ih", "b_ih", "b_hh"), (W_ih, b_ih, b_hh)):
        if tuple(shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(shape)}")
    if len(states) not in (0, len(cell.states)):
        raise ValueError(f"a {cell.name} carries {len(cell.states)} state(s), got {len(states)}")
    for s in states:
        if tuple(s) != (x[0], H):
            raise ValueError(f"initial states must be (batch, {H}), got {tuple(s)}")
    return (x[1], x[0], len(cell.tape) * H)


def _emit_scan(args, attrs):
    return f"{attrs['cell']}_scan({', '.join(args)})"


def _emit_scan_grad(args, attrs):
    g_tape, tape, W_hh, *states = args
    states = states + ["None"] * (2 - len(states))
    return f"{attrs['cell']}_scan_grad({g_tape}, {tape}, {W_hh}, {', '.join(states)}, {attrs.get('truncate') or 0})"


def backward_steps(g, args, out, attrs):
    """The one reverse-loop node for this scan and cotangent, shared by the vjps of all arguments."""
    graph = g.graph
    wanted = [g.node, out.node, args[2].node] + [s.node for s in args[5:]]
    for node in graph.nx.successors(out.node):
        if graph.nx.nodes[node]["op"] == "recurrent_scan_grad" and graph.args(node) == wanted:
            return graph.tensor(node)
    return graph.apply("recurrent_scan_grad", [g, out, args[2], *args[5:]], dict(attrs), name="scan_grad")


def _previous_hidden(args, out, attrs):
    """h_{t−1} for every step t (T, N, H); without an initial state, steps 1..T−1 only (h_0 = 0)."""
    H = args[2].shape[1]
    earlier = tape_block(out, attrs["cell"], "h", H)[:-1]
    if len(args) == 5:
        return earlier
    return args[0].graph.apply("concat", [args[5].reshape((1,) + args[5].shape), earlier], {"axis": 0})


def _scan_vjp(index):
    def vjp(g, args, out, attrs):
        cell, H = CELLS[attrs["cell"]], args[2].shape[1]
        steps = backward_steps(g, args, out, attrs)
        d_input = steps[:, :, cell.input_grad[0] * H:cell.input_grad[1] * H]
        d_recurrent = steps[:, :, cell.recurrent_grad[0] * H:cell.recurrent_grad[1] * H]
        if index == 0:  # x: one GEMM for all steps, back to batch-major
            return (d_input @ args[1]).transpose(1, 0, 2)
        if index == 1:
            return outer(d_input, args[0].transpose(1, 0, 2))
        if index == 2:
            return outer(d_recurrent if len(args) > 5 else d_recurrent[1:], _previous_hidden(args, out, attrs))
        if index in (3, 4):
            return (d_input if index == 3 else d_recurrent).sum(axis=(0, 1))
        start = (cell.state_grad + index - 5) * H  # the gradient that flowed out of step 0
        return steps[0, :, start:start + H]
    return vjp


register(Op(
    name="recurrent_scan", shape=_scan_shape, emit=_emit_scan, vjps=_scan_vjp,
    kernels=(kernels.rnn_scan, kernels.lstm_scan, kernels.gru_scan),
    doc="an RNN, LSTM or GRU over a whole sequence as one loop; the result is the tape (T, N, S·H) "
        "of states and gate activations that the backward loop reuses",
    test_shapes=((2, 3, 4), (20, 4), (20, 5), (20,), (20,), (2, 5), (2, 5)), test_attrs={"cell": "lstm"},
))


def _scan_grad_shape(shapes, attrs):
    g_tape, tape, W_hh, *_ = shapes
    if tuple(g_tape) != tuple(tape):
        raise ValueError("the cotangent must have the tape's shape")
    cell = CELLS[attrs["cell"]]
    return (tape[0], tape[1], cell.steps_width * W_hh[1])


def _no_second_derivative(g, args, out, attrs):
    raise GraphError("second derivatives through the loop lowering of a recurrent layer are not available; "
                     "build the layer with lowering='unrolled'")


register(Op(
    name="recurrent_scan_grad", shape=_scan_grad_shape, emit=_emit_scan_grad,
    vjps=lambda index: _no_second_derivative,
    kernels=(kernels.rnn_scan_grad, kernels.lstm_scan_grad, kernels.gru_scan_grad),
    doc="the reverse loop of recurrent_scan: per step the gradients of the pre-activations and of the "
        "previous state (T, N, D·H)",
    test_shapes=((3, 2, 30), (3, 2, 30), (20, 5), (2, 5), (2, 5)), test_attrs={"cell": "lstm"},
))


def _sum_outer_shape(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or tuple(a[:-1]) != tuple(b[:-1]):
        raise ValueError("the operands must agree on every axis but the last")
    return (a[-1], b[-1])


def outer(a, b):
    """Σ over all leading axes of aᵀb (A, B): the gradient of a weight shared by every step."""
    return a.graph.apply("sum_outer", [a, b])


register(Op(
    name="sum_outer", arity=2, shape=_sum_outer_shape, dtype=same_dtype_as_first, kernels=(kernels.sum_outer,),
    fresh=True,
    emit=lambda args, attrs: f"sum_outer({args[0]}, {args[1]})",
    vjps=(lambda g, args, out, a: args[1] @ g.T, lambda g, args, out, a: args[0] @ g),
    doc="Σ over leading axes of outer products, as one GEMM", test_shapes=((3, 2, 4), (3, 2, 5)),
))
register(Op(
    name="stop_gradient", arity=1, shape=lambda s, a: s[0], dtype=same_dtype_as_first,
    emit=lambda args, attrs: args[0], vjps=(None,),
    doc="the value unchanged, with no gradient through it (truncated BPTT)",
))


def scan(x, weights, states=(), cell="lstm", truncate=None):
    """The loop lowering: the tape of a ``recurrent_scan`` node."""
    return x.graph.apply("recurrent_scan", [x, *weights, *states], {"cell": cell, "truncate": truncate or 0},
                         name=f"{cell}_scan")


# -- the unrolled lowering: one cell per step, in graph ops ----------------------------------
def _recurrent(h, W_hh_T, b_hh):
    """h W_hhᵀ + b_hh; a zero initial state leaves only the bias."""
    return b_hh if h is None else h @ W_hh_T + b_hh


def _cols(t, k, H, blocks=1):
    """Blocks k .. k+blocks−1 of width H along the last axis (the gate blocks of a pre-activation)."""
    return t[(slice(None),) * (t.ndim - 1) + (slice(k * H, (k + blocks) * H),)]


def rnn_cell(xp, state, W_hh_T, b_hh):
    (h,) = state
    h = xp.graph.apply("tanh", [xp + _recurrent(h, W_hh_T, b_hh)])
    return (h,), {"h": h}


def lstm_cell(xp, state, W_hh_T, b_hh):
    h, c = state
    H = W_hh_T.shape[0]
    a = xp + _recurrent(h, W_hh_T, b_hh)
    apply = a.graph.apply
    i, f, o = (apply("sigmoid", [_cols(a, k, H)], name=gate) for k, gate in ((0, "i"), (1, "f"), (3, "o")))
    g = apply("tanh", [_cols(a, 2, H)], name="g")
    c = i * g if c is None else f * c + i * g
    h = o * apply("tanh", [c])
    return (h, c), {"h": h, "c": c, "i": i, "f": f, "g": g, "o": o}


def gru_cell(xp, state, W_hh_T, b_hh):
    (h,) = state
    H = W_hh_T.shape[0]
    gh = _recurrent(h, W_hh_T, b_hh)
    apply = xp.graph.apply
    r = apply("sigmoid", [_cols(xp, 0, H) + _cols(gh, 0, H)], name="r")
    z = apply("sigmoid", [_cols(xp, 1, H) + _cols(gh, 1, H)], name="z")
    hn = _cols(gh, 2, H)
    n = apply("tanh", [_cols(xp, 2, H) + r * hn], name="n")
    h = (1 - z) * n if h is None else (1 - z) * n + z * h
    return (h,), {"h": h, "r": r, "z": z, "n": n, "hn": hn}


CELL_FUNCTIONS = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}


def unrolled(x, weights, states=(), cell="lstm", truncate=None):
    """The unrolled lowering: per step the dict of cell values (h, c, gates), tagged ``time=t``.

    ``truncate=k`` cuts the gradient into the state at every k-th step
    (a ``stop_gradient``), as truncated BPTT over chunks of k steps does.
    """
    graph = x.graph
    W_ih, W_hh, b_ih, b_hh = weights
    W_ih_T, W_hh_T = W_ih.T, W_hh.T  # once, shared by every step
    state = tuple(states) if states else (None,) * len(CELLS[cell].states)
    values = []
    for t in range(x.shape[1]):
        with graph.tagging(time=t), graph.scope(f"t{t}"):
            if truncate and t > 0 and t % truncate == 0:
                state = tuple(graph.apply("stop_gradient", [s]) for s in state)
            xp = x[:, t, :] @ W_ih_T + b_ih
            state, step = CELL_FUNCTIONS[cell](xp, state, W_hh_T, b_hh)
        for role, value in step.items():  # lets drawings find h_t, c_t and the gates
            graph.nx.nodes[value.node].setdefault("role", role)
        values.append(step)
    return values


def _like(value, h):
    """``value`` as a (N, H) block: a gate of a zero state can be the bias alone, shaped (H,)."""
    return value if value.shape == h.shape else value.graph.apply("broadcast_like", [value, h])


def unroll_scans(graph):
    """A copy of ``graph`` with every ``recurrent_scan`` replaced by its unrolled cells (for drawing).

    The tape is rebuilt from the cells' values with concat and stack, so its
    consumers read the same values.
    """
    scans = [n for n, d in graph.nx.nodes(data=True) if d["op"] == "recurrent_scan"]
    if not scans:
        return graph
    graph = graph.copy()
    for node in scans:
        data = graph.nx.nodes[node]
        args = [graph.tensor(a) for a in graph.args(node)]
        cell = data["attrs"]["cell"]
        prefix = node.rsplit("/", 1)[0] if "/" in node else node
        with graph.scope(prefix):
            values = unrolled(args[0], args[1:5], args[5:], cell, data["attrs"].get("truncate"))
            rows = [graph.apply("concat", [_like(v[k], v["h"]) for k in CELLS[cell].tape], {"axis": 1})
                    for v in values]
            tape = graph.apply("stack", rows, {"axis": 0}, name="tape")
        for _, v, key, edge in list(graph.nx.out_edges(node, keys=True, data=True)):
            graph.nx.remove_edge(node, v, key)
            graph.nx.add_edge(tape.node, v, index=edge["index"])
        graph.nx.remove_node(node)
    return graph
