"""The docs build with MkDocs --strict (warnings are errors), figures drawn by graphgrad itself."""
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
ROOT = pathlib.Path(__file__).parent.parent


def test_docs_build_without_warnings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env={"NO_MKDOCS_2_WARNING": "1",
                                                                                   **__import__("os").environ})
    assert r.returncode == 0, r.stderr
    backprop = (tmp_path / "site" / "topics" / "backprop.html").read_text()
    assert "σ′ ≤ ¼" in backprop  # the formulas came from gg.explain at build time
    assert (tmp_path / "site" / "topics" / "lstm.html").exists()
