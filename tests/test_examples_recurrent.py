"""Quick runs of the recurrent examples: they run end to end and write what they promise."""
import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vanishing_gradient_quick(tmp_path):
    pytest.importorskip("matplotlib")
    results = load("vanishing_gradient_rnn").main(quick=True, out=tmp_path)
    assert set(results) == {"RNN", "LSTM"} and (tmp_path / "vanishing_gradient_rnn.png").exists()


def test_lstm_digits_quick():
    pytest.importorskip("sklearn")
    assert load("lstm_digits").main(quick=True) > 0.3


def test_bptt_diagrams_quick(tmp_path):
    written = load("bptt_diagrams").main(out=tmp_path, quick=True)
    assert all(p.exists() for p in written) and len(written) == 6
