"""Recurrent layers: against torch.nn.RNN/LSTM/GRU with copied weights, the two lowerings against
each other, finite differences, truncated BPTT, gradient norms over time, rendering and bad input."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphgrad as gg
from graphgrad.ops import recurrent as R
from graphgrad.nn.recurrent import UNROLL_LIMIT as R_UNROLL_LIMIT

N, T, I, H = 3, 5, 4, 6
LAYERS = {"rnn": gg.nn.RNN, "lstm": gg.nn.LSTM, "gru": gg.nn.GRU}


def build(cell, lowering, initial_state=True, truncate=None, T=T):
    """A float64 graph whose loss weighs every hidden state and the final state(s) by random inputs."""
    g = gg.Graph(f"{cell}_{lowering}")
    x = g.input("x", (None, T, I), dtype="float64")
    layer = LAYERS[cell](H, return_sequences=True, return_state=True, lowering=lowering, truncate=truncate,
                         name="rec")
    states = None
    if initial_state:
        states = tuple(g.input(f"{s}0", (None, H), dtype="float64") for s in R.CELLS[cell].states)
    seq, final = layer(x, states)
    final = final if isinstance(final, tuple) else (final,)
    loss = (seq * g.input("P", (None, T, H), dtype="float64")).sum()
    for k, f in enumerate(final):
        loss = loss + (f * g.input(f"Q{k}", (None, H), dtype="float64")).sum()
    return g, loss, seq, final, layer


def feeds_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return {t.node: rng.normal(size=(N,) + t.shape[1:]) for t in g.inputs}


@pytest.mark.parametrize("lowering", ["unrolled", "loop"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_matches_torch(cell, lowering):
    torch = pytest.importorskip("torch")
    g, loss, seq, final, _ = build(cell, lowering)
    params, feeds = g.init_params(seed=1), feeds_for(g)
    wrt = g.params + [g[n] for n in feeds if n[0] in "xhc"]
    (value, seq_v, *final_v), grads = gg.compile([loss, seq, *final], wrt=wrt, dtype="float64")(params, **feeds)

    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, batch_first=True).double()
    with torch.no_grad():
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            torch_name = ("weight_" if name[0] == "W" else "bias_") + name[2:] + "_l0"
            getattr(module, torch_name).copy_(torch.tensor(params[f"rec.{name}"]))
    x = torch.tensor(feeds["x"], requires_grad=True)
    states = [torch.tensor(feeds[f"{s}0"][None], requires_grad=True) for s in R.CELLS[cell].states]
    out, final_t = module(x, tuple(states) if cell == "lstm" else states[0])
    final_t = final_t if isinstance(final_t, tuple) else (final_t,)
    expected = (out * torch.tensor(feeds["P"])).sum()
    for k, f in enumerate(final_t):
        expected = expected + (f[0] * torch.tensor(feeds[f"Q{k}"])).sum()
    expected.backward()

    assert abs(value - expected.item()) < 1e-6
    np.testing.assert_allclose(seq_v, out.detach().numpy(), atol=1e-6)
    for mine, theirs in zip(final_v, final_t):
        np.testing.assert_allclose(mine, theirs[0].detach().numpy(), atol=1e-6)
    torch_grads = {f"rec.{n}": getattr(module, ("weight_" if n[0] == "W" else "bias_") + n[2:] + "_l0").grad
                   for n in ("W_ih", "W_hh", "b_ih", "b_hh")}
    torch_grads["x"] = x.grad
    torch_grads.update({f"{s}0": t.grad[0] for s, t in zip(R.CELLS[cell].states, states)})
    for name, expected_grad in torch_grads.items():
        np.testing.assert_allclose(grads[name], expected_grad.numpy(), atol=1e-6, err_msg=name)


@pytest.mark.parametrize("initial_state", [True, False])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lowerings_agree(cell, initial_state):
    results = []
    for lowering in ("unrolled", "loop"):
        g, loss, *_ = build(cell, lowering, initial_state=initial_state, truncate=2)
        params, feeds = g.init_params(seed=2), feeds_for(g, seed=3)
        wrt = g.params + [g["x"]]
        results.append(gg.compile(loss, wrt=wrt, dtype="float64")(params, **feeds))
    (v1, g1), (v2, g2) = results
    assert abs(v1 - v2) < 1e-10
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], atol=1e-10, rtol=0, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_saturated_gates_match_the_unrolled_cells(cell, dtype):
    """Pre-activations in the thousands: the loop's exp overflows (gates exactly 0; an LSTM's g exactly −1, and
    o = h = 0 where its reverse loop recovers tanh(c) as h / o), silently, and agrees with the unrolled cells;
    a saturated gate's derivative (e^−2000 or so) is exactly 0 one way and 1e-300 the other."""
    results = []
    for lowering in ("unrolled", "loop"):
        g, loss, *_ = build(cell, lowering)
        params, feeds = g.init_params(seed=2), feeds_for(g, seed=3)
        params = {k: v * 2000 for k, v in params.items()}
        wrt = g.params + [g[n] for n in feeds if n[0] in "xhc"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            results.append(gg.compile(loss, wrt=wrt, dtype=dtype)(params, **feeds))
    (v1, g1), (v2, g2) = results
    tol = 1e-3 if dtype == "float32" else 1e-9
    assert np.isfinite(v1) and np.isfinite(v2) and abs(v1 - v2) <= tol * max(1, abs(v1))
    for name in g1:
        assert np.isfinite(g1[name]).all() and np.isfinite(g2[name]).all(), name
        np.testing.assert_allclose(g2[name], g1[name], rtol=tol, atol=tol * max(1, np.abs(g1[name]).max()),
                                   err_msg=name)


def test_auto_lowering_loops_long_sequences_and_code_stays_flat():
    sizes = []
    for steps in (20, 60):
        g = gg.Graph("long")
        x = g.input("x", (None, steps, I))
        layer = gg.nn.LSTM(H, name="lstm")
        loss = layer(x).sum()
        assert layer.tape is not None and layer.hidden_states is None
        sizes.append(len(gg.compile(loss, wrt=g.params).source))
    assert sizes[0] == sizes[1]
    g = gg.Graph("short")
    layer = gg.nn.LSTM(H, name="lstm")
    layer(g.input("x", (None, 4, I)))
    times = {d.get("time") for _, d in g.nx.nodes(data=True)}
    assert times == {None, 0, 1, 2, 3}


def test_shared_weights_are_single_nodes_used_by_every_step():
    g, *_ = build("lstm", "unrolled")
    W_hh_T = next(iter(g.nx.successors("rec.W_hh")))
    users = {g.nx.nodes[v].get("time") for v in g.nx.successors(W_hh_T)}
    assert users == set(range(T))


def test_finite_differences_tiny_lstm():
    for lowering in ("unrolled", "loop"):
        g, loss, *_ = build("lstm", lowering)
        gg.check_grad(loss, g.init_params(seed=4), feeds_for(g, seed=5), wrt=g.params + [g["x"], g["h0"]])


def test_truncated_bptt_matches_hand_computed_truncation():
    """truncate=2 over 5 steps: the gradient of the last hidden state reaches steps 4 and 3 only."""
    for lowering in ("unrolled", "loop"):
        g = gg.Graph("tbptt")
        x = g.input("x", (None, T, I), dtype="float64")
        h = gg.nn.RNN(H, lowering=lowering, truncate=2, name="rnn")(x)
        loss = h.sum()
        params, feeds = g.init_params(seed=6), {"x": np.random.default_rng(7).normal(size=(N, T, I))}
        _, grads = gg.compile(loss, wrt=[g["x"]], dtype="float64")(params, **feeds)
        # by hand: run the RNN forward, then backward through steps 4 and 3 only (chunks [0,1], [2,3], [4])
        W_ih, W_hh, b_ih, b_hh = (params[f"rnn.{k}"].astype(np.float64) for k in ("W_ih", "W_hh", "b_ih", "b_hh"))
        b = b_ih + b_hh
        hs = [np.zeros((N, H))]
        for t in range(T):
            hs.append(np.tanh(feeds["x"][:, t] @ W_ih.T + hs[-1] @ W_hh.T + b))
        expected = np.zeros((N, T, I))
        da = np.ones((N, H)) * (1 - hs[T] ** 2)  # step 4 starts a chunk: nothing flows into step 3
        expected[:, T - 1] = da @ W_ih
        np.testing.assert_allclose(grads["x"], expected, atol=1e-12)


def test_truncation_keeps_chunk_internal_gradient():
    g = gg.Graph("tbptt3")
    x = g.input("x", (None, 6, I), dtype="float64")
    h = gg.nn.GRU(H, lowering="loop", truncate=3, name="gru")(x)
    params, feeds = g.init_params(seed=8), {"x": np.random.default_rng(9).normal(size=(N, 6, I))}
    _, grads = gg.compile(h.sum(), wrt=[g["x"]], dtype="float64")(params, **feeds)
    assert not np.any(grads["x"][:, :3]) and np.all(np.abs(grads["x"][:, 3:]).sum(axis=(0, 2)) > 0)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_gradient_norms_over_time_agree_between_lowerings(cell):
    norms = []
    for lowering in ("unrolled", "loop"):
        g, loss, _, _, layer = build(cell, lowering)
        norms.append(gg.nn.gradient_norms_over_time(loss, layer, g.init_params(seed=10), feeds_for(g, 11)))
    assert norms[0].shape == (T,)
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-6)


def test_bad_input_names_the_layer():
    g = gg.Graph("bad")
    with pytest.raises(gg.GraphError, match="'enc'"):
        gg.nn.LSTM(4, name="enc")(g.input("flat", (None, 8)))
    layer = gg.nn.GRU(4, name="dec")
    layer(g.input("seq", (None, 3, 8)))
    with pytest.raises(gg.GraphError, match="'dec'.*8 features"):
        layer(g.input("other", (None, 3, 5)))


def second_derivatives(cell, lowering, T=T, truncate=None):
    """∂/∂(params, x) of ‖∂loss/∂x‖², the loss weighing every state and the final state(s)."""
    g, loss, *_ = build(cell, lowering, truncate=truncate, T=T)
    x = g["x"]
    gx = gg.grad(loss, x)
    wrt = g.params + [x] + [g[f"{s}0"] for s in R.CELLS[cell].states]
    penalty = (gx * gx).sum()
    feeds = {t.node: np.random.default_rng(4).normal(size=(N,) + t.shape[1:]) for t in g.inputs}
    return gg.compile(penalty, wrt=wrt, dtype="float64")(g.init_params(seed=5), **feeds), g, feeds


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_second_derivatives_through_the_loop_equal_the_unrolled_ones(cell):
    (v1, g1), *_ = second_derivatives(cell, "unrolled", truncate=2)
    (v2, g2), *_ = second_derivatives(cell, "loop", truncate=2)
    assert abs(v1 - v2) < 1e-10 * max(1.0, abs(v1))
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], atol=1e-10, rtol=1e-9, err_msg=name)


def test_second_derivative_of_an_auto_lowered_long_sequence_matches_torch():
    torch = pytest.importorskip("torch")
    steps = R_UNROLL_LIMIT + 4  # "auto" loops here: the first derivative is the reverse-loop kernel
    (value, grads), g, feeds = second_derivatives("lstm", "auto", T=steps)
    assert any(d["op"] == "recurrent_scan" for _, d in g.nx.nodes(data=True))

    module = torch.nn.LSTM(I, H, batch_first=True).double()
    params = g.init_params(seed=5)
    with torch.no_grad():
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            getattr(module, ("weight_" if name[0] == "W" else "bias_") + name[2:] + "_l0").copy_(
                torch.tensor(params[f"rec.{name}"]))
    x = torch.tensor(feeds["x"], requires_grad=True)
    h0, c0 = (torch.tensor(feeds[f"{s}0"][None], requires_grad=True) for s in "hc")
    out, (hT, cT) = module(x, (h0, c0))
    loss = (out * torch.tensor(feeds["P"])).sum() + (hT[0] * torch.tensor(feeds["Q0"])).sum() \
        + (cT[0] * torch.tensor(feeds["Q1"])).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    penalty = (gx * gx).sum()
    penalty.backward()
    assert abs(value - penalty.item()) < 1e-9 * abs(value)
    np.testing.assert_allclose(grads["x"], x.grad.numpy(), atol=1e-9, rtol=1e-7)
    np.testing.assert_allclose(grads["h0"], h0.grad[0].numpy(), atol=1e-9, rtol=1e-7)
    np.testing.assert_allclose(grads["rec.W_hh"], module.weight_hh_l0.grad.numpy(), atol=1e-9, rtol=1e-7)
    np.testing.assert_allclose(grads["rec.b_ih"], module.bias_ih_l0.grad.numpy(), atol=1e-9, rtol=1e-7)


def test_second_derivative_through_two_stacked_loops():
    """Each first derivative is re-derived through its own layer's expansion, the upper layer's first."""
    results = []
    for lowering in ("unrolled", "loop"):
        g = gg.Graph("stacked")
        x = g.input("x", (2, 4, I), dtype="float64")
        h = gg.nn.LSTM(H, return_sequences=True, lowering=lowering, name="lower")(x)
        loss = (gg.nn.GRU(H, lowering=lowering, name="upper")(h) ** 2).sum()
        (gx,) = gg.grad(loss, [x])
        second = gg.grad((gx * gx).sum(), g.params + [x])
        feeds = {"x": np.random.default_rng(8).normal(size=(2, 4, I))}
        results.append(gg.compile(second, dtype="float64")(g.init_params(seed=9), **feeds))
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, atol=1e-10, rtol=1e-9)


def test_third_derivative_through_the_loop():
    results = []
    for lowering in ("unrolled", "loop"):
        g = gg.Graph("third")
        x = g.input("x", (2, 3, I), dtype="float64")
        loss = gg.nn.GRU(H, lowering=lowering, name="gru")(x).sum()
        (gx,) = gg.grad(loss, [x])
        (gxx,) = gg.grad((gx * gx).sum(), [x])
        third = gg.grad((gxx * gx).sum(), g.params)
        feeds = {"x": np.random.default_rng(6).normal(size=(2, 3, I))}
        results.append(gg.compile(third, dtype="float64")(g.init_params(seed=7), **feeds))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-9)


def test_bptt_rendering_has_a_cluster_per_step_and_one_node_per_weight():
    g = gg.Graph("draw")
    x = g.input("x", (None, 4, 3))
    y = g.input("y", (None,), dtype="int64")
    h = gg.nn.LSTM(5, lowering="loop", name="lstm")(x)
    loss = gg.softmax_cross_entropy(gg.nn.Dense(2, name="fc")(h), y)
    for collapsed in (False, True):
        dot = gg.render(loss, backward=True, unroll=True, collapsed=collapsed)
        source = dot.source
        assert sum(f"cluster_t{t}" in source for t in range(4)) == 4 and "cluster_t4" not in source
        for weight in ("lstm.W_ih", "lstm.W_hh", "lstm.b_ih", "lstm.b_hh"):
            assert source.count(f'"{weight}" [') == 1, weight
        assert "f_t" in source  # the cell path's local derivative


def state_loss(cell, lowering, initial_state, truncate, sequences):
    """A float64 graph whose loss reads only the hidden states: the last one (a classifier) or all of them."""
    g = gg.Graph(f"{cell}_{lowering}_states")
    x = g.input("x", (None, T, I), dtype="float64")
    states = None
    if initial_state:
        states = tuple(g.input(f"{s}0", (None, H), dtype="float64") for s in R.CELLS[cell].states)
    h = LAYERS[cell](H, return_sequences=sequences, lowering=lowering, truncate=truncate, name="rec")(x, states)
    return g, (h * g.input("Q0", (None, T, H) if sequences else (None, H), dtype="float64")).sum()


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("initial_state", [True, False])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_losses_skip_the_zero_tape(cell, initial_state, truncate, sequences):
    """The reverse loop takes the states' cotangents as they are: no (T, N, S·H) cotangent of zeros is built."""
    results = []
    for lowering in ("unrolled", "loop"):
        g, loss = state_loss(cell, lowering, initial_state, truncate, sequences)
        wrt = g.params + [g[n] for n in ("x", "h0", "c0") if n in g.nx]
        f = gg.compile(loss, wrt=wrt, dtype="float64")
        results.append(f(g.init_params(seed=12), **feeds_for(g, seed=13)))
    assert " = scatter_into_zeros(" not in f.source
    (v1, g1), (v2, g2) = results
    assert abs(v1 - v2) < 1e-10
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], atol=1e-10, rtol=0, err_msg=name)


def feeds_for_tape(g, seed):
    """Feeds with the batch wherever an input has it (the tape's blocks are time-major)."""
    rng = np.random.default_rng(seed)
    return {t.node: rng.normal(size=tuple(N if d is None else d for d in t.shape)) for t in g.inputs}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_direct_use_of_every_tape_block(cell):
    """A loss reading the gates too (as diagnostics do) sends the reverse loop a full cotangent of the tape."""
    g = gg.Graph(f"{cell}_tape")
    x = g.input("x", (None, T, I), dtype="float64")
    h0 = g.input("h0", (None, H), dtype="float64")
    layer = LAYERS[cell](H, lowering="loop", name="rec")
    states = (h0, g.input("c0", (None, H), dtype="float64")) if cell == "lstm" else h0
    layer(x, states)
    loss = None
    for k, block in enumerate(R.CELLS[cell].tape):
        term = (R.tape_block(layer.tape, cell, block, H) * g.input(f"P{k}", (T, None, H), dtype="float64")).sum()
        loss = term if loss is None else loss + term
    gg.check_grad(loss, g.init_params(seed=14), feeds_for_tape(g, seed=15), wrt=g.params + [x, h0])


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 9 * H * N * 8])  # one step per chunk; a few, the last one short
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reverse_loop_chunks_do_not_change_the_gradients(cell, chunk_bytes, monkeypatch):
    """The reverse loop computes local derivatives chunk by chunk; any chunk size gives the same steps."""
    from graphgrad.ops import recurrent_kernels as K
    rng = np.random.default_rng(16)
    G, S, steps = R.CELLS[cell].gates, len(R.CELLS[cell].tape), 7
    x = rng.normal(size=(N, steps, I))
    weights = [rng.normal(size=shape) * 0.5 for shape in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    initial = [rng.normal(size=(N, H)) for _ in R.CELLS[cell].states]
    tape = getattr(K, f"{cell}_scan")(x, *weights, *initial)
    assert tape.shape == (steps, N, S * H)
    args = (tape, weights[1], tuple(initial), tuple(rng.normal(size=(N, H)) for _ in initial),
            tuple(rng.normal(size=(steps, N, H)) for _ in initial), rng.normal(size=tape.shape), 3)
    whole = getattr(K, f"{cell}_scan_grad")(*args)
    monkeypatch.setattr(K, "_RK_CHUNK_BYTES", chunk_bytes)
    np.testing.assert_allclose(getattr(K, f"{cell}_scan_grad")(*args), whole, rtol=1e-12, atol=1e-12)



@settings(max_examples=8, deadline=None)
@given(cell=st.sampled_from(sorted(LAYERS)), batch=st.sampled_from([1, 2]), steps=st.sampled_from([1, 3, 17]),
       features=st.integers(1, 3), hidden=st.integers(1, 4), return_sequences=st.booleans(),
       lowering=st.sampled_from(["auto", "unrolled", "loop"]))
def test_configurations_match_torch(cell, batch, steps, features, hidden, return_sequences, lowering):
    """The last state or every state, from zeros, for one step or many (17: "auto" loops), batch 1 included."""
    torch = pytest.importorskip("torch")
    g = gg.Graph(cell)
    x = g.input("x", (None, steps, features), dtype="float64")
    out = LAYERS[cell](hidden, return_sequences=return_sequences, lowering=lowering, name="rec")(x)
    rng = np.random.default_rng(steps)
    xv, projection = rng.normal(size=(batch, steps, features)), rng.normal(size=(batch,) + out.shape[1:])
    params = g.init_params(seed=hidden)
    loss = (out * g.input("P", out.shape, dtype="float64")).sum()
    (_, value), grads = gg.compile([loss, out], wrt=[x] + g.params, dtype="float64")(params, x=xv, P=projection)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](features, hidden,
                                                                                     batch_first=True).double()
    names = {f"rec.{n}": ("weight_" if n[0] == "W" else "bias_") + n[2:] + "_l0"
             for n in ("W_ih", "W_hh", "b_ih", "b_hh")}
    with torch.no_grad():
        for ours, theirs in names.items():
            getattr(module, theirs).copy_(torch.tensor(params[ours]))
    tx = torch.tensor(xv, requires_grad=True)
    expected = module(tx)[0] if return_sequences else module(tx)[0][:, -1]
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    (expected * torch.tensor(projection)).sum().backward()
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for ours, theirs in names.items():
        np.testing.assert_allclose(grads[ours], getattr(module, theirs).grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=ours)
