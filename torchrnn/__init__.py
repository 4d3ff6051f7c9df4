"""torchrnn: the Keras SimpleRNN tutorial in PyTorch, with Keras semantics.

    from torchrnn import create_rnn
    model = create_rnn(2, 1, (3, 1), ("linear", "linear"))
    wx, wh, bh, wy, by = model.get_weights()      # Keras order and shapes
"""
from .activations import ACTIVATIONS
from .layers import SimpleRNN
from .model import RNNConfig, RNNModel, create_rnn, create_rnn_from_config
from .train import History, KerasAdam, evaluate, fit, predict

__all__ = ["ACTIVATIONS", "History", "KerasAdam", "RNNConfig", "RNNModel", "SimpleRNN", "create_rnn",
           "create_rnn_from_config", "evaluate", "fit", "predict"]
__version__ = "0.1.0"
