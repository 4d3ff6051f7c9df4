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

import contextlib

import numpy as np
import torch
from torch import nn

from . import activations as _act
from .init import glorot_uniform, orthogonal

_FUSED = {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}


class SimpleRNN(nn.Module):
    """Keras ``SimpleRNN(units, activation, use_bias, return_sequences, go_backwards)``.

    Parameters are stored in torch layout: ``weight_ih`` (H, F), ``weight_hh`` (H, H),
    ``bias`` (H,) or None.

    Which implementation runs (``use_fused``): ``None`` (the default) picks by measurement. On
    the CPU, the step loop: with gradients, its own autograd node does the forward and backward of
    a tanh layer in 0.6-0.8x the time of the fused kernel under autograd (batch 1 x 12 steps x 3
    units up to 64 x 120 x 64); without gradients, its in-place loop takes 0.3-0.9x the fused
    kernel's time (100,000 x 12 x 1 -> 3 and 10,000 x 120 x 8 -> 64, each at its best chunk size,
    1 and 2 threads). On an accelerator, torch's fused kernel (cuDNN) for tanh and relu.
    ``True`` forces the fused kernel where it applies, ``False`` the step loop: both give the
    same numbers (tests).
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
        self.use_fused: bool | None = None
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
        if self.uses_fused(x.device):
            seq = self._fused(x)
            return seq if self.return_sequences else seq[:, -1]
        return self._loop(x, last_only=not self.return_sequences)

    def uses_fused(self, device: torch.device) -> bool:
        """Whether :meth:`forward` runs torch's fused kernel for input on ``device`` (see ``use_fused``)."""
        if self.use_fused is None:
            return self.activation in _FUSED and torch.device(device).type != "cpu"
        return self.use_fused and self.activation in _FUSED

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(1, x.shape[0], self.units)
        if self.use_bias:
            params = [self.weight_ih, self.weight_hh, self.bias, self._zero_bias]
        else:
            params = [self.weight_ih, self.weight_hh]
        out, _ = _FUSED[self.activation](x, h0, params, self.use_bias, 1, 0.0, self.training, False, True)
        return out

    def _loop(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """States ``(N, L, H)``, or only the last one ``(N, H)`` with ``last_only`` (whose backward
        then skips adding a zero upstream gradient at every step)."""
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight_hh.requires_grad)
        if not needs_grad:
            states = _inference_states(x, self.weight_ih, self.bias, self.weight_hh, self.activation, last_only)
            return states if last_only else states.transpose(0, 1)
        if self.activation in _ELEMENTWISE:
            return _SequenceFn.apply(x, self.weight_ih, self.bias, self.weight_hh, self.activation, last_only)
        # softmax / log_softmax: plain autograd through the loop.
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)
        seq = _recurrence_forward(xp, self.weight_hh, self._act)
        return seq[:, -1] if last_only else seq


# softmax and log_softmax mix the units of a step, so their Jacobian is not a diagonal.
_ELEMENTWISE = frozenset(_act.ACTIVATIONS) - {"softmax", "log_softmax"}

# In-place forms, and act'(z) written in terms of the output h = act(z), for the activations
# where that is exact; the others get act'(z) from autograd on the rebuilt pre-activations.
_INPLACE = {"tanh": torch.Tensor.tanh_, "sigmoid": torch.Tensor.sigmoid_, "relu": torch.Tensor.relu_,
            "linear": None}

# On the CPU (float32 / float64) parts of the step loops run in NumPy, on NumPy views of the
# same buffers (no copy), chosen by measurement:
#
# * Rows of at least _SMALL_ROW values (N x H): matrix products stay with torch (MKL, and its
#   threads), tanh goes to NumPy. torch 2.13's CPU tanh costs 2.6 ns per float32 on an AMD EPYC
#   (Zen 4) at every ATEN_CPU_CAPABILITY, NumPy's SIMD tanh 0.4 ns (torch's: 0.42 ns on the
#   Intel Xeon of earlier runs): 200 ms of a 360 ms predict of 10,000 x 120 x 64.
# * Smaller rows, tanh or linear (the tutorial's 1 x 3 at batch size 1): the whole loop,
#   forward and backward, runs in NumPy. Every call there is per-call overhead, and NumPy's
#   calls cost about half of torch's (a step's product, add and tanh: 1.4 us against 2.4 us;
#   np.dot, not np.matmul, which costs twice as much per call on such small arrays).
#
# Results differ from torch's only by float rounding: tanh within 1.5 ulp of exact in both
# (torch 0.5, NumPy 1.4; a test holds each path to 2), and products of 3 terms summed in
# another order; so a sample's result may move by an ulp with the batch it is computed in, as
# it may with the shape of any matrix product. The fused kernel is torch's alone.
_NUMPY_DTYPES = (torch.float32, torch.float64)
_SMALL_ROW = 1024
_NUMPY_LOOP_ACTIVATIONS = ("tanh", "linear")


def _numpy_rows(buf: torch.Tensor, activation: str) -> np.ndarray | None:
    """``buf`` (steps, N, H) as a NumPy array sharing its memory when its tanh goes through NumPy
    with torch's products (large rows), else None."""
    if (activation != "tanh" or buf.device.type != "cpu" or buf.dtype not in _NUMPY_DTYPES
            or buf.shape[1] * buf.shape[2] < _SMALL_ROW):
        return None
    return buf.numpy()


def _numpy_loop(buf: torch.Tensor, activation: str) -> bool:
    """Whether the training node's step loops over ``buf`` (steps, N, H) run wholly in NumPy."""
    return (activation in _NUMPY_LOOP_ACTIVATIONS and buf.device.type == "cpu" and buf.dtype in _NUMPY_DTYPES
            and buf.shape[1] * buf.shape[2] < _SMALL_ROW)


def _numpy_recurrence(s: np.ndarray, w_t: np.ndarray, activation: str) -> None:
    """In place on the pre-activations ``s`` (steps, N, H): ``s[t] = act(s[t] + s[t-1] @ w_t)``."""
    tmp = np.empty_like(s[0])
    rows = list(s)
    tanh = activation == "tanh"
    for t, row in enumerate(rows):
        if t:
            np.dot(rows[t - 1], w_t, out=tmp)
            row += tmp
        if tanh:
            np.tanh(row, out=row)


def _numpy_recurrence_backward(g: np.ndarray, states: np.ndarray, activation: str, last: np.ndarray | None,
                               upstream: np.ndarray | None, w: np.ndarray) -> None:
    """``dL/dz`` for every step into ``g`` (steps, N, H), from the layer's ``states`` (its
    outputs; tanh' = 1 - h^2, linear' = 1) and the upstream gradient: ``last`` (N, H) at the
    last step only, or ``upstream`` (steps, N, H) at every step. From the last step back,
    ``g[t] = (g[t+1] @ w + upstream[t]) * act'[t]``, ``w`` the recurrent kernel (H, H).
    (The training node's NumPy backward and fit's NumPy step both come here.)"""
    dact = None if activation == "linear" else np.subtract(1, states * states)
    g[-1] = last if upstream is None else upstream[-1]
    rows = list(g)
    d = None if dact is None else list(dact)
    up = None if upstream is None else list(upstream)
    if d is not None:
        rows[-1] *= d[-1]
    for t in range(len(rows) - 2, -1, -1):
        np.dot(rows[t + 1], w, out=rows[t])
        if up is not None:
            rows[t] += up[t]
        if d is not None:
            rows[t] *= d[t]


_DACT_FROM_OUTPUT = {
    "tanh": lambda h: 1 - h * h,
    "sigmoid": lambda h: h * (1 - h),
    "relu": lambda h: (h > 0).to(h.dtype),
    "linear": None,  # act' = 1: nothing to multiply
}


def _time_major_states(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None,
                       weight_hh: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All states ``(L, N, H)``, time-major, in one buffer, and the time-major input rows: the input projection for every step
    is one matmul, then each step adds ``h_{t-1} W_hh^T`` and applies the activation in place.
    No autograd graph is recorded for the in-place steps; callers either need no gradient or
    are :class:`_SequenceFn`, which brings its own backward."""
    n, steps, feats = x.shape
    xs = x.transpose(0, 1).reshape(steps * n, feats)  # time-major rows: step t is rows t*n..
    with torch.no_grad():
        states = xs @ weight_ih.t() if bias is None else torch.addmm(bias, xs, weight_ih.t())
        states = states.view(steps, n, -1)  # pre-activations, overwritten step by step
        if _numpy_loop(states, activation):
            _numpy_recurrence(states.numpy(), weight_hh.detach().numpy().T, activation)
            return states, xs
        w_hh_t = weight_hh.t()
        inplace = _INPLACE.get(activation, False)
        act = _act.ACTIVATIONS[activation]
        np_rows = _numpy_rows(states, activation)
        rows = states.unbind(0)  # one op for all per-step views, not one indexing op per step
        for t, row in enumerate(rows):
            if t:
                row.addmm_(rows[t - 1], w_hh_t)
            _activate(row, None if np_rows is None else np_rows[t], inplace, act)
    return states, xs


def _activate(row: torch.Tensor, np_row: np.ndarray | None, inplace, act) -> None:
    """The activation on one step's states, in place: NumPy's tanh on ``np_row`` (the same memory)
    when there is one, else the in-place torch form (``_INPLACE``; None is linear), else ``act``."""
    if np_row is not None:
        np.tanh(np_row, out=np_row)
    elif inplace is False:
        row.copy_(act(row))
    elif inplace is not None:
        inplace(row)


def _inference_states(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None,
                      weight_hh: torch.Tensor, activation: str, last_only: bool) -> torch.Tensor:
    """The forward of :func:`_time_major_states` without gradients, step by step: all states
    ``(L, N, H)`` time-major, or with ``last_only`` just the last one ``(N, H)``.

    Each step writes its own input projection into its state row, then adds ``h_{t-1} W_hh^T``
    and applies the activation, all in place. The row is in the cache when the recurrence reads
    it, where one projection for all steps first would write the whole ``L x N x H`` buffer out
    to memory; the input needs no time-major copy (step ``t`` is the strided view ``x[:, t]``);
    and with ``last_only`` only two rows exist, used in turn. Same products and sums as
    :func:`_time_major_states`, so the same numbers up to float rounding (tests).
    """
    n, steps, _ = x.shape
    with torch.no_grad():
        buf = x.new_empty(min(steps, 2) if last_only else steps, n, weight_hh.shape[0])
        rows = buf.unbind(0)
        w_ih_t, w_hh_t = weight_ih.t(), weight_hh.t()
        inplace = _INPLACE.get(activation, False)
        act = _act.ACTIVATIONS[activation]
        np_rows = _numpy_rows(buf, activation)
        prev = None
        for t in range(steps):
            i = t % len(rows)
            row = rows[i]
            if bias is None:
                torch.mm(x[:, t], w_ih_t, out=row)
            else:
                torch.addmm(bias, x[:, t], w_ih_t, out=row)
            if prev is not None:
                row.addmm_(prev, w_hh_t)
            _activate(row, None if np_rows is None else np_rows[i], inplace, act)
            prev = row
    return prev if last_only else buf


def _recurrence_forward(xp: torch.Tensor, weight_hh: torch.Tensor, act) -> torch.Tensor:
    """``h_t = act(xp_t + h_{t-1} W_hh^T)`` over the sequence; returns the states (N, L, H)."""
    w_hh_t = weight_hh.t()
    h = xp.new_zeros(xp.shape[0], xp.shape[2])
    states = []
    for t in range(xp.shape[1]):
        h = act(torch.addmm(xp[:, t], h, w_hh_t))
        states.append(h)
    return torch.stack(states, dim=1)


# Gradients that pass through act' < 1 at every step (sigmoid: <= 0.25) shrink geometrically and
# reach denormal floats within ~60 steps; x86 CPUs compute on denormals ~100x slower (measured
# here: the backward of a 120-step sigmoid layer 3.2x slower than with them flushed). TensorFlow
# flushes them to zero in its kernels; this layer does so only inside its own backward pass, for
# buffers large enough to matter, and puts the setting back. Values below 1.2e-38 (float32) or
# 2.2e-308 (float64) become 0, far below every tolerance the tests use.
_FLUSH_MIN_ELEMENTS = 4096


def _flushing_denormals() -> bool:
    return bool(torch.tensor(1e-40, dtype=torch.float32).mul(1.0).item() == 0.0)


@contextlib.contextmanager
def _denormals_flushed(elements: int, device: torch.device):
    if elements < _FLUSH_MIN_ELEMENTS or device.type != "cpu" or _flushing_denormals():
        yield
        return
    if not torch.set_flush_denormal(True):  # the CPU cannot: nothing to restore
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class _SequenceFn(torch.autograd.Function):
    """A whole SimpleRNN layer (input projection, bias, recurrence) as one autograd node.

    Autograd through a Python loop records several nodes per step and replays them one by one.
    Here the states live time-major in one buffer that the forward loop fills in place
    (``addmm_`` then the activation), and the backward pass is two in-place ops per step;
    everything that does not depend on the step order is one matmul over all steps: the input
    projection, ``dL/dW_ih``, ``dL/dW_hh``, ``dL/db`` and ``dL/dx``. ``act'`` comes from the
    outputs where that is exact (tanh, sigmoid, relu, linear) and otherwise from autograd on the
    rebuilt pre-activations, once for the whole sequence (exact for element-wise activations).
    Checked against plain autograd in the tests (float64 gradcheck, random configurations).
    """

    @staticmethod
    def forward(ctx, x, weight_ih, bias, weight_hh, activation, last_only=False):
        states, xs = _time_major_states(x, weight_ih, bias, weight_hh, activation)
        ctx.activation = activation
        ctx.has_bias = bias is not None
        ctx.last_only = last_only
        ctx.save_for_backward(xs, weight_ih, bias, weight_hh, states)
        return states[-1] if last_only else states.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        with _denormals_flushed(ctx.saved_tensors[4].numel(), grad_out.device):
            return _SequenceFn._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        xs, weight_ih, bias, weight_hh, states = ctx.saved_tensors
        steps, n, units = states.shape
        gp = torch.empty_like(states)  # dL/dz for every step, time-major
        if _numpy_loop(states, ctx.activation):
            _numpy_recurrence_backward(
                gp.numpy(), states.numpy(), ctx.activation, grad_out.numpy() if ctx.last_only else None,
                None if ctx.last_only else grad_out.transpose(0, 1).numpy(), weight_hh.detach().numpy())
            return _SequenceFn._grads(ctx, gp, xs, weight_ih, weight_hh, states)
        if ctx.activation in _DACT_FROM_OUTPUT:
            f = _DACT_FROM_OUTPUT[ctx.activation]
            dact = None if f is None else f(states)
        else:
            prev = torch.cat([states.new_zeros(1, n, units), states[:-1]]).view(steps * n, units)
            z = torch.addmm(xs @ weight_ih.t() if bias is None else torch.addmm(bias, xs, weight_ih.t()),
                            prev, weight_hh.t())
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                (dact,) = torch.autograd.grad(_act.ACTIVATIONS[ctx.activation](z).sum(), z)
            dact = dact.view(steps, n, units)
        _torch_recurrence_backward(gp, dact, grad_out, weight_hh, ctx.last_only)
        return _SequenceFn._grads(ctx, gp, xs, weight_ih, weight_hh, states)

    @staticmethod
    def _grads(ctx, gp, xs, weight_ih, weight_hh, states):
        """The gradients of the inputs from ``dL/dz`` of every step, ``gp`` (L, N, H): one matmul each."""
        steps, n, units = gp.shape
        g2 = gp.view(steps * n, units)
        grad_x = grad_w_ih = grad_b = grad_w_hh = None
        if ctx.needs_input_grad[0]:
            grad_x = (g2 @ weight_ih).view(steps, n, -1).transpose(0, 1)
        if ctx.needs_input_grad[1]:
            grad_w_ih = g2.t() @ xs
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        if ctx.needs_input_grad[3]:
            grad_w_hh = g2[n:].t() @ states[:-1].reshape((steps - 1) * n, units)
        return grad_x, grad_w_ih, grad_b, grad_w_hh, None, None


def _torch_recurrence_backward(gp: torch.Tensor, dact: torch.Tensor | None, grad_out: torch.Tensor,
                               weight_hh: torch.Tensor, last_only: bool) -> None:
    """As :func:`_numpy_recurrence_backward`, with torch's operations, into ``gp``."""
    # Upstream gradient per step; with last_only only the last step has one.
    g_tm = None if last_only else grad_out.transpose(0, 1).unbind(0)
    gps = gp.unbind(0)
    dacts = dact.unbind(0) if dact is not None else None
    gps[-1].copy_(grad_out if g_tm is None else g_tm[-1])
    if dacts is not None:
        gps[-1].mul_(dacts[-1])
    for t in range(gp.shape[0] - 2, -1, -1):
        if g_tm is None:
            torch.mm(gps[t + 1], weight_hh, out=gps[t])
        else:
            torch.addmm(g_tm[t], gps[t + 1], weight_hh, out=gps[t])
        if dacts is not None:
            gps[t].mul_(dacts[t])
