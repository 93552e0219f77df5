"""examples/tour.ipynb runs top to bottom, so it never rots."""
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TOUR = pathlib.Path(__file__).parent.parent / "examples" / "tour.ipynb"


def test_tour_executes_and_shows_drawings():
    nb = nbformat.read(TOUR, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(TOUR.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "σ(x)(1 − σ(x))" in text


def test_tour_is_committed_with_its_outputs():
    nb = nbformat.read(TOUR, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), "run the notebook and commit it with its outputs"
    assert sum(len(cell.outputs) for cell in code) >= len(code) - 1  # only the imports print nothing
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
