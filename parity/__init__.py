"""parity: move Keras SimpleRNN weights into torchrnn and prove the outputs unchanged.

Nothing here imports TensorFlow or Keras at import time: saved files are read with h5py and
zipfile alone, and Keras is imported only where a live Keras model is involved.
"""
from .compare import FLOAT32_ATOL, FLOAT64_ATOL, GOLDEN_ATOL, assert_close, compare
from .check import ParityError, ParityReport, assert_parity, check
from .convert import from_keras, load_keras, load_keras_weights, spec_to_config
from .keras_files import KerasFileError, KerasModelSpec, LayerSpec, read_keras_file
from .reference import Forward, numpy_forward

__all__ = [
    "FLOAT32_ATOL", "FLOAT64_ATOL", "GOLDEN_ATOL", "Forward", "KerasFileError", "KerasModelSpec", "LayerSpec",
    "ParityError", "ParityReport", "assert_close", "assert_parity", "check", "compare", "from_keras",
    "load_keras", "load_keras_weights", "numpy_forward", "read_keras_file", "spec_to_config",
]
