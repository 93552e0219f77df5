"""The examples' shared command line: files go into --out (default ./out of the current directory),
and no two examples write a file of the same name."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_default_output_folder_is_out_of_the_current_directory(tmp_path):
    if not shutil.which("dot"):
        pytest.skip("needs Graphviz's dot")
    r = subprocess.run([sys.executable, str(EXAMPLES / "bptt_diagrams.py"), "--quick"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "rnn_bptt.svg").exists()


def test_out_argument_chooses_the_folder(tmp_path):
    if not shutil.which("dot"):
        pytest.skip("needs Graphviz's dot")
    r = subprocess.run([sys.executable, str(EXAMPLES / "bptt_diagrams.py"), "--quick", "--out", "figs"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "figs").glob("*.svg")) == [
        "lstm_bptt.svg", "lstm_bptt_collapsed.svg", "lstm_forward.svg",
        "rnn_bptt.svg", "rnn_bptt_collapsed.svg", "rnn_forward.svg"]
    assert not (tmp_path / "out").exists()


def written_names(source: str) -> set:
    """The file names an example writes below its output folder: ``out / "name.ext"`` literals."""
    return set(re.findall(r'/ "([\w.]+\.(?:png|svg|py|dot))"', source))


def test_no_two_examples_write_the_same_file_name():
    owners = {}
    for path in sorted(EXAMPLES.glob("[!_]*.py")):
        for name in written_names(path.read_text()):
            owners.setdefault(name, []).append(path.name)
    assert owners, "no written file names found: the pattern no longer matches the examples"
    assert {n: o for n, o in owners.items() if len(o) > 1} == {}
