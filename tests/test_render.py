"""Rendering: DOT checked structurally; SVG/PNG only when Graphviz's dot is installed."""
import re
import shutil

import numpy as np
import pytest

import graphgrad as gg
from graphgrad.render import MAGNITUDE

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
    widths = {w: float(re.search(rf'"∂{w}" -> [^\n]*penwidth=([\d.]+)', coloured).group(1)) for w in grads}
    assert widths["fc1.W"] < widths["fc2.W"]  # the vanishing gradient is drawn thin
    grads["fc1.b"] = np.zeros(4)  # a branch not taken: the lightest, without squeezing the others' scale
    coloured = gg.render(loss, backward=True, grads=grads).source
    fills = {w: re.search(rf'^\s*"{w}" \[[^\]]*fillcolor="([^"]+)"', coloured, re.M).group(1) for w in grads}
    assert "|ḡ| = 0.00e+00" in coloured
    assert fills["fc1.b"] == fills["fc1.W"] == MAGNITUDE[0] and fills["fc2.W"] == MAGNITUDE[-1]


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


def backward_edges(source):
    return [line for line in source.splitlines() if "->" in line and "dir=back" in line]


def test_every_backward_edge_carries_its_local_derivative():
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    edges = backward_edges(gg.render(loss, backward=True).source)
    assert len(edges) == 9 and all("label=" in e for e in edges)  # one per argument the gradient reaches
    assert any("ḡ·(softmax(z) − onehot(y))/N" in e for e in edges)


def test_conv_pool_and_batch_norm_edges_are_labelled():
    g = gg.Graph("c")
    x = g.input("x", (None, 1, 6, 6))
    h = gg.nn.BatchNorm(name="bn")(gg.nn.Conv2D(2, 3, padding=1, name="conv")(x))
    h = gg.nn.MaxPool2D(2, name="pool")(gg.relu(h))
    h = gg.nn.AvgPool2D(3, name="gap")(gg.nn.Conv2D(2, 1, name="conv2")(h))
    source = gg.render(h.sum(), backward=True).source
    edges = backward_edges(source)
    assert edges and all("label=" in e for e in edges)
    for text in ("conv_transpose(ḡ, W)", "ḡ to each window's arg-max", "ḡ/k² spread over each window",
                 "(ḡ_μ + 2(x − μ)·ḡ_σ²)/m"):
        assert text in source, text


def test_compiled_step_labels_every_vjp_with_its_local_derivative():
    from graphgrad.autodiff import topological_order
    from graphgrad.render import _Drawing, chain_rule_edges

    g = gg.Graph("c")
    x = g.input("x", (None, 1, 6, 6))
    h = gg.nn.MaxPool2D(2, name="pool")(gg.relu(gg.nn.Conv2D(2, 3, padding=1, name="conv")(x)))
    h = gg.nn.Dense(3, activation="tanh", name="fc")(gg.nn.Flatten()(h))
    loss = gg.softmax_cross_entropy(h, g.input("y", (None,), dtype="int64"))
    step = gg.compile(loss, wrt=g.params)
    source = gg.render(step).source
    graph = step.derived_graph  # as compiled: the rewrites before differentiation done
    forward = [n for n in graph.nx if graph.nx.nodes[n].get("grad_of") is None]
    drawn = _Drawing(graph, forward)
    steps = chain_rule_edges(graph, loss.node, topological_order(graph, forward))
    assert {graph.nx.nodes[v]["op"] for v, _, _ in steps} >= {"matmul", "conv2d", "maxpool2d", "reshape"}
    for v, u, i in steps:  # the chain rule's every step has its local derivative on an edge
        assert drawn.local_text(v, i) in source, (v, u)
    # a matmul's vjp is named for the gradient it makes, not "matmul"; the edge ḡ enters it by says how
    assert re.search(r'"grad/fc/matmul/matmul_1" \[label="∂L/∂fc\.W\nmatmul \(\d+, 3\)"', source)
    assert re.search(r'"grad/fc/matmul/matmul_1" -> "[^"]+" \[label="[^"]*ᵀ·ḡ"', source)
    assert "ḡ·fc.Wᵀ" in source
    with_formulas = gg.render(step, formulas=True).source  # and the node shows it as its formula
    assert re.search(r'"grad/fc/matmul/matmul_1" \[label="∂L/∂fc\.W\nmatmul \(\d+, 3\)\n= \w+ᵀ·ḡ"', with_formulas)


def test_a_compiled_step_drawn_at_values_colours_what_each_vjp_carries():
    g = gg.Graph("mlp")
    x, y = g.input("x", (None, 3)), g.input("y", (None,), dtype="int64")
    h = gg.nn.Dense(4, activation="relu", name="fc1")(x)
    loss = gg.softmax_cross_entropy(gg.nn.Dense(3, name="fc2")(h), y)
    params = g.init_params(seed=0)
    feeds = {"x": np.random.default_rng(0).normal(size=(5, 3)), "y": np.array([0, 1, 2, 1, 0])}
    grads = gg.compile(loss, wrt=g.params)(params, **feeds)[1]
    before = {k: v.copy() for k, v in params.items()}
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))  # seeds its chain rule with lr, not 1
    source = gg.render(step, grads={**params, **feeds}).source
    for name in grads:  # the node that makes ∂L/∂p shows its mean, that of the true gradient
        mean = float(np.abs(grads[name]).mean())
        assert re.search(rf'\[label="∂L/∂{re.escape(name)}\n[^"]*\|ḡ\| = {mean:.2e}"', source), name
    assert all(np.array_equal(params[k], before[k]) for k in params)  # drawing did not take the step
    assert sum(colour in source for colour in MAGNITUDE) >= 2


def test_latex_notation_covers_the_structural_ops():
    """Every structural op's local derivative in notation="latex" is plain ASCII LaTeX that parses."""
    mathtext = pytest.importorskip("matplotlib.mathtext")
    from graphgrad.ops.registry import get_op
    from graphgrad.symbolic import local_text

    parser = mathtext.MathTextParser("path")
    for name in gg.ops():
        texts = get_op(name).local_derivative or ()
        for index in (i for i, text in enumerate(texts) if text is not None):
            latex = local_text(name, len(texts), {}, index, "latex")
            assert latex.isascii(), (name, latex)
            parser.parse(f"${latex}$")
    assert local_text("matmul", 2, {}, 1, "latex", names=["x", "W"]) == r"x^{\top} \cdot \bar{g}"
    assert r"h_{t-1}" in local_text("recurrent_scan", 6, {}, 2, "latex")


def test_a_layers_output_is_named_by_its_layer_in_local_derivatives():
    g = gg.Graph("mlp")
    x = g.input("x", (None, 3))
    h = gg.nn.Dense(4, activation="relu", name="fc1")(x)
    loss = gg.nn.Dense(2, name="fc2")(h).sum()
    source = gg.render(loss, backward=True).source
    assert "fc1ᵀ·ḡ" in source and "reluᵀ" not in source  # ∂L/∂fc2.W = fc1ᵀ·ḡ, as textbooks write h₁ᵀ·ḡ
    assert "xᵀ·ḡ" in source and "ḡ·fc2.Wᵀ" in source
    assert "fc1ᵀ·ḡ" in str(gg.explain(loss, g["fc2.W"]))


def test_formulas_in_the_chain_rule_drawing():
    g, loss = sigmoid_net()
    source = gg.render(loss, backward=True, formulas=True).source
    assert "= σ(matmul)" in source and "σ(x)(1 − σ(x))" in source


def test_repeated_argument_draws_two_labelled_edges():
    g = gg.Graph()
    x = g.input("x", (3,))
    edges = [e for e in backward_edges(gg.render((x * x).sum(), backward=True).source) if '"∂x"' in e]
    assert len(edges) == 2 and all("label=x" in e for e in edges)


def test_collapsed_boxes_keep_gradients_checks_and_highlight():
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    grads = {"fc1.W": np.full((8, 4), 1e-6), "fc2.W": np.ones((4, 10))}
    source = gg.render(loss, backward=True, grads=grads, collapse=True, highlight="fc1.W").source
    assert "max |ḡ| = 1.00e-06" in source and "max |ḡ| = 1.00e+00" in source
    assert "#ff7f00" in source
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(4, 8)), "y": np.array([0, 1, 2, 3]), **g.init_params(seed=0)}
    checked = gg.render(loss, check=values, collapse=True).source
    assert len(re.findall(r"worst rel. error ([0-9.e+-]+)", checked)) == 2  # fc1 and fc2


def test_optimizer_constants_show_values_and_state_is_named():
    g, loss = sigmoid_net()
    source = gg.render(gg.compile(loss, optimizer=gg.optim.Momentum(lr=0.01, momentum=0.9))).source
    assert "lr = 0.01" in source and "momentum = 0.9" in source
    assert "momentum of w" in source
    adam = gg.render(gg.compile(loss, optimizer=gg.optim.Adam(lr=0.1))).source
    assert "step count t" in adam and "1 − beta1 = 0.1" in adam and "1 − beta2 = 0.001" in adam
    assert "beta1 = 0.9" in adam and "1 − lr" not in adam  # 1 − lr is beta1's 0.9: a setting keeps its name
    assert "∂L/∂sum = lr = 0.1" in gg.render(gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))).source  # the seed


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".dot", b"digraph")])
def test_save_takes_the_format_from_the_extension(tmp_path, suffix, magic):
    g, loss = sigmoid_net()
    dot = gg.render(loss, backward=True)
    dot.save(tmp_path / f"a{suffix}")
    assert (tmp_path / f"a{suffix}").read_bytes().startswith(magic)
    dot.render(str(tmp_path / f"b{suffix}"))
    assert (tmp_path / f"b{suffix}").read_bytes().startswith(magic)
    dot.render(str(tmp_path / f"b{suffix}"), format=suffix[1:])  # the same, not b.png.png
    gg.render(loss, unroll=False).save(tmp_path / f"c{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{c}{suffix}" for c in "abc")  # no temp left


def test_save_refuses_an_unknown_extension(tmp_path):
    from graphgrad.render import save

    g, loss = sigmoid_net()
    with pytest.raises(gg.GraphError, match="extension"):
        save(loss, tmp_path / "a.jpg")


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".dot", b"digraph")])
def test_cli_render_writes_the_format_of_the_output_name(tmp_path, suffix, magic, capsys):
    from graphgrad.cli import main

    assert main(["render", "mlp", "--backward", "-o", str(tmp_path / f"mlp{suffix}")]) == 0
    assert (tmp_path / f"mlp{suffix}").read_bytes().startswith(magic)
    assert main(["render", "mlp", "-o", str(tmp_path / "mlp.jpg")]) == 1
    assert "name it .svg, .png, .pdf or .dot" in capsys.readouterr().err
