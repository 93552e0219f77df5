"""Rendering: DOT checked structurally; SVG/PNG only when Graphviz's dot is installed."""
import re
import shutil

import numpy as np
import pytest

import graphgrad as gg

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot binary not installed")


def nodes_and_edges(source):
    nodes = re.findall(r'^\s*("[^"]+"|\w+) \[label=', source, re.M)
    edges = re.findall(r'^\s*("[^"]+"|\w+) -> ("[^"]+"|\w+)', source, re.M)
    return nodes, edges


def sigmoid_net():
    g = gg.Graph("neuron")
    x = g.input("x", (None, 3))
    w = g.param("w", (3, 1))
    return g, gg.sigmoid(x @ w).sum()


def test_forward_draws_each_node_and_edge_once():
    g, loss = sigmoid_net()
    nodes, edges = nodes_and_edges(gg.render(loss).source)
    assert len(nodes) == 5 and len(edges) == 4  # x, w, matmul, sigmoid, sum
    assert "(N, 3)" in gg.render(loss).source  # the batch is shown as N


def test_backward_adds_gradient_nodes_with_sigmoid_derivative_label():
    g, loss = sigmoid_net()
    source = gg.render(loss, backward=True).source
    nodes, edges = nodes_and_edges(source)
    assert len(nodes) > 5 and "dashed" in source and "dir=back" in source
    assert "σ(x)(1 − σ(x))" in source
    assert "∂L/∂w" in source  # the param's final gradient is named
    assert len(g.nx) == 5  # rendering differentiates a copy, the user's graph is unchanged


def test_latex_labels_on_request():
    g, loss = sigmoid_net()
    assert r"\sigma\left(x\right)" in gg.render(loss, backward=True, notation="latex").source


def test_layers_are_clusters_and_collapse_to_boxes():
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    source = gg.render(loss).source
    assert "subgraph cluster_fc1" in source and "subgraph cluster_fc2" in source
    collapsed = gg.render(loss, collapse=True).source
    nodes, _ = nodes_and_edges(collapsed)
    assert "fc1" in nodes and "fc2" in nodes and "cluster_" not in collapsed
    assert "36 params" in collapsed  # fc1: 8·4 + 4


def test_highlight_grads_and_rankdir():
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    source = gg.render(loss, highlight="fc2.W", rankdir="LR").source
    assert "rankdir=LR" in source and "#ff7f00" in source
    grads = {"fc1.W": np.full((8, 4), 1e-6), "fc2.W": np.ones((4, 10))}
    coloured = gg.render(loss, backward=True, grads=grads).source
    assert "|ḡ| = 1.00e-06" in coloured and "|ḡ| = 1.00e+00" in coloured


def test_gradient_check_colours_nodes_by_relative_error():
    g, loss = sigmoid_net()
    values = {"x": np.random.default_rng(0).normal(size=(4, 3)), "w": np.ones((3, 1))}
    source = gg.render(loss, backward=True, check=values).source
    errors = [float(e) for e in re.findall(r"rel. error ([0-9.e+-]+)", source)]
    assert len(errors) == 4 and max(errors) < 1e-5  # w, matmul, sigmoid, sum


def test_compiled_step_renders_the_optimizer_update():
    g, loss = sigmoid_net()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    source = gg.render(step).source
    assert "assign" in source and "cluster_sgd" in source
    again = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))  # a cache hit rebuilds the graphs to draw
    assert "assign" in gg.render(again, optimized=True).source


def test_unroll_dispatches_to_render_bptt():
    g = gg.Graph("rnn")
    x = g.input("x", (None, 4, 3))
    loss = gg.nn.RNN(5, name="rnn")(x).sum()
    source = gg.render(loss, backward=True, unroll=True).source
    assert sum(f"cluster_t{t}" in source for t in range(4)) == 4 and "cluster_t4" not in source


def test_rendering_other_objects_is_a_clear_error():
    with pytest.raises(gg.GraphError, match="Tensor, a Graph or a Compiled"):
        gg.render(42)


@needs_dot
def test_svg_and_png_render(tmp_path):
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    dot = gg.render(loss, backward=True)
    svg = dot.pipe(format="svg").decode()
    assert "<svg" in svg
    dot.render(tmp_path / "mlp", format="png", cleanup=True)
    assert (tmp_path / "mlp.png").stat().st_size > 1000
    assert "<svg" in g._repr_svg_() and "<svg" in loss._repr_svg_()
