"""Keras 3 activations, by the names Keras accepts in ``SimpleRNN(activation=...)`` and ``Dense``.

Each entry follows the definition in ``keras.activations`` (Keras 3), not torch's defaults where
the two differ: ``leaky_relu`` has slope 0.2 (torch: 0.01), ``hard_sigmoid`` is Keras 3's
``relu6(x + 3) / 6`` (Keras 2 used ``0.2 x + 0.5``), ``gelu`` is the exact erf form,
``softplus`` is computed as ``logaddexp(x, 0)`` (torch's ``softplus`` switches to the identity
above 20, an error of ~2e-9 that float64 comparisons would see).

Names Keras accepts that change the width of the output or need arguments (``glu``,
``threshold``) or have no closed form here (``sparsemax``) are refused with a clear error.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


def _sparse_plus(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= -1, torch.zeros_like(x), torch.where(x >= 1, x, (x + 1) ** 2 / 4))


def _squareplus(x: torch.Tensor) -> torch.Tensor:
    return (x + torch.sqrt(x * x + 4.0)) / 2


def _soft_shrink(x: torch.Tensor) -> torch.Tensor:
    return F.softshrink(x, 0.5)


def _hard_shrink(x: torch.Tensor) -> torch.Tensor:
    return F.hardshrink(x, 0.5)


ACTIVATIONS: dict[str, Activation] = {
    "linear": _linear,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "softplus": _softplus,
    "softsign": F.softsign,
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "exponential": torch.exp,
    "swish": F.silu,
    "silu": F.silu,
    "gelu": F.gelu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "mish": F.mish,
    "log_sigmoid": F.logsigmoid,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "hard_tanh": F.hardtanh,
    "tanh_shrink": F.tanhshrink,
    "soft_shrink": _soft_shrink,
    "hard_shrink": _hard_shrink,
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": lambda x: torch.clamp((x + 1) / 2, 0.0, 1.0),
    "squareplus": _squareplus,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
}

_REFUSED = {
    "glu": "it halves the last dimension, so the layer's width would not be its units",
    "threshold": "it needs threshold and default_value arguments that a name cannot carry",
    "sparsemax": "torchrnn does not implement it yet",
}


def canonical_name(name: str | None) -> str:
    """Return the table key for an activation name (``None`` is Keras's ``linear``).

    Raises ``ValueError`` naming the value and listing the valid names.
    """
    if name is None:
        return "linear"
    if not isinstance(name, str):
        raise ValueError(f"activation must be a name (str) or None, got {name!r} of type {type(name).__name__}")
    key = name.strip().lower()
    if key in ACTIVATIONS:
        return key
    if key in _REFUSED:
        raise ValueError(f"activation {name!r} is not supported: {_REFUSED[key]}")
    raise ValueError(
        f"unknown activation {name!r}; valid names: None, " + ", ".join(sorted(ACTIVATIONS))
    )


def get(name: str | None) -> Activation:
    """The callable for a Keras activation name."""
    return ACTIVATIONS[canonical_name(name)]
