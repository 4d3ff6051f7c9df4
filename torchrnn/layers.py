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
        if self.activation in _ELEMENTWISE and torch.is_grad_enabled():
            return _Recurrence.apply(xp, self.weight_hh, self._act)
        return _recurrence_forward(xp, self.weight_hh, self._act)


# softmax and log_softmax mix the units of a step, so their Jacobian is not a diagonal.
_ELEMENTWISE = frozenset(_act.ACTIVATIONS) - {"softmax", "log_softmax"}


def _recurrence_forward(xp: torch.Tensor, weight_hh: torch.Tensor, act) -> torch.Tensor:
    """``h_t = act(xp_t + h_{t-1} W_hh^T)`` over the sequence; returns the states (N, L, H)."""
    w_hh_t = weight_hh.t()
    h = xp.new_zeros(xp.shape[0], xp.shape[2])
    states = []
    for t in range(xp.shape[1]):
        h = act(torch.addmm(xp[:, t], h, w_hh_t))
        states.append(h)
    return torch.stack(states, dim=1)


class _Recurrence(torch.autograd.Function):
    """The step loop as one autograd node, for element-wise activations.

    Autograd through a Python loop records several nodes per step and replays them one by one;
    here the backward pass is one loop of three small ops per step. Everything that does not
    depend on the step order is done once for the whole sequence: the pre-activations
    ``z = xp + h_prev W_hh^T`` are rebuilt with one matmul, ``act'(z)`` comes from autograd in one
    call (exact, because the activation acts element by element), and ``dL/dW_hh`` is one matmul.
    Checked against plain autograd in the tests (float64 gradcheck and random configurations).
    """

    @staticmethod
    def forward(ctx, xp, weight_hh, act):
        with torch.no_grad():
            states = _recurrence_forward(xp, weight_hh, act)
        ctx.act = act
        ctx.save_for_backward(xp, weight_hh, states)
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states):
        xp, weight_hh, states = ctx.saved_tensors
        # h_{t-1} for every step: zeros, then the states shifted by one.
        prev = torch.cat([states.new_zeros(states.shape[0], 1, states.shape[2]), states[:, :-1]], dim=1)
        with torch.enable_grad():
            z = torch.addmm(xp.reshape(-1, xp.shape[2]), prev.reshape(-1, prev.shape[2]), weight_hh.t())
            z = z.detach().requires_grad_(True)
            (dact,) = torch.autograd.grad(ctx.act(z).sum(), z)
        dact = dact.view_as(xp)
        grads = [None] * xp.shape[1]
        g = None
        for t in range(xp.shape[1] - 1, -1, -1):
            g = grad_states[:, t] if g is None else torch.addmm(grad_states[:, t], g, weight_hh)
            g = g * dact[:, t]
            grads[t] = g
        grad_pre = torch.stack(grads, dim=1)
        grad_w = grad_pre.reshape(-1, grad_pre.shape[2]).t() @ prev.reshape(-1, prev.shape[2])
        return grad_pre, grad_w, None
