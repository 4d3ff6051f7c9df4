"""torchrnn: the Keras SimpleRNN tutorial in PyTorch, with Keras semantics.

    from torchrnn import create_rnn
    model = create_rnn(2, 1, (3, 1), ("linear", "linear"))
    wx, wh, bh, wy, by = model.get_weights()      # Keras order and shapes
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> the submodule that defines it, imported on first access (PEP 562). Importing
# the package stays free of torch (about 1.5 s), so `torchrnn --help`, a usage error and
# `import torchrnn.data` answer at once; `from torchrnn import create_rnn` works as before.
_EXPORTS = {
    "ACTIVATIONS": "activations",
    "SimpleRNN": "layers",
    "RNNConfig": "model", "RNNModel": "model", "create_rnn": "model", "create_rnn_from_config": "model",
    "History": "train", "KerasAdam": "train", "evaluate": "train", "fit": "train", "predict": "train",
}
# The submodules an eager `import torchrnn` used to make reachable as attributes.
_SUBMODULES = ("activations", "init", "layers", "metrics", "model", "train")

__all__ = ["ACTIVATIONS", "History", "KerasAdam", "RNNConfig", "RNNModel", "SimpleRNN", "create_rnn",
           "create_rnn_from_config", "evaluate", "fit", "predict"]

if TYPE_CHECKING:
    from .activations import ACTIVATIONS
    from .layers import SimpleRNN
    from .model import RNNConfig, RNNModel, create_rnn, create_rnn_from_config
    from .train import History, KerasAdam, evaluate, fit, predict


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
