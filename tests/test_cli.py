"""The command line, run as a user would: exit codes and one-line messages."""
import shutil
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graphgrad.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_lists_the_commands():
    out = run("--help").stdout
    for command in ("demo", "render", "compile", "bench"):
        assert command in out


def test_render_writes_dot_and_compile_writes_a_module(tmp_path):
    r = run("render", "mlp", "--backward", "-o", str(tmp_path / "mlp.dot"))
    assert r.returncode == 0 and "σ" not in r.stderr
    assert "digraph" in (tmp_path / "mlp.dot").read_text()
    r = run("compile", "mlp", "-o", str(tmp_path / "step.py"))
    assert r.returncode == 0 and "import numpy" in (tmp_path / "step.py").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot binary not installed")
def test_render_svg_of_a_model_file(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import graphgrad as gg\n"
                     "def loss():\n"
                     "    g = gg.Graph('tiny'); x = g.input('x', (None, 2)); w = g.param('w', (2, 1))\n"
                     "    return gg.sigmoid(x @ w).sum()\n")
    r = run("render", f"{model}:loss", "--format", "svg", "-o", str(tmp_path / "t.svg"))
    assert r.returncode == 0, r.stderr
    assert "<svg" in (tmp_path / "t.svg").read_text()


@pytest.mark.parametrize("args, message", [
    (("render", "no_such_model"), "unknown model 'no_such_model'"),
    (("render", "missing.py:f"), "no such file: missing.py"),
    (("compile", "mlp"), "required"),
    (("demo", "nope"), "unknown demo 'nope'"),
])
def test_errors_are_one_line_without_traceback(args, message, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_graph_errors_in_a_model_file_are_one_line(tmp_path):
    model = tmp_path / "bad.py"
    model.write_text("import graphgrad as gg\n"
                     "def loss():\n"
                     "    g = gg.Graph(); x = g.input('x', (2, 3)); w = g.param('w', (4, 1))\n"
                     "    return (x @ w).sum()\n")
    r = run("render", f"{model}:loss", "-o", str(tmp_path / "b.dot"))
    assert r.returncode == 1 and "matmul" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
