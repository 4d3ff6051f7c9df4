"""parity: move Keras SimpleRNN weights into torchrnn and prove the outputs unchanged.

Nothing here imports TensorFlow or Keras at import time: saved files are read with h5py and
zipfile alone, and Keras is imported only where a live Keras model is involved.
"""
from .compare import FLOAT32_ATOL, FLOAT64_ATOL, GOLDEN_ATOL, assert_close, compare
from .check import ParityError, ParityReport, assert_parity, check
from .reference import Forward, numpy_forward

__all__ = ["FLOAT32_ATOL", "FLOAT64_ATOL", "GOLDEN_ATOL", "Forward", "ParityError", "ParityReport", "assert_parity", "check", "assert_close", "compare", "numpy_forward"]
