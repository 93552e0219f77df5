"""Code generation: fused elementwise nodes written by ufunc chains into reused buffers."""
import numpy as np
import pytest

import graphgrad as gg

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
