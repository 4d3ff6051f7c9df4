"""The tutorial's hand computation in NumPy, done right: the referee in every comparison.

For every RNN layer and every step ``t`` (row ``x[n, t, :]`` of a ``(N, L, F)`` input, never a
flat index), in float64::

    h_t = act(x_t @ Wx + h_{t-1} @ Wh + b)        h_0 = 0

The recurrent term is there at every step; at ``t = 1`` it vanishes only because ``h_0 = 0``.
Then ``o = act2(h_L @ Wy + by)``. This module shares no code with torchrnn's forward pass on
purpose: its activations are written out again from Keras's definitions, so a mistake in one
cannot hide in both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


# scipy.special is imported on first use, not at import time: it costs ~0.2 s (and drags in
# numpy.f2py), and only sigmoid, swish/silu and gelu need it. These call the very same ufuncs
# as a module-level import would, so the results are bit-identical.
def _expit(x):
    from scipy.special import expit

    return expit(x)


def _erf(x):
    from scipy.special import erf

    return erf(x)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)  # Keras 3: relu6(x + 3) / 6


NUMPY_ACTIVATIONS = {
    "linear": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": _expit,
    "hard_sigmoid": _hard_sigmoid,
    "softplus": lambda x: np.logaddexp(x, 0.0),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "celu": lambda x: np.maximum(x, 0.0) + np.minimum(0.0, np.expm1(np.minimum(x, 0.0))),
    "exponential": np.exp,
    "swish": lambda x: x * _expit(x),
    "silu": lambda x: x * _expit(x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "mish": lambda x: x * np.tanh(np.logaddexp(x, 0.0)),
    "log_sigmoid": lambda x: -np.logaddexp(-x, 0.0),
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "hard_swish": lambda x: x * _hard_sigmoid(x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "soft_shrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0.0),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0.0, 1.0),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4.0)) / 2,
    "softmax": _softmax,
    "log_softmax": lambda x: x - x.max(axis=-1, keepdims=True)
    - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)),
}


def _act(name: Any):
    key = "linear" if name is None else str(name).lower()
    if key not in NUMPY_ACTIVATIONS:
        raise ValueError(f"numpy_forward: unknown activation {name!r}; valid: {', '.join(sorted(NUMPY_ACTIVATIONS))}")
    return NUMPY_ACTIVATIONS[key]


@dataclass
class Forward:
    """What :func:`numpy_forward` computed: the output and every layer's state sequence (N, L, H)."""

    output: np.ndarray
    states: list[np.ndarray]


def _per_layer(value, n, name):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"numpy_forward: {name} has {len(value)} entries for {n} layers")
        return list(value)
    return [value] * n


def numpy_forward(weights: Sequence[np.ndarray], x: Any, activation: Sequence[Any] = ("tanh", "tanh"), *,
                  layers: int = 1, use_bias: bool | Sequence[bool] = True, dense: bool = True,
                  dense_use_bias: bool = True, return_sequences: bool = False,
                  go_backwards: bool | Sequence[bool] = False, config: Any = None,
                  return_states: bool = False) -> np.ndarray | Forward:
    """Run SimpleRNN layer(s) + Dense step by step in float64 from Keras-order weights.

    ``weights``: per RNN layer ``[kernel (F, H), recurrent_kernel (H, H), bias (H,)?]`` then
    ``[dense kernel (H, D), dense bias (D,)?]``, as ``model.get_weights()`` returns them.
    ``x`` must be ``(N, L, F)``: a flat or 2-D input is refused when ``F > 1`` (it would
    broadcast against the kernel and give ``F`` numbers instead of one). ``config`` (a
    :class:`torchrnn.RNNConfig`) may stand in for the keyword arguments.
    """
    if config is not None:
        layers = len(config.hidden_units)
        activation = config.activation
        use_bias, go_backwards = config.use_bias, config.go_backwards
        dense, dense_use_bias = config.dense_units is not None, config.dense_use_bias
        return_sequences = config.return_sequences
    rnn_act = _per_layer(activation[0], layers, "activation[0]")
    biases = _per_layer(use_bias, layers, "use_bias")
    backwards = _per_layer(go_backwards, layers, "go_backwards")
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    h_in = np.asarray(x, dtype=np.float64)
    first_kernel = ws[0] if ws else None
    if first_kernel is None or first_kernel.ndim != 2:
        raise ValueError("numpy_forward: the first weight must be a 2-D kernel (F, H)")
    feats = first_kernel.shape[0]
    if h_in.ndim == 2 and feats == 1:
        h_in = h_in[:, :, None]
    if h_in.ndim != 3 or h_in.shape[2] != feats:
        raise ValueError(f"numpy_forward: x must have shape (N, L, {feats}) for a kernel of shape "
                         f"{first_kernel.shape}, got {h_in.shape}")
    pos = 0
    states = []
    for i in range(layers):
        need = 3 if biases[i] else 2
        if pos + need > len(ws):
            raise ValueError(f"numpy_forward: layer {i} needs {need} weights, only {len(ws) - pos} left")
        wx, wh = ws[pos], ws[pos + 1]
        b = ws[pos + 2] if biases[i] else np.zeros(wh.shape[0])
        pos += need
        if wx.shape[0] != h_in.shape[2] or wh.shape != (wx.shape[1], wx.shape[1]) or b.shape != (wx.shape[1],):
            raise ValueError(f"numpy_forward: layer {i} shapes do not chain: input {h_in.shape}, kernel "
                             f"{wx.shape}, recurrent {wh.shape}, bias {b.shape}")
        act = _act(rnn_act[i])
        seq = h_in[:, ::-1, :] if backwards[i] else h_in
        n, steps = seq.shape[0], seq.shape[1]
        h = np.zeros((n, wx.shape[1]))
        out = np.empty((n, steps, wx.shape[1]))
        for t in range(steps):
            h = act(seq[:, t, :] @ wx + h @ wh + b)
            out[:, t, :] = h
        states.append(out)
        h_in = out
    y = h_in if return_sequences else h_in[:, -1, :]
    if dense:
        need = 2 if dense_use_bias else 1
        if len(ws) - pos != need:
            raise ValueError(f"numpy_forward: expected {need} dense weight(s) after the RNN layers, "
                             f"got {len(ws) - pos}")
        wy = ws[pos]
        by = ws[pos + 1] if dense_use_bias else 0.0
        y = _act(activation[1])(y @ wy + by)
    elif pos != len(ws):
        raise ValueError(f"numpy_forward: {len(ws) - pos} weight(s) left over after the RNN layers")
    return Forward(y, states) if return_states else y
