"""parity: move Keras SimpleRNN weights into torchrnn and prove the outputs unchanged.

Nothing here imports TensorFlow or Keras at import time: saved files are read with h5py and
zipfile alone, and Keras is imported only where a live Keras model is involved.
"""
from .reference import Forward, numpy_forward

__all__ = ["Forward", "numpy_forward"]
