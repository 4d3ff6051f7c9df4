"""The tutorial's figures, drawn headless.

The tutorial plots with ``plt.figure`` / ``plt.show``, which needs a display or blocks on a
window. These functions never touch ``matplotlib.pyplot`` (so no GUI backend is ever selected,
whatever ``MPLBACKEND`` or ``DISPLAY`` say): they build a ``matplotlib.figure.Figure``, attach
the Agg canvas to it explicitly, optionally save it as PNG, and return the figure, so a test can
read what was drawn (``fig.axes[0].lines``).

``forecast_figure`` is the tutorial's ``plot_result``: actual and predicted values over the
windows, training windows first, then test windows, and a red vertical line at
``x = number of training windows`` (187 in the tutorial run) separating them.
``loss_figure`` is the training loss per epoch.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

__all__ = ["forecast_figure", "loss_figure", "save_png"]

SPLIT_COLOR = "red"


def _new_figure(figsize: tuple[float, float], dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)  # Agg, explicitly: the figure never asks pyplot for a backend
    return fig


def _column(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {arr.shape}")
    return arr


def save_png(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` as PNG through its Agg canvas (the caller chooses the path; see the CLI for atomic writes)."""
    fig.savefig(path, format="png")


def forecast_figure(y_train: Any, y_test: Any, pred_train: Any, pred_test: Any, *,
                    ylabel: str = "Sunspots (scaled)",
                    xlabel: str = "Observation number after given time steps",
                    title: str = "Actual and predicted values. The red line separates the training and test examples",
                    path: str | os.PathLike | None = None, figsize: tuple[float, float] = (15, 6), dpi: int = 80):
    """The tutorial's ``plot_result(trainY, testY, train_predict, test_predict)``; returns the Figure.

    Arrays are ``(N,)`` or ``(N, 1)``; a prediction array must match its targets' length. The
    split line is the only red line, at ``x = len(y_train)``.
    """
    yt, ys = _column(y_train, "y_train"), _column(y_test, "y_test")
    pt, ps = _column(pred_train, "pred_train"), _column(pred_test, "pred_test")
    if pt.shape != yt.shape or ps.shape != ys.shape:
        raise ValueError(f"predictions {pt.shape}/{ps.shape} do not match targets {yt.shape}/{ys.shape}")
    actual = np.concatenate([yt, ys])
    predicted = np.concatenate([pt, ps])
    x = np.arange(actual.size)
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, actual, label="Actual")
    ax.plot(x, predicted, label="Predictions")
    ax.axvline(x=yt.size, color=SPLIT_COLOR, label=f"train/test split ({yt.size} training windows)")
    ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig


def loss_figure(loss: Sequence[float], *, title: str = "Training loss (MSE) per epoch",
                path: str | os.PathLike | None = None, figsize: tuple[float, float] = (8, 5), dpi: int = 80):
    """The loss per epoch (epochs counted from 1), on a log scale when every value is positive."""
    values = np.asarray(loss, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"loss must be a non-empty sequence of numbers, got shape {values.shape}")
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.arange(1, values.size + 1), values, marker="o", label="training loss")
    if np.all(np.isfinite(values)) and np.all(values > 0):
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Mean squared error (scaled units)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig
