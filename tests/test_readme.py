"""The README's Python examples run as written and their numbers agree as the README claims."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from parity import FLOAT32_ATOL, assert_close

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def block_with(marker: str) -> str:
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"expected one README python block containing {marker!r}, found {len(found)}"
    return found[0]


def test_tutorial_hand_computation_on_the_torch_model(capsys):
    ns: dict = {}
    exec(compile(block_with("h1 = np.dot(x[0], wx)"), "README.md", "exec"), ns)
    assert ns["model"].count_params() == 11
    assert_close(ns["o3"], ns["y_pred_model"], atol=FLOAT32_ATOL, name="README hand computation vs model")
    assert "Prediction from our computation" in capsys.readouterr().out


def test_demo_across_frameworks(capsys):
    pytest.importorskip("keras", reason="the test extra installs Keras")
    ns: dict = {}
    exec(compile(block_with("from_keras(demo_model)"), "README.md", "exec"), ns)
    x, km, tm = ns["x"], ns["demo_model"], ns["torch_model"]
    keras_out = km.predict(x, verbose=0)
    assert_close(tm.predict(x), keras_out, atol=FLOAT32_ATOL, name="README torch vs Keras")
    assert_close(ns["numpy_forward"](tm.get_weights(), x, ("linear", "linear")), keras_out, atol=FLOAT32_ATOL,
                 name="README by hand vs Keras")
    assert "PARITY: all comparisons within tolerance" in capsys.readouterr().out


# Keras's own saving code, on NumPy 2 (not ours to fix)
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_saved_file_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    """The demo saved by Keras, then read back without it: both README blocks, in order."""
    pytest.importorskip("keras", reason="the test extra installs Keras")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block_with("from_keras(demo_model)"), "README.md", "exec"), ns)
    exec(compile(block_with('demo_model.save("model.keras")'), "README.md", "exec"), ns)
    exec(compile(block_with('load_keras_weights(model, "model.weights.h5")'), "README.md", "exec"), ns)
    out = capsys.readouterr().out
    assert out.count("PARITY: all comparisons within tolerance") == 4  # the demo's, and three checks
    assert "implementations: torch, numpy, keras" in out
    assert_close(ns["model"].predict(ns["x"]), ns["demo_model"].predict(ns["x"], verbose=0), atol=FLOAT32_ATOL,
                 name="README weights-only model vs Keras")


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install ".[test]" && pytest' in README.read_text() and 'pip install ".[test]" && pytest' in ci
    assert any([line.strip() == 'pip install ".[test]" && pytest' for line in ci.splitlines()])
