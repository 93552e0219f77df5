"""Code generation: fused elementwise nodes written by ufunc chains into reused buffers."""
import functools

import numpy as np
import pytest

import graphgrad as gg
from standalone import run_without_graphgrad

RNG = np.random.default_rng(0)
A, B, C, D = (RNG.normal(size=(5, 3, 8)) for _ in range(4))
S = RNG.uniform(0.5, 2.0, size=(1, 3, 1))


def _compiled(expression):
    g = gg.Graph("chain")
    names = "abcd"
    xs = [g.input(n, (None, 3, 8)) for n in names]
    s = g.input("s", (1, 3, 1))
    # reduced, so the fused node is an intermediate written into a workspace buffer, not a result
    f = gg.compile(expression(*xs, s).sum(axis=2), dtype="float64")
    return f, {n: v for n, v in zip(names, (A, B, C, D))} | {"s": S}


CASES = {
    "two compound terms": lambda a, b, c, d, s: a * b + c * d,
    "a compound term subtracted": lambda a, b, c, d, s: a - b * c,
    "all terms negative": lambda a, b, c, d, s: -a - b * s,
    "small operands combined first": lambda a, b, c, d, s: a * s * 2.0 + b / s - 1.0,
    "function of a compound": lambda a, b, c, d, s: gg.tanh(a * s + b) * c,
    "division by a full compound": lambda a, b, c, d, s: a / (b * b + 1.0),
    "masked sum": lambda a, b, c, d, s: gg.where(c, a + b, 0.0) * d,
    "sigmoid": lambda a, b, c, d, s: gg.sigmoid(a) * b + (1.0 - gg.sigmoid(a)) * c,
}


@pytest.mark.parametrize("name", CASES)
def test_chained_expression_matches_numpy(name):
    f, feeds = _compiled(CASES[name])
    sig = 1 / (1 + np.exp(-A))
    expected = {
        "two compound terms": A * B + C * D, "a compound term subtracted": A - B * C, "all terms negative": -A - B * S,
        "small operands combined first": A * S * 2 + B / S - 1, "function of a compound": np.tanh(A * S + B) * C,
        "division by a full compound": A / (B * B + 1), "masked sum": np.where(C > 0, A + B, 0.0) * D,
        "sigmoid": sig * B + (1 - sig) * C,
    }[name]
    np.testing.assert_allclose(f({}, **feeds), expected.sum(axis=2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f({}, **feeds), expected.sum(axis=2), rtol=1e-12, atol=1e-12)  # buffers reused


def test_only_the_sigmoid_is_chained_through_tanh():
    """A fused exp stays np.exp: SymPy's exp has a tanh rewrite too, (1 + tanh(x/2)) / (1 − tanh(x/2)), which
    divides by zero in float32 at x = 20 (the value is 4.9e8)."""
    g = gg.Graph("exp")
    x = g.input("x", (None, 5000))
    e = gg.exp(x)
    f = gg.compile(e * e.sum())  # exp an intermediate, written by a chain
    assert "np.tanh" not in f.source
    xv = np.full((1, 5000), 20.0, np.float32)
    expected = np.exp(np.float64(20.0)) ** 2 * 5000
    np.testing.assert_allclose(f({}, x=xv), np.full((1, 5000), expected), rtol=1e-5)


def test_a_chain_never_overwrites_an_argument_it_reads_again():
    g = gg.Graph("alias")
    x = g.input("x", (None, 4))
    d, e = g.input("d", (None, 4)), g.input("e", (None, 4))
    m = x @ g.const(np.eye(4) * 2.0)  # lives in a workspace buffer, dead after the next node
    f = gg.compile((d * e + m * 3.0).sum(axis=1), dtype="float64")
    assert "buffer(state" in f.source
    xv, dv, ev = (RNG.normal(size=(6, 4)) for _ in range(3))
    np.testing.assert_allclose(f({}, x=xv, d=dv, e=ev), (dv * ev + 6.0 * xv).sum(axis=1), rtol=1e-12)


def test_fused_nodes_write_into_their_buffer_without_temporaries():
    f, _ = _compiled(CASES["two compound terms"])
    body = f.source[f.source.index("def step"):]
    assert "out=buffer(state," in body and "np.add(" in body


# -- the generated module as a text people read -----------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _modules() -> tuple:
    """(name, source) of the training steps and forward functions of every model the examples and
    benchmarks build; compiled once for the tests that read them."""
    from benchmarks.graphgrad_system import build_graph
    from benchmarks.reference import make_workload

    modules = []
    for name in ("mlp", "cnn", "resnet", "unet", "rnn", "lstm", "gru"):
        g, loss, logits = getattr(gg.models, name)()
        modules.append((name, gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3)).source))
        modules.append((f"{name} forward", gg.compile(logits, training=False).source))
    for workload in ("W1", "W2", "W3", "W4", "W5"):
        params, data = make_workload(workload, small=True)
        g, loss, _ = build_graph(workload, params, {**data, "workload": workload})
        modules.append((workload, gg.compile(loss, optimizer=gg.optim.SGD(lr=0.01)).source))
    g, loss, _ = build_graph("W2", *make_workload("W2", small=True))
    modules.append(("W2 checked", gg.compile(loss, wrt=g.params, check_finite=True).source))
    return tuple(modules)


def _top_level(source):
    import ast

    return ast.parse(source).body


def test_every_generated_line_fits_in_119_characters():
    for name, source in _modules():
        long = [line for line in source.splitlines() if len(line) >= 120]
        assert not long, f"{name}: {long[0]}"
        compile(source, name, "exec")


def test_the_step_comes_first_and_only_called_helpers_follow_it():
    import ast

    for name, source in _modules():
        body = _top_level(source)
        functions = [s.name for s in body if isinstance(s, (ast.FunctionDef, ast.ClassDef))]
        assert functions[:4] == ["step", "new_state", "unpack", "run"], name
        # every pasted definition is read by the step or by another definition
        for statement in body:
            defined = ([statement.name] if isinstance(statement, (ast.FunctionDef, ast.ClassDef)) else
                       [t.id for t in getattr(statement, "targets", []) if isinstance(t, ast.Name)])
            for d in defined:
                if d[0].islower() or d.startswith("_"):
                    others = [s for s in body if s is not statement]
                    reads = {n.id for s in others for n in ast.walk(s) if isinstance(n, ast.Name)}
                    assert d in reads or d in ("run", "step"), f"{name}: {d} is never called"
        # no work at import but the optimizer state (the allocator is the runtime's business)
        calls = [s for s in body if isinstance(s, ast.Expr) and not isinstance(s.value, ast.Constant)]
        assert not calls and "1 << 24" not in source, name


def test_a_cnn_module_pastes_the_conv_and_pool_kernels_it_calls_and_no_others():
    g, loss, logits = gg.models.cnn()
    source = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3)).source
    for unused in ("def avgpool2d", "def upsample_", "def conv_transpose2d", "def maxpool2d_gather_at",
                   "def scatter_into_zeros", "def log_softmax_lastdims", "def batch_norm_stats"):
        assert unused not in source
    for used in ("def conv2d(", "def maxpool2d(", "def maxpool2d_grad(", "def dropout_mask(", "def softmax_xent("):
        assert used in source
    helpers = source[source.index("# ---- helpers from"):]
    assert len(helpers.splitlines()) < 0.7 * len(source.splitlines())


def test_a_saved_cnn_module_runs_where_graphgrad_cannot_be_imported(tmp_path):
    g, loss, logits = gg.models.cnn()
    f = gg.compile(loss, wrt=g.params)
    params = g.init_params(seed=1)
    X = RNG.normal(size=(5, 1, 8, 8)).astype(np.float32)
    Y = np.arange(5) % 10
    path = tmp_path / "cnn_module.py"
    f.save(path)
    out_value, out_grads = run_without_graphgrad(path, params, {"x": X, "y": Y})
    value, grads = f(params, x=X, y=Y)
    assert float(out_value) == pytest.approx(float(value), rel=1e-6)
    assert float(out_grads["conv1.W"].sum()) == pytest.approx(float(grads["conv1.W"].sum()), rel=1e-5, abs=1e-6)


def test_a_failure_in_a_statement_with_its_comment_above_names_the_node():
    g = gg.Graph("long")
    y = g.input("y", (None,), dtype="int64")
    name = "labels_turned_into_rows_of_the_identity_matrix_for_the_cross_entropy"
    hot = g.apply("one_hot", [y], {"num_classes": 4}, name=name)
    f = gg.compile(hot.sum())
    assert f"    # {name}: one_hot" in f.source
    with pytest.raises(gg.GraphError, match=f"one_hot node '{name}'.*labels must lie in"):
        f({}, y=np.array([0, 7]))


def test_the_runtime_tunes_the_allocator_once_and_can_be_told_not_to():
    import platform
    import subprocess
    import sys

    script = "import graphgrad.runtime as r; print(r.tune_allocator())"
    tuned = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert tuned.strip() == str(platform.libc_ver()[0] == "glibc")
    env = {**__import__("os").environ, "GRAPHGRAD_TUNE_MALLOC": "0"}
    skipped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert skipped.stdout.strip() == "False"
