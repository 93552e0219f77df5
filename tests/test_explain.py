"""The chain rule written out, derivative printing, summaries and shape formulas."""
import pytest

import graphgrad as gg
from graphgrad import symbolic


def test_local_derivatives_print_as_in_textbooks():
    assert symbolic.local_text("sigmoid", 1, {}, 0) == "σ(x)(1 − σ(x))"
    assert symbolic.local_text("tanh", 1, {}, 0) == "1 − tanh(x)²"
    assert symbolic.local_text("relu", 1, {}, 0) == "[x > 0]"
    assert symbolic.local_text("div", 2, {}, 1) == "−a/b²"
    assert symbolic.local_text("matmul", 2, {}, 0, names=["x", "W"]) == "ḡ·Wᵀ"


def test_explain_sums_paths_and_states_bounds():
    g = gg.Graph("deep")
    h = g.input("x", (None, 2))
    for i in range(4):
        h = gg.nn.Dense(2, activation="sigmoid", name=f"l{i}")(h)
    e = gg.explain(h.sum(), g["l0.W"])
    assert len(e.paths) == 1
    assert "σ(x)(1 − σ(x))" in e.unicode and "σ′ ≤ ¼" in e.unicode
    assert "at most 0.00391" in e.unicode  # (1/4)^4: why the first layer learns slowly
    assert e.latex.startswith(r"\frac{\partial")


def test_explain_counts_both_paths_of_x_times_x():
    g = gg.Graph()
    x = g.input("x", (3,))
    e = gg.explain((x * x).sum(), x)
    assert len(e.paths) == 2
    assert "(no path" in gg.explain(x.sum(), g.input("z", (3,))).unicode


def test_summary_counts_params_flops_and_conv_formula():
    g = gg.Graph("c")
    x = g.input("x", (None, 3, 28, 28))
    y = gg.nn.Conv2D(8, 3, stride=2, padding=1, name="conv1")(x)
    s = gg.summary(y.mean())
    row = s.rows[0]
    assert row["params"] == 8 * 3 * 9 + 8 and row["output"] == "(N, 8, 14, 14)"
    assert row["FLOPs"] >= 2 * 8 * 14 * 14 * 27
    assert "⌊(H + 2p − d(k−1) − 1)/s⌋ + 1 = 14" in row["output size"]
    assert "total" in str(s)


def test_shape_formulas():
    assert symbolic.shape_formula("conv2d", {"stride": 1, "padding": 1, "dilation": 2}, 32, 3) == 30
    assert symbolic.shape_formula("conv_transpose2d", {"stride": 2, "padding": 1, "output_padding": 1}, 7, 3) == 14
    with pytest.raises(gg.GraphError):
        symbolic.shape_formula("matmul")


def test_every_differentiable_op_has_a_closed_form_local_derivative():
    from graphgrad.ops import get_op

    for name in gg.ops():
        op = get_op(name)
        arity = op.arity or len(op.test_shapes or (0, 0))
        for i in range(arity):
            if op.vjp(i) is not None:
                text = symbolic.local_text(name, arity, op.test_attrs, i)
                assert text and "vjp" not in text, (name, i)
    assert symbolic.local_text("softmax_cross_entropy", 2, {}, 0) == "ḡ·(softmax(z) − onehot(y))/N"
    assert symbolic.local_text("conv2d", 2, {}, 0) == "conv_transpose(ḡ, W)"


def test_explain_tells_the_paths_of_x_times_x_apart():
    g = gg.Graph()
    x = g.input("x", (3,))
    text = gg.explain((x * x).sum(), x).unicode
    first, second = text.splitlines()[:2]
    assert "∂mul/∂x[arg 1]" in first and "∂mul/∂x[arg 2]" in second
    assert "∂mul/∂x[arg 1] = x" in text and "∂mul/∂x[arg 2] = x" in text


def test_explain_and_render_print_the_same_local_derivatives():
    g, loss, _ = gg.models.mlp(features=8, hidden=4)
    text = gg.explain(loss, g["fc1.W"]).unicode
    source = gg.render(loss, backward=True).source
    for label in ("ḡ·(softmax(z) − onehot(y))/N", "xᵀ·ḡ", "[x > 0]", "ḡ·fc2.Wᵀ"):
        assert label in text and label in source
