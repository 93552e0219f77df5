"""``import graphgrad`` leaves SymPy and graphviz out (half a second of every cold compile otherwise):
they are imported when a graph is compiled (unless the disk cache serves it), explained or drawn."""
import os
import subprocess
import sys

import graphgrad as gg


def _modules_after(code, env=None):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, env=env).stdout
    return set(out.split())


def test_import_graphgrad_imports_neither_sympy_nor_graphviz():
    modules = _modules_after("import graphgrad")
    assert "sympy" not in modules and "graphviz" not in modules


MLP_STEP = """
import numpy as np
import graphgrad as gg
g = gg.Graph("mlp")
x, y = g.input("x", (None, 3)), g.input("y", (None,), dtype="int64")
loss = gg.softmax_cross_entropy(gg.nn.Dense(2, name="fc2")(gg.nn.Dense(4, activation="relu", name="fc1")(x)), y)
step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
step(g.init_params(seed=0), x=np.ones((5, 3)), y=np.zeros(5, dtype=np.int64))
"""


def test_a_compile_served_from_the_disk_cache_imports_neither(tmp_path):
    env = dict(os.environ, GRAPHGRAD_CACHE=str(tmp_path))
    assert "sympy" in _modules_after(MLP_STEP, env)  # the first compile derives, with SymPy
    modules = _modules_after(MLP_STEP, env)  # declaring the same graph again, then a cache hit
    assert "sympy" not in modules and "graphviz" not in modules


def test_the_lazy_views_are_the_symbolic_functions():
    from graphgrad import symbolic

    assert gg.derivative is symbolic.derivative and gg.formula is symbolic.formula
    assert {"derivative", "formula"} <= set(dir(gg))
    assert str(gg.derivative(gg.sigmoid)) == "(1 - sigmoid(x))*sigmoid(x)"
