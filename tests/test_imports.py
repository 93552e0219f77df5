"""``import graphgrad`` leaves SymPy and graphviz out (half a second of every cold compile otherwise):
they are imported when a graph is compiled, explained or drawn."""
import subprocess
import sys

import graphgrad as gg


def _modules_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_graphgrad_imports_neither_sympy_nor_graphviz():
    modules = _modules_after("import graphgrad")
    assert "sympy" not in modules and "graphviz" not in modules


def test_declaring_a_graph_needs_no_graphviz():
    modules = _modules_after("import graphgrad as gg\n"
                             "g = gg.Graph('g'); x = g.input('x', (None, 3)); gg.nn.Dense(2, activation='relu')(x)")
    assert "graphviz" not in modules


def test_the_lazy_views_are_the_symbolic_functions():
    from graphgrad import symbolic

    assert gg.derivative is symbolic.derivative and gg.formula is symbolic.formula
    assert {"derivative", "formula"} <= set(dir(gg))
    assert str(gg.derivative(gg.sigmoid)) == "(1 - sigmoid(x))*sigmoid(x)"
