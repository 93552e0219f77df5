"""Layouts, not text: the drawings laid out by Graphviz (``dot -Tjson``) and measured."""
import re
import shutil
import sys
import pathlib

import networkx as nx
import numpy as np
import pytest

import graphgrad as gg

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from layout import cluster_boxes, crossings, edge_paths, layout, node_positions  # noqa: E402

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot binary not installed")
T = 4


def recurrent(layer_class, lowering="loop", sequences=False):
    g = gg.Graph(layer_class.__name__.lower())
    x = g.input("x", (None, T, 3))
    y = g.input("y", (None,), dtype="int64")
    layer = layer_class(5, lowering=lowering, return_sequences=sequences, name="rec")
    h = layer(x)
    h = h.mean(axis=1) if sequences else h
    return g, gg.softmax_cross_entropy(gg.nn.Dense(2, name="fc")(h), y), layer


@needs_dot
@pytest.mark.parametrize("layer_class", [gg.nn.RNN, gg.nn.LSTM, gg.nn.GRU])
@pytest.mark.parametrize("lowering", ["loop", "unrolled"])
def test_unrolled_steps_share_one_row_left_to_right(layer_class, lowering):
    _, loss, _ = recurrent(layer_class, lowering)
    laid = layout(gg.render(loss, backward=True, unroll=True))
    boxes = cluster_boxes(laid)
    steps = [boxes[f"cluster_t{t}"] for t in range(T)]
    assert f"cluster_t{T}" not in boxes
    bottoms, tops = [b[1] for b in steps], [b[3] for b in steps]
    assert max(bottoms) - min(bottoms) < 1 and max(tops) - min(tops) < 1  # one row
    assert all(a[2] < b[0] for a, b in zip(steps, steps[1:]))  # x increases with t, no overlap
    pos = node_positions(laid)
    for t in range(T):  # a column: x_t below the cell, the gradient above it
        assert pos[f"x_t{t}"][1] < pos[f"cell_t{t}"][1] < pos[f"dh_t{t}"][1]
    for lane in ("x_t", "cell_t", "dh_t"):  # straight lanes: one height per row
        heights = [pos[f"{lane}{t}"][1] for t in range(T)]
        assert max(heights) - min(heights) < 1, lane
    assert pos["dW"][1] > max(pos[f"dh_t{t}"][1] for t in range(T))  # Σ_t over the steps


@needs_dot
@pytest.mark.parametrize("layer_class", [gg.nn.RNN, gg.nn.LSTM, gg.nn.GRU])
@pytest.mark.parametrize("backward", [False, True])
def test_plain_drawing_of_an_unrolled_layer_keeps_its_steps_in_time_order(layer_class, backward):
    """Without unroll=True the unrolled lowering is drawn as it is built: step clusters left to right
    (full crossing minimisation moved the last step first)."""
    _, loss, _ = recurrent(layer_class, "unrolled")
    boxes = cluster_boxes(layout(gg.render(loss, backward=backward)))
    lefts = [boxes[f"cluster_rec/t{t}"][0] for t in range(T)]
    assert lefts == sorted(lefts), lefts


@needs_dot
def test_unrolled_lstm_backward_has_few_crossings():
    _, loss, _ = recurrent(gg.nn.LSTM)
    # the drawing before the textbook layout had 450 crossings; this one has none
    assert crossings(gg.render(loss, backward=True, unroll=True)) <= 450 // 5 // 9


@needs_dot
def test_unrolled_gradients_run_right_to_left_with_local_derivatives_and_norms():
    g, loss, layer = recurrent(gg.nn.LSTM, "unrolled")
    feeds = {"x": np.random.default_rng(0).normal(size=(6, T, 3)), "y": np.array([0, 1, 0, 1, 1, 0])}
    norms = gg.nn.gradient_norms_over_time(loss, layer, g.init_params(seed=0), feeds)
    dot = gg.render(loss, backward=True, unroll=True, grads=norms)
    source = dot.source
    for t in range(1, T):
        edge = re.search(rf'dh_t{t - 1} -> dh_t{t} \[([^\]]*)\]', source).group(1)
        assert "dir=back" in edge and "o_t·tanh(c_t)" in edge  # drawn back in time, with ∂h_t/∂h_t−1
        assert re.search(rf'dc_t{t - 1} -> dc_t{t} \[label=f_t ', source)  # the cell path: f_t
    widths = [float(w) for w in re.findall(r'dh_t\d -> dh_t\d \[[^\]]*penwidth=([\d.]+)', source)]
    assert len(set(widths)) > 1  # pen width follows the gradient's magnitude
    assert f"‖∂L/∂h_0‖ = {norms[0]:.2e}" in source
    assert "∂L/∂W_hh = Σ_t" in source
    for weight in ("rec.W_ih", "rec.W_hh", "rec.b_ih", "rec.b_hh"):
        assert len(re.findall(rf'^\s*"{weight}" \[label', source, re.M)) == 1  # drawn once
    drawn = {end for tail, head, _ in edge_paths(layout(dot)) for end in (tail, head)}
    assert not drawn & {"rec.W_ih", "rec.W_hh", "rec.b_ih", "rec.b_hh"}  # no edge across the steps


def _backward_edges(laid, lane):
    """{t: attributes} of the drawn backward edge ∂L/∂{lane}_t -> ∂L/∂{lane}_t−1 (tail at t−1, dir=back)."""
    names = {o["_gvid"]: o["name"] for o in laid["objects"]}
    edges = {}
    for e in laid["edges"]:
        tail, head = names[e["tail"]], names[e["head"]]
        if e.get("style") != "invis" and re.fullmatch(rf"d{lane}_t\d+", tail) and re.fullmatch(rf"d{lane}_t\d+", head):
            edges[int(head.removeprefix(f"d{lane}_t"))] = e
    return edges


def vanishing(layer_class, lowering):
    """A recurrent net whose gradient vanishes back in time: small recurrent weights."""
    g, loss, layer = recurrent(layer_class, lowering)
    params = g.init_params(seed=0)
    params["rec.W_hh"] *= 0.2
    rng = np.random.default_rng(0)
    return g, loss, layer, params, {"x": rng.normal(size=(6, T, 3)), "y": np.array([0, 1, 0, 1, 1, 0])}


@needs_dot
@pytest.mark.parametrize("layer_class", [gg.nn.RNN, gg.nn.LSTM, gg.nn.GRU])
@pytest.mark.parametrize("lowering", ["loop", "unrolled"])
def test_unrolled_grads_from_params_and_feeds_fade_back_in_time(layer_class, lowering):
    from graphgrad.render_bptt import MAGNITUDE

    g, loss, layer, params, feeds = vanishing(layer_class, lowering)
    laid = layout(gg.render(loss, backward=True, unroll=True, grads={**params, **feeds}))
    edges = _backward_edges(laid, "h")
    assert sorted(edges) == list(range(1, T))
    widths = [float(edges[t]["penwidth"]) for t in range(1, T)]
    shades = [MAGNITUDE.index(edges[t]["color"]) for t in range(1, T)]
    assert widths == sorted(widths) and widths[0] < widths[-1]  # thinner the further back in time
    assert shades == sorted(shades) and shades[0] < shades[-1]  # and lighter
    labels = {o["name"]: o["label"] for o in laid["objects"] if "label" in o}
    norms = gg.nn.gradient_norms_over_time(loss, layer, params, feeds)  # the same numbers
    for t in range(T):
        assert f"‖∂L/∂h_{t}‖ = {norms[t]:.2e}" in labels[f"dh_t{t}"]
    assert "‖∂L/∂W‖" in labels["rec.W_hh"]


@needs_dot
def test_unrolled_grads_of_a_compiled_step_name_the_shared_weights():
    g, loss, _, params, feeds = vanishing(gg.nn.RNN, "loop")
    _, grads = gg.compile(loss, wrt=g.params)(params, **feeds)
    laid = layout(gg.render(loss, backward=True, unroll=True, grads=grads))
    labels = {o["name"]: o["label"] for o in laid["objects"] if "label" in o}
    assert f"‖∂L/∂W‖ = {np.linalg.norm(grads['rec.W_hh']):.2e}" in labels["rec.W_hh"]
    assert not any("‖∂L/∂h" in label for label in labels.values())  # no step's gradient to show


@needs_dot
def test_chain_rule_grads_from_params_and_feeds_fade_back_in_time():
    from graphgrad.render import MAGNITUDE

    g, loss, layer, params, feeds = vanishing(gg.nn.RNN, "unrolled")
    laid = layout(gg.render(loss, backward=True, grads={**params, **feeds}))
    nodes = {o["name"]: o for o in laid["objects"]}
    names = {o["_gvid"]: o["name"] for o in laid["objects"]}
    shades = [MAGNITUDE.index(nodes[f"∂{h.node}"]["fillcolor"]) for h in layer.hidden_states]
    assert shades == sorted(shades) and shades[0] < shades[-1]  # ∂L/∂h_t lighter back in time
    # the edges that deliver ∂L/∂h_t (drawn reversed, from it) thinner too
    widths = [max(float(e.get("penwidth", 1)) for e in laid["edges"]
                  if names[e["tail"]] == f"∂{h.node}" and e.get("dir") == "back") for h in layer.hidden_states]
    assert widths == sorted(widths) and widths[0] < widths[-1]


@needs_dot
def test_expand_draws_one_lstm_cell_with_its_gates():
    _, loss, _ = recurrent(gg.nn.LSTM)
    dot = gg.render(loss, backward=True, unroll=True, expand=True)
    pos = node_positions(layout(dot))
    gates = [pos[f"cell_t{T - 1}_{g}"] for g in "figo"]
    assert max(y for _, y in gates) - min(y for _, y in gates) < 1  # the gates side by side
    assert [x for x, _ in gates] == sorted(x for x, _ in gates)  # f, i, g, o, left to right, as Olah draws them
    forget, c = pos[f"cell_t{T - 1}_forget"], pos[f"cell_t{T - 1}_c"]
    assert abs(forget[1] - c[1]) < 1 and forget[1] > max(y for _, y in gates)  # c lane straight, on top
    assert "cell_t0_forget" not in pos  # the other cells stay boxes


@needs_dot
@pytest.mark.parametrize("step", [T - 1, 1])
def test_the_c_lane_runs_straight_into_and_out_of_an_expanded_cell(step):
    _, loss, _ = recurrent(gg.nn.LSTM)
    laid = layout(gg.render(loss, backward=True, unroll=True, expand=step))
    pos = node_positions(laid)
    lanes = {frozenset((tail, head)): path for tail, head, path in edge_paths(laid)}
    into = lanes[frozenset((f"cell_t{step - 1}", f"cell_t{step}_forget"))]
    (x0, _), (x1, _) = pos[f"cell_t{step - 1}"], pos[f"cell_t{step}_forget"]
    assert x0 - 40 < into[:, 0].min() and into[:, 0].max() < x1 + 40  # no loop round the cell
    if step + 1 in range(T):  # out of it, from the + of c_t to the next cell
        out = lanes[frozenset((f"cell_t{step}_c", f"cell_t{step + 1}"))]
        assert out[:, 0].max() < pos[f"cell_t{step + 1}"][0] + 80


def test_collapsed_resnet_has_no_false_cycle():
    _, loss, _ = gg.models.resnet()
    for level in (1, 2):
        source = gg.render(loss, collapse=level).source
        edges = re.findall(r'^\s*("[^"]+"|\w+) -> ("[^"]+"|\w+)', source, re.M)
        assert nx.is_directed_acyclic_graph(nx.DiGraph(edges)), level


@needs_dot
def test_collapsed_unet_is_drawn_as_a_u():
    _, loss, _ = gg.models.unet(depth=3)
    dot = gg.render(loss, collapse=True)
    pos = node_positions(layout(dot))
    down = [pos[f"unet/down {s}×{s}"] for s in (32, 16, 8)]
    up = [pos[f"unet/up {s}×{s}"] for s in (32, 16, 8)]
    bottom = pos["unet/bottom 4×4"]
    for (dx, dy), (ux, uy) in zip(down, up):
        assert abs(dy - uy) < 1 and dx < ux  # a level: the encoder left of the decoder, on one row
    assert [y for _, y in down] == sorted((y for _, y in down), reverse=True)  # down the left side
    assert bottom[1] < down[-1][1]  # the bottom of the U
    assert dot.source.count("label=skip") == 3  # the skip (concat) edges, one per level


@needs_dot
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_collapsed_unet_backward_reads_in_pipeline_order(depth):
    _, loss, _ = gg.models.unet(depth=depth)
    pos = node_positions(layout(gg.render(loss, backward=True, collapse=True)))
    sizes = [32 // 2 ** k for k in range(depth)]
    bottom = 32 // 2 ** depth
    for s in sizes:  # each level one row: down, up, then the mirror image ∂up, ∂down
        row = [pos[f"{box} {s}×{s}"] for box in ("unet/down", "unet/up", "∂unet/up", "∂unet/down")]
        assert max(y for _, y in row) - min(y for _, y in row) < 1, s
        assert [x for x, _ in row] == sorted(x for x, _ in row), s
    for d in ("", "∂"):  # the levels from the top down, the bottom of the U below them all
        for side in ("down", "up"):
            heights = [pos[f"{d}unet/{side} {s}×{s}"][1] for s in sizes]
            assert heights == sorted(heights, reverse=True), (d, side)
        assert pos[f"{d}unet/bottom {bottom}×{bottom}"][1] < pos[f"{d}unet/down {sizes[-1]}×{sizes[-1]}"][1]
    forward = max(x for n, (x, _) in pos.items() if n.startswith("unet/"))
    assert forward < min(x for n, (x, _) in pos.items() if n.startswith("∂"))  # the chain rule beside the net
    assert pos["∂mean"][0] < min(x for n, (x, _) in pos.items() if n.startswith("∂unet/"))  # enters from the loss


def test_unroll_without_a_recurrent_layer_is_a_clear_error():
    _, loss, _ = gg.models.mlp(features=8, hidden=4)
    with pytest.raises(gg.GraphError, match="recurrent layer"):
        gg.render(loss, unroll=True)
