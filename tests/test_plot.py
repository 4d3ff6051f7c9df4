"""torchrnn.plot: headless figures (handed case K10)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from parity.compare import FLOAT64_ATOL, assert_close
from torchrnn import experiment as E
from torchrnn.plot import forecast_figure, loss_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def _red_lines(ax):
    return [ln for ln in ax.lines if to_rgba(ln.get_color()) == to_rgba("red")]


@pytest.fixture(scope="module")
def tutorial_windows():
    return E.prepare(None, time_steps=12, split=0.8, scale_on="all")


def test_k10_split_line_at_the_number_of_training_windows(tutorial_windows):
    prep = tutorial_windows
    assert (prep.n_train, prep.n_test) == (187, 46)
    fig = forecast_figure(prep.y_train, prep.y_test, prep.y_train * 0.9, prep.y_test[:, 0] * 0.9)
    ax = fig.axes[0]
    red = _red_lines(ax)
    assert len(red) == 1, "exactly one red line: the train/test boundary"
    assert list(red[0].get_xdata()) == [187, 187]
    actual, predicted = [ln for ln in ax.lines if ln not in red]
    assert_close(actual.get_ydata(), np.concatenate([prep.y_train[:, 0], prep.y_test[:, 0]]),
                 atol=FLOAT64_ATOL, name="actual curve")
    assert_close(predicted.get_ydata(), 0.9 * np.asarray(actual.get_ydata()), atol=FLOAT64_ATOL,
                 name="predicted curve")
    assert list(actual.get_xdata()) == list(range(233))
    assert ax.get_xlabel() == "Observation number after given time steps"
    assert ax.get_ylabel() == "Sunspots (scaled)"
    assert "red line" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["Actual", "Predictions"]


def test_figures_are_written_without_pyplot_and_png(tmp_path):
    fig = forecast_figure([1, 2, 3], [4, 5], [1, 2, 2], [4, 4], path=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    assert list(_red_lines(fig.axes[0])[0].get_xdata()) == [3, 3]
    lfig = loss_figure([0.3, 0.1, 0.05], path=tmp_path / "l.png")
    assert (tmp_path / "l.png").read_bytes()[:8] == PNG_MAGIC
    (line,) = lfig.axes[0].lines
    assert list(line.get_xdata()) == [1, 2, 3]
    assert lfig.axes[0].get_yscale() == "log"
    assert loss_figure([0.0, 0.1]).axes[0].get_yscale() == "linear"


def test_k10_headless_in_a_clean_process(tmp_path):
    """No MPLBACKEND, no DISPLAY: the PNGs are written, nothing blocks, pyplot is never imported."""
    script = textwrap.dedent(f"""
        import sys
        from torchrnn.plot import forecast_figure, loss_figure
        fig = forecast_figure([0.1] * 187, [0.2] * 46, [0.15] * 187, [0.25] * 46, path=r"{tmp_path / 'plot.png'}")
        loss_figure([0.02, 0.01], path=r"{tmp_path / 'loss.png'}")
        print("pyplot imported:", "matplotlib.pyplot" in sys.modules)
        print("red x:", [list(l.get_xdata()) for l in fig.axes[0].lines if l.get_color() in ("red", "r")])
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")  # a fresh matplotlib config: no rc file sets a backend
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "pyplot imported: False" in proc.stdout
    assert "red x: [[187, 187]]" in proc.stdout
    for name in ("plot.png", "loss.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


@pytest.mark.parametrize("args,match", [
    (([1, 2], [3], [1], [3]), "do not match"),
    (([[1, 2]], [3], [[1, 2]], [3]), r"shape \(N,\) or \(N, 1\)"),
])
def test_forecast_figure_refuses_mismatched_arrays(args, match):
    with pytest.raises(ValueError, match=match):
        forecast_figure(*args)


def test_loss_figure_refuses_empty():
    with pytest.raises(ValueError, match="non-empty"):
        loss_figure([])
