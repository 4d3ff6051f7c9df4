"""A SimpleRNN layer with Keras semantics.

Update rule, in both conventions (``N`` batch, ``L`` time steps, ``F`` features, ``H`` units)::

    Keras:  h_t = act(x_t @ K + b + h_{t-1} @ R)           K (F, H), R (H, H), b (H,)
    torch:  h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)

with ``W_ih = K^T`` (H, F) and ``W_hh = R^T`` (H, H): torch stores a weight as (out, in) and
multiplies by its transpose, Keras stores (in, out). Keras has ONE bias vector; ``nn.RNN`` has two
that always receive the same gradient, so a model built on it has ``H`` extra trainable
parameters and moves its bias at twice Keras's rate. This layer keeps one trainable ``bias`` and
hands the fused kernel a non-trainable zero buffer as its second bias.

``h_0 = 0``. Input ``(N, L, F)``; output ``(N, H)`` (last state) or ``(N, L, H)`` with
``return_sequences``. With ``go_backwards`` the sequence is read from the last step to the first
and, as in Keras, a returned sequence stays in that processing order (it is not flipped back).

Two implementations give the same numbers: torch's fused RNN kernel (``torch.rnn_tanh`` /
``torch.rnn_relu``, what ``nn.RNN`` calls) for ``tanh`` and ``relu``, and a step loop with the
input projection hoisted out of it for every other activation.
"""
from __future__ import annotations

import torch
from torch import nn

from . import activations as _act
from .init import glorot_uniform, orthogonal

_FUSED = {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}


class SimpleRNN(nn.Module):
    """Keras ``SimpleRNN(units, activation, use_bias, return_sequences, go_backwards)``.

    Parameters are stored in torch layout: ``weight_ih`` (H, F), ``weight_hh`` (H, H),
    ``bias`` (H,) or None. ``use_fused`` may be set to False to force the step loop.
    """

    def __init__(self, input_size: int, units: int, activation: str | None = "tanh", *,
                 use_bias: bool = True, return_sequences: bool = False,
                 go_backwards: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = int(input_size)
        self.units = int(units)
        self.activation = _act.canonical_name(activation)
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.go_backwards = bool(go_backwards)
        self._act = _act.ACTIVATIONS[self.activation]
        self.use_fused = self.activation in _FUSED
        # Keras initialisers are defined on Keras shapes; transpose into torch layout.
        self.weight_ih = nn.Parameter(glorot_uniform((self.input_size, self.units), generator).T.contiguous())
        self.weight_hh = nn.Parameter(orthogonal((self.units, self.units), generator).T.contiguous())
        self.bias = nn.Parameter(torch.zeros(self.units)) if self.use_bias else None
        self.register_buffer("_zero_bias", torch.zeros(self.units), persistent=False)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.units}, activation={self.activation!r}, use_bias={self.use_bias}, "
                f"return_sequences={self.return_sequences}, go_backwards={self.go_backwards}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.go_backwards:
            x = x.flip(1)
        seq = self._fused(x) if self.use_fused and self.activation in _FUSED else self._loop(x)
        return seq if self.return_sequences else seq[:, -1]

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(1, x.shape[0], self.units)
        if self.use_bias:
            params = [self.weight_ih, self.weight_hh, self.bias, self._zero_bias]
        else:
            params = [self.weight_ih, self.weight_hh]
        out, _ = _FUSED[self.activation](x, h0, params, self.use_bias, 1, 0.0, self.training, False, True)
        return out

    def _loop(self, x: torch.Tensor) -> torch.Tensor:
        # The input projection does not depend on h, so it is one matmul for the whole sequence.
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)
        w_hh_t = self.weight_hh.t()
        h = x.new_zeros(x.shape[0], self.units)
        out = []
        for t in range(x.shape[1]):
            h = self._act(torch.addmm(xp[:, t], h, w_hh_t))
            out.append(h)
        return torch.stack(out, dim=1)
