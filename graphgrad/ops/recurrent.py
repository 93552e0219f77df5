"""Recurrent cells (Elman RNN, LSTM, GRU) and their two lowerings.

- unrolled: T copies of the cell written with ordinary graph ops, each node
  tagged with its time step; the weights are single param nodes used by every
  step, so the chain rule sums their gradients over time by fan-out.
- loop: one ``recurrent_scan`` node whose generated code is a ``for t in
  range(T)`` loop (see `recurrent_kernels`); its vjp is one
  ``recurrent_scan_grad`` node running the reverse loop, followed by one
  ``recurrent_weight_grad`` node: all four weight gradients as one GEMM over
  all steps.  The reverse loop takes the cotangents of the states (final, or
  of every step) apart from the rest of the tape's, so that a loss on the
  hidden states alone never builds a tape of zeros.

Both follow PyTorch's equations, weight layout and gate order, so weights copy
across: W_ih (G·H, I), W_hh (G·H, H), b_ih and b_hh (G·H,), G = 1, 4, 3.
Arguments of the scan are ``(x, W_ih, W_hh, b_ih, b_hh, *initial_states)``
with x of shape (N, T, I); without initial states they are zeros.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from . import helpers, recurrent_kernels as kernels
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

    def input_cols(self, hidden: int) -> slice:
        return slice(self.input_grad[0] * hidden, self.input_grad[1] * hidden)

    def recurrent_cols(self, hidden: int) -> slice:
        return slice(self.recurrent_grad[0] * hidden, self.recurrent_grad[1] * hidden)


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


def _emit_scan(args, attrs, out=None):
    return f"{attrs['cell']}_scan({', '.join(args)}, state=state, out={out})"


def _reused(anchor, op, args, attrs, name):
    """The node ``op(args)`` among ``anchor``'s consumers, added on first use: the vjps of every argument ask for it."""
    graph = anchor.graph
    wanted = [a.node for a in args]
    for node in graph.nx.successors(anchor.node):
        data = graph.nx.nodes[node]
        if data["op"] == op and graph.args(node) == wanted and data["attrs"] == attrs:
            return graph.tensor(node)
    return graph.apply(op, args, attrs, name=name)


def _columns(start, stop, steps=(None, None)):
    """The getitem index of columns [start, stop) of the steps [steps) of a (T, N, ·) array."""
    return (("slice", *steps, None), ("slice", None, None, None), ("slice", start, stop, None))


def _weight_columns(hidden, inputs):
    """Where each weight's gradient lies in the columns of a ``recurrent_weight_grad``."""
    return {"W_hh": slice(0, hidden), "b_hh": hidden, "W_ih": slice(hidden + 1, hidden + 1 + inputs),
            "b_ih": hidden + 1 + inputs}


def _summands(t):
    """The terms of ``t`` when it is a sum of same-shaped tensors (how the chain rule adds up fan-out), else [t]."""
    if t.op != "add":
        return [t]
    args = [t.graph.tensor(a) for a in t.graph.args(t.node)]
    if any(a.shape != t.shape for a in args):
        return [t]
    return [term for a in args for term in _summands(a)]


def _state_block(term, out, cell, hidden):
    """The state whose tape block ``term`` writes, ``scatter(value, tape, [block's columns])``, else None."""
    graph = term.graph
    if term.op != "scatter" or graph.args(term.node)[1] != out.node:
        return None
    for state in cell.states:
        k = cell.tape.index(state)
        if term.attrs["index"] == _columns(k * hidden, (k + 1) * hidden):
            return state
    return None


def _split_cotangent(g, out, cell, hidden):
    """The tape's cotangent ``g`` as the cotangents of the states: ({state: of its final value (N, H)},
    {state: of its every step (T, N, H)}), and the rest (None if nothing).

    A loss that reads only the states (a classifier on the last hidden state, a sequence
    model on all of them) then builds no (T, N, S·H) array of zeros: the reverse loop adds
    the states' cotangents itself, starting from the final states' ones.  Reading the last
    step of a state's block makes ``scatter(scatter(d, block, [-1]), tape, [block's columns])``.
    """
    final, sequence, rest = {}, {}, []
    for term in _summands(g):
        state = _state_block(term, out, cell, hidden)
        if state is None:
            rest.append(term)
            continue
        for part in _summands(term.graph.tensor(term.graph.args(term.node)[0])):
            if part.op == "scatter" and part.attrs["index"] in ((-1,), (out.shape[0] - 1,)):
                final.setdefault(state, []).append(part.graph.tensor(part.graph.args(part.node)[0]))
            else:
                sequence.setdefault(state, []).append(part)
    total = lambda terms: functools.reduce(operator.add, terms)
    by_state = lambda parts: {state: total(parts[state]) for state in cell.states if state in parts}
    return by_state(final), by_state(sequence), total(rest) if rest else None


def backward_steps(g, args, out, attrs):
    """The one reverse-loop node for this scan and cotangent, shared by the vjps of all arguments."""
    graph = g.graph
    for node in graph.nx.successors(out.node):
        if graph.nx.nodes[node].get("cotangent") == g.node:
            return graph.tensor(node)
    cell = CELLS[attrs["cell"]]
    final, sequence, dense = _split_cotangent(g, out, cell, args[2].shape[1])
    grad_args = [out, args[2], *args[5:], *final.values(), *sequence.values()] + ([] if dense is None else [dense])
    grad_attrs = {"cell": cell.name, "truncate": attrs.get("truncate") or 0, "initial": len(args) > 5,
                  "final": tuple(final), "sequence": tuple(sequence), "dense": dense is not None}
    steps = graph.apply("recurrent_scan_grad", grad_args, grad_attrs, name="scan_grad")
    graph.nx.nodes[steps.node]["cotangent"] = g.node  # what later vjps of this scan look it up by
    return steps


def weight_grads(steps, args, out, attrs):
    """[dW_hh | db_hh | dW_ih | db_ih] (G·H, H + 1 + I + 1) of a scan, from its reverse loop's steps."""
    weight_args = [steps, out, args[0], *args[5:6]]
    return _reused(steps, "recurrent_weight_grad", weight_args, {"cell": attrs["cell"], "hidden": args[2].shape[1]},
                   name="weight_grad")


def _scan_vjp(index):
    def vjp(g, args, out, attrs):
        cell, H, I = CELLS[attrs["cell"]], args[2].shape[1], args[0].shape[2]
        steps = backward_steps(g, args, out, attrs)
        if index == 0:  # x: one GEMM for all steps, back to batch-major
            return (steps[:, :, cell.input_cols(H)] @ args[1]).transpose(1, 0, 2)
        if index <= 4:  # W_ih, W_hh, b_ih, b_hh: columns of the one weight-gradient GEMM
            return weight_grads(steps, args, out, attrs)[:, _weight_columns(H, I)[ARGUMENTS[index]]]
        start = (cell.state_grad + index - 5) * H  # the gradient that flowed out of step 0
        return steps[0, :, start:start + H]
    return vjp


register(Op(
    name="recurrent_scan", shape=_scan_shape, emit=_emit_scan, emit_into=_emit_scan, fresh=True, vjps=_scan_vjp,
    expand=lambda graph, node: unrolled_tape(graph, node),  # defined below, with the unrolled cells
    local_derivative=("δ_t·W_ih at every step t", "Σ_t δ_tᵀ·x_t", "Σ_t δ_tᵀ·h_t−1", "Σ_t δ_t", "Σ_t δ_t", "δ_0·W_hh"),
    kernels=(kernels.rnn_scan, kernels.lstm_scan, kernels.gru_scan, helpers.work_array),
    doc="an RNN, LSTM or GRU over a whole sequence as one loop; the result is the tape (T, N, S·H) "
        "of states and gate activations that the backward loop reuses",
    test_shapes=((2, 3, 4), (20, 4), (20, 5), (20,), (20,), (2, 5), (2, 5)), test_attrs={"cell": "lstm"},
))


def _scan_grad_shape(shapes, attrs):
    cell = CELLS[attrs["cell"]]
    tape, W_hh, *rest = shapes
    n = len(cell.states) * attrs["initial"] + len(attrs["final"])
    expected = n + len(attrs["sequence"]) + attrs["dense"]
    if len(rest) != expected:
        raise ValueError(f"expected {expected} arguments after the tape and W_hh, got {len(rest)}")
    if any(tuple(s) != tuple(tape[:2]) + (W_hh[1],) for s in rest[n:n + len(attrs["sequence"])]):
        raise ValueError("a state's cotangent over all steps must be (T, N, H)")
    if attrs["dense"] and tuple(rest[-1]) != tuple(tape):
        raise ValueError("the cotangent must have the tape's shape")
    return (tape[0], tape[1], cell.steps_width * W_hh[1])


def _emit_scan_grad(args, attrs, out=None):
    cell = CELLS[attrs["cell"]]
    rest = list(args[2:])
    take = lambda present: rest.pop(0) if present else "None"
    initial = [take(attrs["initial"]) for _ in cell.states]
    final = [take(s in attrs["final"]) for s in cell.states]
    sequence = [take(s in attrs["sequence"]) for s in cell.states]
    per_state = lambda names: "(" + ", ".join(names) + ",)"
    return (f"{cell.name}_scan_grad({args[0]}, {args[1]}, {per_state(initial)}, {per_state(final)}, "
            f"{per_state(sequence)}, {take(attrs['dense'])}, {attrs['truncate']}, state, {out})")


def _reverse_of(graph, node):
    """The scan a reverse loop differentiates and the tape cotangent it pulls back: the parts
    `_split_cotangent` made of it, joined again."""
    attrs = graph.nx.nodes[node]["attrs"]
    cell = CELLS[attrs["cell"]]
    tape, W_hh, *rest = (graph.tensor(a) for a in graph.args(node))
    H = W_hh.shape[1]
    rest = rest[len(cell.states) * attrs["initial"]:]
    final = dict(zip(attrs["final"], rest[:len(attrs["final"])]))
    sequence = dict(zip(attrs["sequence"], rest[len(final):len(final) + len(attrs["sequence"])]))
    terms = rest[len(final) + len(sequence):]  # the dense rest, if any
    for k, state in enumerate(cell.tape):
        parts = [sequence[state]] if state in sequence else []
        if state in final:
            block = tape_block(tape, cell.name, state, H)
            parts.append(graph.apply("scatter", [final[state], block], {"index": (-1,)}))
        if parts:
            terms.append(_scatter(functools.reduce(operator.add, parts), tape, slice(k * H, (k + 1) * H)))
    return tape.node, functools.reduce(operator.add, terms)


def _differentiated_through_expansion(g, args, out, attrs):
    raise GraphError("internal: a derivative of recurrent_scan_grad is taken through recurrent_scan's "
                     "expansion (gg.grad re-derives it), never through the reverse loop itself")


register(Op(
    name="recurrent_scan_grad", shape=_scan_grad_shape, emit=_emit_scan_grad, emit_into=_emit_scan_grad, fresh=True,
    local_derivative=("through recurrent_scan's unrolled expansion",),
    vjps=lambda index: _differentiated_through_expansion, reverse_of=_reverse_of,
    kernels=(kernels.rnn_scan_grad, kernels.lstm_scan_grad, kernels.gru_scan_grad, helpers.work_array),
    doc="the reverse loop of recurrent_scan: per step the gradients of the pre-activations and of the "
        "previous state (T, N, D·H); arguments: the tape, W_hh, the initial states (attr initial), the "
        "cotangents of the final states and of the states' every step named by attrs final and sequence, "
        "and the rest of the tape's cotangent (attr dense)",
    test_shapes=((3, 2, 30), (20, 5), (2, 5), (2, 5), (2, 5), (3, 2, 5), (3, 2, 30)),
    test_attrs={"cell": "lstm", "initial": True, "final": ("h",), "sequence": ("c",), "dense": True},
))


def _weight_grad_shape(shapes, attrs):
    steps, tape, x, *h0 = shapes
    cell, H = CELLS[attrs["cell"]], attrs["hidden"]
    if tuple(steps[:2]) != tuple(tape[:2]) or steps[2] != cell.steps_width * H or tape[2] != len(cell.tape) * H:
        raise ValueError("steps and tape must be a scan's and its reverse loop's")
    return (cell.gates * H, H + 1 + x[2] + 1)


def _emit_weight_grad(args, attrs, out=None):
    steps, tape, x, *h0 = args
    cell, H = CELLS[attrs["cell"]], attrs["hidden"]
    columns = lambda s: (s.start, s.stop)
    return (f"scan_weight_grad({steps}, {tape}, {x}, {h0[0] if h0 else None}, {H}, "
            f"{columns(cell.input_cols(H))}, {columns(cell.recurrent_cols(H))}, state, {out})")


def _weight_grad_vjp(index):
    """The op is bilinear: [W_hh | b_hh | W_ih | b_ih] = Σ over steps and batch of d_recᵀ [h_{t−1}, 1], d_inᵀ [x_t, 1]."""
    def vjp(u, args, out, attrs):
        graph, cell, H = u.graph, CELLS[attrs["cell"]], attrs["hidden"]
        steps, tape, x, *h0 = args
        u = {name: u[:, column] for name, column in _weight_columns(H, x.shape[2]).items()}  # per weight
        d_input, d_recurrent = steps[:, :, cell.input_cols(H)], steps[:, :, cell.recurrent_cols(H)]
        if index == 0:
            earlier = tape_block(tape, cell.name, "h", H)[:-1] @ u["W_hh"].T
            first = (h0[0] @ u["W_hh"].T) if h0 else graph.apply("zeros_like", [earlier[0]])
            recurrent = graph.apply("concat", [first.reshape((1,) + first.shape), earlier], {"axis": 0}) + u["b_hh"]
            inputs = x.transpose(1, 0, 2) @ u["W_ih"].T + u["b_ih"]
            if cell.input_grad == cell.recurrent_grad:
                return _scatter(recurrent + inputs, steps, cell.input_cols(H))
            return _scatter(recurrent, steps, cell.recurrent_cols(H)) + _scatter(inputs, steps, cell.input_cols(H))
        if index == 1:  # through h_{t−1}: the tape's h of every step but the last
            return graph.apply("scatter", [d_recurrent[1:] @ u["W_hh"], tape], {"index": _columns(0, H, (None, -1))})
        if index == 2:
            return (d_input @ u["W_ih"]).transpose(1, 0, 2)
        return d_recurrent[0] @ u["W_hh"]
    return vjp


def _scatter(value, like, columns):
    """``value`` written into zeros shaped like ``like`` at ``columns`` of every step."""
    return value.graph.apply("scatter", [value, like], {"index": _columns(columns.start, columns.stop)})


register(Op(
    name="recurrent_weight_grad", shape=_weight_grad_shape, emit=_emit_weight_grad, emit_into=_emit_weight_grad,
    local_derivative=("[h_t−1, 1, x_t, 1]·ḡᵀ per step", "δ_t+1·ḡ_W_hhᵀ per step", "δ_t·ḡ_W_ihᵀ per step", "δ_0·ḡ_W_hhᵀ"),
    fresh=True, vjps=_weight_grad_vjp,
    kernels=(kernels.scan_weight_grad, helpers.work_array),
    doc="the weight gradients [W_hh | b_hh | W_ih | b_ih] of a scan from its steps, tape, x (and h0): "
        "one GEMM over all steps",
    test_shapes=((3, 2, 30), (3, 2, 30), (2, 3, 4), (2, 5)), test_attrs={"cell": "lstm", "hidden": 5},
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


def unrolled_tape(graph, node):
    """The tape of the ``recurrent_scan`` ``node`` rebuilt from its unrolled cells with concat and stack."""
    data = graph.nx.nodes[node]
    args = [graph.tensor(a) for a in graph.args(node)]
    cell = data["attrs"]["cell"]
    prefix = node.rsplit("/", 1)[0] if "/" in node else node
    with graph.scope(prefix):
        values = unrolled(args[0], args[1:5], args[5:], cell, data["attrs"].get("truncate"))
        rows = [graph.apply("concat", [_like(v[k], v["h"]) for k in CELLS[cell].tape], {"axis": 1}) for v in values]
        return graph.apply("stack", rows, {"axis": 0}, name="tape")


def unroll_scans(graph):
    """A copy of ``graph`` with every ``recurrent_scan`` replaced by its unrolled cells (for drawing, and
    for targets without the loop kernels); the tape's consumers read the same values."""
    scans = [n for n, d in graph.nx.nodes(data=True) if d["op"] == "recurrent_scan"]
    if not scans:
        return graph
    graph = graph.copy()
    for node in scans:
        tape = unrolled_tape(graph, node)
        for _, v, key, edge in list(graph.nx.out_edges(node, keys=True, data=True)):
            graph.nx.remove_edge(node, v, key)
            graph.nx.add_edge(tape.node, v, index=edge["index"])
        graph.nx.remove_node(node)
    return graph
