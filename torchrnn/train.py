"""Training like Keras's ``compile(loss='mean_squared_error', optimizer='adam')`` + ``fit``.

The tutorial trains with::

    model.compile(loss='mean_squared_error', optimizer='adam')
    model.fit(trainX, trainY, epochs=20, batch_size=1, verbose=2)

and this module does the same to any ``torch.nn.Module`` that maps a batch ``X[i:j]`` to
predictions shaped like ``y[i:j]``; it knows nothing of RNNs or sunspots (the model and the
data live elsewhere, as in minGPT's ``trainer.py``)::

    history = fit(model, X, y, epochs=20, batch_size=1, seed=0)
    history.loss                 # one value per epoch, as Keras reports it
    predict(model, X)            # NumPy (N, D)
    evaluate(model, X, y)        # {'loss': mse, 'rmse': ...}

What "like Keras" means here, point by point:

* Loss: mean squared error over the batch, on predictions and targets of the *same shape*. A
  ``(N,)`` target against an ``(N, 1)`` prediction would broadcast to ``(N, N)`` (torch warns,
  Keras does not); here it is a ``ValueError`` before the first step.
* Optimizer: :class:`KerasAdam`, Keras's Adam with Keras's defaults (lr 1e-3, betas 0.9/0.999,
  epsilon 1e-7) and Keras's update rule, which is not ``torch.optim.Adam``'s (see the class).
* Order: the training set is shuffled anew every epoch (Keras's ``shuffle=True``), then cut into
  batches of ``batch_size`` in that order; the last batch may be smaller.
* Reported loss: Keras's progress bar and ``History`` give, for each epoch, the mean of the
  batch losses weighted by the batch sizes (Keras 3's loss tracker is a ``Mean`` updated with
  ``sample_weight=batch_size``); with ``batch_size=1`` that is the plain mean.
* Seeds: ``seed`` seeds a private ``torch.Generator`` that draws the shuffle orders, so a seed
  repeats a run exactly and torch's global RNG is neither read nor advanced. ``seed=None``
  draws a fresh random order (from the OS, via ``Generator.seed()``), still without touching the
  global RNG. The model's initial weights are the model's business (``create_rnn(seed=...)``).

Library code does not print: the progress bar (tqdm, on stderr) appears only with
``progress=True``; the CLI turns it on unless ``--quiet``.
"""
from __future__ import annotations

import functools
import io
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from .init import check_seed
from .layers import _numpy_recurrence, _numpy_recurrence_backward
from .metrics import mse as _mse, rmse as _rmse

__all__ = ["KerasAdam", "History", "fit", "predict", "evaluate"]


# --------------------------------------------------------------------------- optimizer

class KerasAdam(torch.optim.Optimizer):
    """Adam exactly as Keras 3 computes it (``keras.optimizers.Adam``, TensorFlow backend).

    With ``t`` the number of steps taken (Keras's ``iterations + 1``), per parameter ``p`` with
    gradient ``g``::

        m     += (g   - m) * (1 - beta1)
        v     += (g*g - v) * (1 - beta2)
        alpha  = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        p     -= (m * alpha) / (sqrt(v) + eps)

    ``torch.optim.Adam`` instead divides by ``sqrt(v / (1 - beta2^t)) + eps``: the epsilon goes
    to the *bias-corrected* root. The two agree when ``sqrt(v) >> eps`` and part when gradients
    are small: one step from 0 with gradient 1e-5 moves a parameter by 7.59742e-4 in Keras and
    9.90099e-4 in torch (handed case K9), so a port that uses ``torch.optim.Adam(eps=1e-7)``
    does not train like the tutorial. Every operation above is done in the parameter's dtype
    and in the order Keras does it, with Keras's roundings (``lr`` and the betas pass through
    float32 even for float64 parameters; ``1 - beta`` and ``eps`` are Python floats), so float32
    and float64 runs give Keras's numbers bit for bit in our tests (random gradients, 40 steps).
    On the CPU the update runs through NumPy views of the buffers: torch 2.13's CPU ``sqrt``
    is not correctly rounded on every CPU (one float32 in seven one ulp off on an AMD EPYC,
    measured), NumPy's and TensorFlow's are, and so Keras's bits are reproduced there too.

    Keras counts one ``iterations`` per optimizer step for all variables; so does this class
    (``group['step']``), even for a parameter that had no gradient in that step (that parameter
    and its moments are left alone, as in Keras).

    Speed: batch size 1 on a tiny model is all per-step overhead (a 19-parameter model has five
    tensors, and every tensor operation costs microseconds whatever its size). The moments of
    all parameters of one device and dtype live in one flat buffer (``state[p]['m']`` and
    ``['v']`` are views into it), the gradients are concatenated once per step, the update is
    eleven operations on the flat buffers (NumPy's calls cost about a third of torch's), and
    one ``torch._foreach_sub_`` applies it. In a step in which some parameter has no gradient,
    each of the others gets the same operations on its own span of the buffers. :func:`fit` goes one step further with the optimizer
    it makes itself (:meth:`_flat_session`): for the length of the run the parameters and their
    gradients are views of flat buffers too, so autograd accumulates straight into one buffer
    and neither the concatenation nor the split is needed.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7):
        if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if lr > float(np.finfo(np.float32).max):  # Keras keeps lr in a float32 variable; so do the updates here
            raise ValueError(f"lr must fit in float32 (at most {float(np.finfo(np.float32).max):.4g}), got {lr!r}")
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a non-negative finite number, got {eps!r}")
        self._plans: dict[int, list[_Bucket]] = {}
        self._consts: dict[tuple, tuple] = {}
        super().__init__(params, dict(lr=float(lr), betas=(float(betas[0]), float(betas[1])),
                                      eps=float(eps), step=0))

    # Any change to the groups or to the state tensors invalidates the flat buffers.
    def add_param_group(self, param_group: dict) -> None:
        # torch.optim wraps add_param_group in torch._disable_dynamo, whose first call imports
        # torch._dynamo: 0.8 s of a CLI run that never compiles anything (measured). The plain
        # function underneath does the same bookkeeping.
        base = torch.optim.Optimizer.add_param_group
        getattr(base, "__wrapped__", base)(self, param_group)
        self._plans = {}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._plans = {}

    def _scalars(self, group: dict, dtype: torch.dtype) -> tuple[float, float, float, float]:
        """(1 - beta1, 1 - beta2, alpha, eps) rounded as Keras rounds them for ``dtype``."""
        lr, (b1, b2), eps, t = group["lr"], group["betas"], group["eps"], group["step"]
        key = (lr, b1, b2, dtype)
        consts = self._consts.get(key)
        if consts is None:
            # Keras: lr (a float32 variable) and the betas become float32 tensors first and are
            # then cast to the variable dtype, so even a float64 model sees float32-rounded lr and
            # betas; the powers, the root and alpha are computed in the variable dtype.
            ft = np.float64 if dtype == torch.float64 else np.float32
            consts = self._consts[key] = (ft, ft(np.float32(lr)), ft(np.float32(b1)), ft(np.float32(b2)), ft(1))
        ft, lr_, b1_, b2_, one = consts
        tt = ft(t)
        alpha = lr_ * np.sqrt(one - b2_ ** tt) / (one - b1_ ** tt)
        # Keras: `1 - self.beta_1` is a Python float, rounded to the variable dtype only when it
        # multiplies a tensor (torch rounds a Python scalar the same way); so is epsilon.
        return 1.0 - b1, 1.0 - b2, float(alpha), eps

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``Optimizer.zero_grad``; the default ``set_to_none=True`` is a plain loop (the base
        class adds profiler bookkeeping that costs more than the rest of a tiny model's step)."""
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _plan(self, index: int, group: dict) -> list["_Bucket"]:
        plan = self._plans.get(index)
        if plan is not None and all(b.fits() for b in plan):
            return plan
        by_kind: dict[tuple, list] = {}
        for p in group["params"]:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        plan = [_Bucket(ps, self.state) for ps in by_kind.values()]
        self._plans[index] = plan
        return plan

    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step()
        return loss

    @torch.no_grad()
    def _step(self) -> None:
        """The update itself (``fit`` calls it directly when no step hooks are registered)."""
        for index, group in enumerate(self.param_groups):
            group["step"] += 1
            for b in self._plan(index, group):
                c1, c2, alpha, eps = self._scalars(group, b.dtype)
                if b.bound:
                    got = b.received()
                    if all(got):
                        b.bound_update(c1, c2, alpha, eps)
                        continue
                    # A bound gradient is never None: its version counter tells who received one.
                    grads = [p.grad if g else None for p, g in zip(b.params, got)]
                else:
                    grads = [p.grad for p in b.params]
                    if all(g is not None for g in grads):
                        b.flat_update(grads, c1, c2, alpha, eps)
                        continue
                b.partial_update(grads, c1, c2, alpha, eps)

    def _bound_step(self, bucket: "_Bucket") -> None:
        """:meth:`_step` for the one bound ``bucket`` of a one-group optimizer, into whose every
        gradient slice something other than autograd wrote this step's gradient
        (:class:`_NumpyFitStep`, which checked the plan once per epoch): the update of the
        all-received case, without re-planning or reading version counters that nothing moved."""
        group = self.param_groups[0]
        group["step"] += 1
        bucket.bound_update(*self._scalars(group, bucket.dtype))

    def _flat_session(self) -> "_FlatSession | None":
        """Bind every parameter's ``.data`` and ``.grad`` to flat buffers until ``close()``.

        For :func:`fit`, with the optimizer it made itself. Returns None (nothing bound) unless
        every parameter is a dense floating-point leaf that requires grad. While bound,
        ``session.zero_grad()`` zeroes the gradient buffers (a bound gradient cannot be set to
        None) and each gradient's own version counter tells who received a gradient in the step
        (:meth:`_Bucket.bind`), so Keras's rule "no gradient, no update" still holds; the numbers are those of
        :meth:`step` bit for bit (tests). ``close()`` gives every parameter and gradient its own
        storage back, so nothing outside the run sees the buffers."""
        params = [p for g in self.param_groups for p in g["params"]]
        if not params or not all(isinstance(p, torch.Tensor) and p.is_leaf and p.requires_grad and p.is_floating_point()
                                 and p.layout == torch.strided and not p.is_sparse for p in params):
            return None
        buckets = [b for i, g in enumerate(self.param_groups) for b in self._plan(i, g)]
        return _FlatSession(buckets)


class _Bucket:
    """The parameters of one device and dtype in a group, with their moments in flat buffers."""

    def __init__(self, params: list, state: dict):
        self.params = list(params)
        self.device, self.dtype = self.params[0].device, self.params[0].dtype
        self.numels = [p.numel() for p in self.params]
        self.offsets = np.cumsum([0] + self.numels[:-1]).tolist()
        self.shapes = [p.shape for p in self.params]
        # Carry over moments already in the state (after load_state_dict, or a rebuilt plan).
        def gather(key):
            parts = [state[p][key].detach().reshape(-1).to(self.device, self.dtype) if key in state[p]
                     else torch.zeros(n, device=self.device, dtype=self.dtype)
                     for p, n in zip(self.params, self.numels)]
            return torch.cat(parts) if parts else torch.zeros(0, device=self.device, dtype=self.dtype)
        self.m, self.v = gather("m"), gather("v")
        for p, m, v in zip(self.params, self.m.split(self.numels), self.v.split(self.numels)):
            state[p]["m"] = m.view(p.shape)
            state[p]["v"] = v.view(p.shape)
        # Scratch for the update. On the CPU the update runs through NumPy views of these
        # buffers: the same IEEE float32/float64 operations in the same order (Keras's numbers bit
        # for bit, tests), at about a third of torch's cost per call, which is what a tiny
        # model's update is made of (12 calls on 19 numbers for the tutorial's model).
        self.tmp, self.den = torch.empty_like(self.m), torch.empty_like(self.m)
        self._np = None
        if self.device.type == "cpu" and self.dtype in (torch.float32, torch.float64):
            self._np = (self.m.numpy(), self.v.numpy(), self.tmp.numpy(), self.den.numpy())
        # Set by bind(): the parameters' data and gradients in `flat` and `gflat`.
        self.bound = False

    def fits(self) -> bool:
        """Still valid: no parameter changed device, dtype or shape since the buffers were made
        (and, while bound, each parameter still lies in its place in the flat buffer)."""
        if not all(p.device == self.device and p.dtype == self.dtype and p.shape == s
                   for p, s in zip(self.params, self.shapes)):
            return False
        return not self.bound or all(p.data_ptr() == d.data_ptr() and p.grad is not None
                                     and p.grad.data_ptr() == g.data_ptr()
                                     for p, d, g in zip(self.params, self._views, self._gviews))

    def _moments(self, g: torch.Tensor, c1: float, c2: float, alpha: float, eps: float,
                 part: slice | None = None) -> torch.Tensor:
        """Update m and v with the flat gradient ``g`` (of the whole bucket, or of the parameter
        at ``part`` of it); return the flat step ``m*alpha/(sqrt(v)+eps)`` for the same span,
        in the bucket's scratch buffer (valid until the next call)."""
        if self._np is not None:
            arrays = self._np if part is None else tuple(a[part] for a in self._np)
            g_np = self._gflat_np if self.bound and g is self.gflat else g.detach().reshape(-1).numpy()
            # torch lets an overflow become inf silently (fit then reports the divergence); so
            # does NumPy here, without its RuntimeWarnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._update_moments(np, g_np, *arrays, c1, c2, alpha, eps)
        else:
            tensors = (self.m, self.v, self.tmp, self.den)
            if part is not None:
                tensors = tuple(t[part] for t in tensors)
            self._update_moments(torch, g.reshape(-1), *tensors, c1, c2, alpha, eps)
        return self.tmp if part is None else self.tmp[part]

    @staticmethod
    def _update_moments(xp, g, m, v, tmp, den, c1: float, c2: float, alpha: float, eps: float) -> None:
        """The update on torch tensors or NumPy arrays (``xp`` is the module): every operation
        exists under the same name in both and rounds the same way."""
        xp.subtract(g, m, out=tmp)
        tmp *= c1
        m += tmp                            # m += (g - m)(1 - b1)
        xp.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= c2
        v += tmp                            # v += (g^2 - v)(1 - b2)
        xp.sqrt(v, out=den)
        den += eps                          # sqrt(v) + eps: epsilon on the uncorrected root
        xp.multiply(m, alpha, out=tmp)
        tmp /= den

    def flat_update(self, grads: list, c1: float, c2: float, alpha: float, eps: float) -> None:
        for g in grads:
            if g.is_sparse:
                raise ValueError("KerasAdam does not support sparse gradients")
        upd = self._moments(torch.cat([g.reshape(-1) for g in grads]), c1, c2, alpha, eps)
        torch._foreach_sub_([p.view(-1) for p in self.params], list(upd.split(self.numels)))

    def bind(self) -> None:
        """Make every parameter's ``.data`` a view of ``flat`` and its ``.grad`` a slice of ``gflat``.

        The gradient slices are not views but tensors set on ``gflat``'s storage, each with a
        version counter of its own (a view shares its base's): autograd accumulates into a
        gradient in place, which bumps that counter, so comparing the counters with those taken
        at :meth:`zero_bound_grads` tells which parameters received a gradient in the step.
        (A post-accumulate-grad hook per parameter told the same for ~17 us each per step,
        about a sixth of a batch-size-1 step of the tutorial's model, measured.)"""
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
            self.gflat = torch.zeros_like(self.flat)
            self._gflat_np = self.gflat.numpy() if self._np is not None else None
            self._views = [d.view(s) for d, s in zip(self.flat.split(self.numels), self.shapes)]
            storage, base = self.gflat.untyped_storage(), self.gflat.storage_offset()
            self._gviews = [self.gflat.new_empty(0).set_(storage, base + o, s) for o, s in zip(self.offsets, self.shapes)]
            for p, d, g in zip(self.params, self._views, self._gviews):
                p.data = d
                p.grad = g
        self._versions = [g._version for g in self._gviews]
        self.bound = True

    def received(self) -> list[bool]:
        """While bound: which parameters autograd accumulated a gradient into since the last
        :meth:`zero_bound_grads` (Keras's "no gradient, no update" rule needs to know)."""
        return [g._version != v for g, v in zip(self._gviews, self._versions)]

    def release(self) -> None:
        """Undo :meth:`bind`: each parameter (and gradient) gets its own storage again, same values."""
        if not self.bound:
            return
        self.bound = False
        with torch.no_grad():
            for p, d, g in zip(self.params, self._views, self._gviews):
                if p.data_ptr() == d.data_ptr():
                    p.data = d.clone()
                if p.grad is not None and p.grad.data_ptr() == g.data_ptr():
                    p.grad = g.clone()
        del self.flat, self.gflat, self._gflat_np, self._views, self._gviews

    def zero_bound_grads(self) -> None:
        self.gflat.zero_()  # gflat's own version counter moves, not the slices'
        self._versions = [g._version for g in self._gviews]

    def bound_update(self, c1: float, c2: float, alpha: float, eps: float) -> None:
        # through torch, so that the parameters' version counters move as for any in-place update
        self.flat.sub_(self._moments(self.gflat, c1, c2, alpha, eps))

    def partial_update(self, grads: list, c1: float, c2: float, alpha: float, eps: float) -> None:
        """A step in which some parameters have no gradient: each of the others is updated by the
        same operations as :meth:`flat_update`, on its own span of the buffers."""
        for p, g, start, n in zip(self.params, grads, self.offsets, self.numels):
            if g is None:
                continue
            if g.is_sparse:
                raise ValueError("KerasAdam does not support sparse gradients")
            p.sub_(self._moments(g, c1, c2, alpha, eps, part=slice(start, start + n)).view(p.shape))


class _FlatSession:
    """What :meth:`KerasAdam._flat_session` returns: ``zero_grad()``, ``valid()``, ``close()``."""

    def __init__(self, buckets: list[_Bucket]):
        self.buckets = buckets
        try:
            for b in buckets:
                b.bind()
        except BaseException:
            self.close()
            raise

    def zero_grad(self) -> None:
        for b in self.buckets:
            b.zero_bound_grads()

    def valid(self) -> bool:
        """False once something outside moved a parameter out of its buffer (``model.double()``,
        ``p.data = ...``): then ``close()`` and go on without the session."""
        return all(b.bound and b.fits() for b in self.buckets)

    def close(self) -> None:
        for b in self.buckets:
            b.release()


class _NumpyFitStep:
    """The whole batch step of :func:`fit` in NumPy, for the models where that is all per-call
    overhead: an :class:`~torchrnn.RNNModel` on the CPU (float32 or float64), tanh or linear
    SimpleRNN layers and Dense, rows (batch x units) under ``layers._SMALL_ROW``, trained with the
    ``KerasAdam`` that :func:`fit` made and bound to flat buffers, and no hooks anywhere.

    It computes what the torch path computes: the forward of :class:`~torchrnn.layers.SimpleRNN`'s
    training node (the same NumPy loop), Dense, the MSE, and the gradients by the formulas of that
    node's backward, written into the bound gradient buffers; then the same Adam update. Results
    differ from the torch path only by the rounding of matrix products of three or so terms
    summed in another order (tests hold it to the autograd gradients in float64). For the
    tutorial's step that is 3x fewer microseconds: no autograd graph, no ATen dispatch.
    """

    @classmethod
    def plan(cls, model: nn.Module, optimizer: torch.optim.Optimizer, session, batch_size: int):
        """The step for this run, or None where the torch path must run."""
        from . import layers as Ly
        from .model import RNNModel

        if (not _NUMPY_FIT or session is None or type(model) is not RNNModel or type(optimizer) is not KerasAdam
                or not torch.is_grad_enabled()):  # under no_grad the torch path refuses to train
            return None
        if len(session.buckets) != 1 or session.buckets[0]._np is None or len(optimizer.param_groups) != 1:
            return None
        cfg = model.config
        if model.dense is None or cfg.return_sequences or cfg.activation[1] not in Ly._NUMPY_LOOP_ACTIVATIONS:
            return None
        if any(type(layer) is not Ly.SimpleRNN or layer.activation not in Ly._NUMPY_LOOP_ACTIVATIONS
               or layer.use_fused for layer in model.rnn):
            return None
        if batch_size * max(cfg.hidden_units) >= Ly._SMALL_ROW:
            return None
        # Each weight once, each trainable, each in the bound bucket: a weight tied between two
        # layers gets the sum of both gradients from autograd, which this step does not add up.
        used = [p for layer in model.rnn for p in (layer.weight_ih, layer.weight_hh, layer.bias) if p is not None]
        used += [p for p in (model.dense.weight, model.dense.bias) if p is not None]
        bucket_ids = {id(p) for p in session.buckets[0].params}
        if len({id(p) for p in used}) != len(used) or {id(p) for p in used} != bucket_ids \
                or not all(p.requires_grad for p in used):
            return None
        # Hooks observe or change what autograd and the modules do; the torch path honours them.
        from torch.nn.modules import module as _mod
        if any(getattr(_mod, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                       "_global_backward_hooks", "_global_backward_pre_hooks")):
            return None
        for m in model.modules():
            if any(getattr(m, name, None) for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                                         "_backward_pre_hooks")):
                return None
        for p in model.parameters():
            if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None):
                return None
        return cls(model, session.buckets[0])

    def __init__(self, model, bucket: "_Bucket"):
        self.bucket = bucket
        views = {id(p): (d.numpy(), g.numpy()) for p, d, g in zip(bucket.params, bucket._views, bucket._gviews)}

        def arrays(p):
            return (None, None) if p is None else views[id(p)]

        self.layers = []
        for layer in model.rnn:
            (w_ih, g_ih), (w_hh, g_hh), (b, g_b) = (arrays(p) for p in (layer.weight_ih, layer.weight_hh, layer.bias))
            self.layers.append((w_ih, w_hh, b, g_ih, g_hh, g_b, layer.activation, bool(layer.go_backwards)))
        (self.wd, self.gwd), (self.bd, self.gbd) = arrays(model.dense.weight), arrays(model.dense.bias)
        self.dense_tanh = model.config.activation[1] == "tanh"

    def __call__(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """One batch ``xb`` (N, L, F), ``yb`` (N, D): its loss; the gradients into the bound buffers."""
        seq = xb.transpose(1, 0, 2)  # time-major (L, N, F)
        saved = []
        for w_ih, w_hh, b, _, _, _, act, backwards in self.layers:
            if backwards:
                seq = seq[::-1]
            steps, n, feats = seq.shape
            xs = np.ascontiguousarray(seq).reshape(steps * n, feats)
            z = np.dot(xs, w_ih.T)
            if b is not None:
                z += b
            states = z.reshape(steps, n, -1)
            _numpy_recurrence(states, w_hh.T, act)
            saved.append((xs, states))
            seq = states
        h = seq[-1]
        out = np.dot(h, self.wd.T)
        if self.bd is not None:
            out += self.bd
        if self.dense_tanh:
            np.tanh(out, out=out)
        if yb.shape != out.shape:  # fit checked the shapes; NumPy would broadcast them silently
            raise ValueError(f"model output has shape {out.shape} but the targets have shape {yb.shape}")
        diff = out - yb
        loss = float(np.mean(diff * diff))
        # dL/d(output) of the mean squared error, then back through Dense and each layer
        g = diff * diff.dtype.type(2 / diff.size)
        if self.dense_tanh:
            g *= 1 - out * out
        np.dot(g.T, h, out=self.gwd)
        if self.gbd is not None:
            np.sum(g, axis=0, out=self.gbd)
        upstream_last, upstream = np.dot(g, self.wd), None
        for i in range(len(self.layers) - 1, -1, -1):
            w_ih, w_hh, _, g_ih, g_hh, g_b, act, backwards = self.layers[i]
            xs, states = saved[i]
            steps, n, units = states.shape
            gp = np.empty_like(states)
            _numpy_recurrence_backward(gp, states, act, upstream_last, upstream, w_hh)
            g2 = gp.reshape(steps * n, units)
            np.dot(g2.T, xs, out=g_ih)
            if g_b is not None:
                np.sum(g2, axis=0, out=g_b)
            if steps > 1:
                np.dot(g2[n:].T, states[:-1].reshape((steps - 1) * n, units), out=g_hh)
            else:
                g_hh.fill(0)
            if i:
                upstream = np.dot(g2, w_ih).reshape(steps, n, -1)
                if backwards:
                    upstream = upstream[::-1]
        return loss


# fit's NumPy step on (see _NumpyFitStep); off, every step runs through torch (tests compare both)
_NUMPY_FIT = True


def _fast_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer.step`` without torch.optim's per-call wrapper (a profiler label and the hook
    lookups, ~25 us of a batch-size-1 step) when that wrapper has nothing to do: a KerasAdam
    with no step hooks registered on it or globally. Any other optimizer: its own ``step``."""
    from torch.optim import optimizer as _opt_mod

    hooks = (getattr(optimizer, "_optimizer_step_pre_hooks", None), getattr(optimizer, "_optimizer_step_post_hooks", None),
             getattr(_opt_mod, "_global_optimizer_pre_hooks", None), getattr(_opt_mod, "_global_optimizer_post_hooks", None))
    if type(optimizer) is KerasAdam and all(h is not None and len(h) == 0 for h in hooks):
        return lambda: KerasAdam._step(optimizer)
    return optimizer.step


# --------------------------------------------------------------------------- fit

@dataclass
class History:
    """What :func:`fit` did. ``loss[e]`` is epoch ``e``'s loss as Keras reports it; ``batch_loss[e]``
    holds that epoch's batch losses in training order; ``seconds[e]`` its wall time."""

    loss: list[float] = field(default_factory=list)
    batch_loss: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    epochs: int = 0
    batch_size: int = 1
    seed: int | None = None
    stopped_early: bool = False

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras's ``History.history`` shape: ``{'loss': [...]}``."""
        return {"loss": list(self.loss)}


# A bar needs room for "Epoch 20/20: 100%|...| 187/187 [...]"; a terminal that reports fewer
# columns (0 when its width is unknown: tqdm then drew empty lines only) gets the plain lines.
_MIN_BAR_COLUMNS = 40


def _terminal_columns(stream: Any) -> int | None:
    """The width ``stream``'s terminal reports, or None when it has no file descriptor to ask."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _param_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    raise ValueError("the model has no floating-point parameters to train")


def _numeric_tensor(a: Any, name: str) -> torch.Tensor:
    """``a`` as a real tensor, without a copy where one is not needed.

    A tensor is detached; a float32 or float64 NumPy array that torch can view (native byte
    order, aligned, writable, no negative strides) becomes a tensor on the same memory
    (``torch.from_numpy``), in its own dtype: neither :func:`fit` nor :func:`predict` writes to it.
    Anything else (lists, integers, booleans, other arrays) goes through a float64 NumPy array,
    so that integers are rounded once, by the final cast.
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
    elif (isinstance(a, np.ndarray) and a.dtype.type in (np.float32, np.float64) and a.dtype.isnative
          and a.flags.aligned and a.flags.writeable and all(s >= 0 for s in a.strides)):
        # (torch.from_numpy warns on a read-only array, and cannot view negative strides.)
        t = torch.from_numpy(a)
    else:
        try:
            arr = np.asarray(a)
            # a cast of complex values to float64 would drop the imaginary parts with a mere warning
            t = None if arr.dtype.kind == "c" else torch.as_tensor(arr.astype(np.float64, copy=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} is not a numeric array: {exc}") from None
        if t is None:
            raise ValueError(f"{name} must be real, got {arr.dtype} values")
    if t.is_complex():
        raise ValueError(f"{name} must be real, got {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in ``t``. One reduction and no temporary: ``torch.aminmax`` propagates
    NaN and ends at an infinity if there is one, where ``torch.isfinite(t).all()`` writes a mask
    as large as ``t`` first (on 10,000 x 120 x 8 float32: 3.5 ms against 66 ms, one CPU thread)."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return math.isfinite(lo.item()) and math.isfinite(hi.item())


def _first_non_finite(t: torch.Tensor) -> tuple[int, tuple[int, ...], float]:
    """(how many, the first index, its value) of the non-finite entries of ``t``; for error messages."""
    bad = ~torch.isfinite(t)
    idx = tuple(int(i) for i in torch.nonzero(bad)[0])
    return int(bad.sum()), idx, t[idx].item()


def _cast_checked(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, str | None]:
    """``t`` on ``device`` in ``dtype`` (the same tensor when it already is), checked once, after the cast.

    Returns the tensor and what is wrong: None, ``'non-finite'`` (``t`` itself holds NaN or an
    infinity) or ``'range'`` (``t`` is finite but does not fit ``dtype``, e.g. float64 1e39 ->
    float32 inf). ``t`` is looked at again only when something is wrong, to tell the two apart.
    """
    out = t.to(device=device, dtype=dtype)
    if _all_finite(out):
        return out, None
    return out, ("range" if out is not t and _all_finite(t) else "non-finite")


def _as_tensor(a: Any, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Convert once (float64 welcome; float32 NumPy shared, not copied), check it is finite and
    has a batch axis, move it once."""
    t = _numeric_tensor(a, name)
    if t.dim() == 0:
        raise ValueError(f"{name} must have a batch axis (shape (N, ...)), got a scalar")
    if t.shape[0] < 1:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); need at least one sample")
    return _cast_or_refuse(t, name, device, dtype).contiguous()


def _model_input(model: nn.Module, X: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``X`` for ``model``: through the model's own ``as_input`` where it has one (an
    :class:`~torchrnn.RNNModel`: a 2-D ``(N, L)`` array read as ``(N, L, 1)`` as its ``predict``
    reads it, a wrong shape named as the user gave it, not as one batch of it), else
    :func:`_as_tensor`."""
    take = getattr(model, "as_input", None)
    if callable(take):
        return take(X, name="X").contiguous()
    return _as_tensor(X, "X", device, dtype)


def _cast_or_refuse(t: torch.Tensor, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`_cast_checked`, raising ``ValueError`` naming the first bad value and its index."""
    out, problem = _cast_checked(t, device, dtype)
    if problem is None:
        return out
    # a NaN or an infinity in the input itself, or a finite value the model's dtype cannot hold
    count, idx, value = _first_non_finite(t if problem == "non-finite" else out)
    plural = "s" * (count != 1)
    if problem == "non-finite":
        what = f"non-finite value{plural}"
    else:
        what = f"value{plural} beyond the range of the model's {dtype}"
        value = t[idx].item()  # the input's own value, not the infinity it became
    raise ValueError(f"{name} holds {count} {what} (first {value!r} at index {idx})")


def _check_pair(pred: torch.Tensor, target: torch.Tensor, n: int | None = None) -> None:
    """``pred`` and ``target`` must match. ``n``: they are the first rows of ``n``-row data (fit's
    one-sample look), and the message gives the shapes of all ``n`` rows, as the user knows them."""
    if pred.shape != target.shape:
        out, tgt = tuple(pred.shape), tuple(target.shape)
        if n is not None:
            out, tgt = (n, *out[1:]), (n, *tgt[1:])
        raise ValueError(
            f"model output has shape {out} but the targets have shape {tgt}; "
            f"the MSE loss needs matching shapes and will not broadcast them "
            f"(only (N,) targets for a (N, 1) output are read as (N, 1))")


def fit(model: nn.Module, X: Any, y: Any, *, epochs: int = 20, batch_size: int = 1, lr: float = 1e-3,
        shuffle: bool = True, seed: int | None = None, optimizer: torch.optim.Optimizer | None = None,
        progress: bool = False, callback: Callable[[int, dict], Any] | None = None) -> History:
    """Train ``model`` on ``(X, y)`` with MSE and Keras's Adam; return the :class:`History`.

    ``X``: array-like or tensor ``(N, ...)`` that ``model`` accepts; ``y``: ``(N, ...)`` shaped
    exactly like the model's output for ``X`` (no broadcasting), or ``(N,)`` for an ``(N, 1)``
    output, read as ``(N, 1)`` as Keras reads it. Both are converted and moved to
    the device and dtype of the model's parameters once, before the first step.
    ``optimizer`` defaults to ``KerasAdam(model.parameters(), lr=lr)``; a given optimizer is used
    as is (``lr`` is then ignored). ``shuffle``/``seed``: see the module docstring.
    ``progress``: a tqdm bar per epoch on stderr with the running loss; when stderr is not a
    terminal (a log file, CI), one plain line per epoch instead.
    ``callback(epoch, logs)`` is called after every epoch (``epoch`` counted from 1,
    ``logs = {'loss': ..., 'seconds': ...}``); if it returns True, training stops there.

    Raises ``ValueError`` for bad arguments or data (non-finite values, no samples, ``X`` and
    ``y`` with different ``N``, an output shape other than ``y``'s) and when the loss becomes
    non-finite (the epoch and a hint are in the message).
    """
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    device, dtype = _param_device_dtype(model)
    Xt = _model_input(model, X, device, dtype)
    yt = _as_tensor(y, "y", device, dtype)
    n = Xt.shape[0]
    if yt.shape[0] != n:
        raise ValueError(f"X has {n} samples but y has {yt.shape[0]}")

    # One look at the output shape before any weight moves, in eval mode so that no dropout draws
    # from the RNG and no batch-norm statistics change.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            first = model(Xt[:1])
            if yt.dim() == 1 and first.dim() == 2 and first.shape[1] == 1:
                # The tutorial's get_XY gives (N,) targets for a (N, 1) output; Keras's loss reads
                # them as (N, 1), as metrics.rmse does. That one pair is reshaped, never broadcast.
                yt = yt.unsqueeze(1)
            _check_pair(first, yt[:1], n)
    finally:
        model.train(was_training)
    model.train()

    session = None
    if optimizer is None:
        optimizer = KerasAdam(model.parameters(), lr=lr)
        # Nobody else holds this optimizer: bind the parameters to its flat buffers for the run.
        session = optimizer._flat_session()
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))

    n_batches = (n + batch_size - 1) // batch_size
    # Batch sizes, to weight the batch losses as Keras's loss tracker does (only the last differs).
    sizes = torch.full((n_batches,), float(batch_size), dtype=torch.float64)
    sizes[-1] = n - batch_size * (n_batches - 1)
    cum_sizes = sizes.cumsum(0).tolist()
    every = max(1, min(n_batches // 50, 1000))  # progress refresh; a float() is a device sync on GPUs
    history = History(epochs=0, batch_size=batch_size, seed=None if seed is None else int(seed))
    mse_loss = nn.functional.mse_loss  # its broadcast warning is a second guard (pyproject turns it into an error)
    step = _fast_step(optimizer)
    numpy_step = None
    unbound_zero_grad = functools.partial(optimizer.zero_grad, set_to_none=True)
    bar_cls = None
    columns = _terminal_columns(sys.stderr)
    log_lines = progress and (not _is_terminal(sys.stderr) or (columns is not None and columns < _MIN_BAR_COLUMNS))
    if progress and not log_lines:
        from tqdm.auto import tqdm as bar_cls  # imported only when asked for

    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            if session is not None and not session.valid():  # a callback moved the parameters
                session.close()
                session = None
            # planned each epoch: a callback may have frozen a weight or registered a hook since
            numpy_step = _NumpyFitStep.plan(model, optimizer, session, batch_size)
            zero_grad = unbound_zero_grad if session is None else session.zero_grad
            if shuffle:
                perm = torch.randperm(n, generator=gen).to(device)
                Xe, ye = Xt[perm], yt[perm]
            else:
                Xe, ye = Xt, yt
            # Batch losses stay on the device: a 0-d tensor per step, stacked every `every` steps
            # into chunks (bounded memory); no per-step copy or host sync.
            pending: list[torch.Tensor] = []
            chunks: list[torch.Tensor] = []
            seen, running_sum = 0, 0.0
            bar = None
            if bar_cls is not None:
                bar = bar_cls(total=n_batches, desc=f"Epoch {epoch}/{epochs}", unit="batch",
                              file=sys.stderr, leave=True, dynamic_ncols=True, mininterval=0.1)
            if numpy_step is not None:
                Xn, yn = Xe.numpy(), ye.numpy()
            # As in torch, an overflow in NumPy's part of a step is an inf (reported below), not a warning.
            with np.errstate(all="ignore"):
                for b in range(n_batches):
                    s = b * batch_size
                    if numpy_step is not None:
                        pending.append(numpy_step(Xn[s:s + batch_size], yn[s:s + batch_size]))
                        optimizer._bound_step(numpy_step.bucket)
                    else:
                        xb, yb = Xe[s:s + batch_size], ye[s:s + batch_size]
                        zero_grad()
                        pred = model(xb)
                        if pred.shape != yb.shape:
                            _check_pair(pred, yb)
                        loss = mse_loss(pred, yb)
                        loss.backward()
                        if b == 0 and session is not None and not session.valid():
                            # autograd replaced a bound gradient instead of adding into it: unbind
                            session.close()
                            session = None
                            zero_grad = unbound_zero_grad
                        step()
                        pending.append(loss.detach())
                    if len(pending) == every or b + 1 == n_batches:
                        # losses of the NumPy step are floats; the torch path's stay 0-d tensors
                        chunk = (torch.tensor(pending, dtype=torch.float64) if numpy_step is not None
                                 else torch.stack(pending))
                        chunks.append(chunk)
                        pending = []
                        if bar is not None:
                            k = chunk.shape[0]
                            running_sum += float((chunk.double().cpu() * sizes[seen:seen + k]).sum())
                            seen += k
                            bar.update(k)
                            bar.set_postfix(loss=f"{running_sum / cum_sizes[seen - 1]:.4g}", refresh=False)
            batch_losses = torch.cat(chunks).double().cpu()
            epoch_loss = float((batch_losses * sizes).sum() / n)
            if bar is not None:
                bar.set_postfix(loss=f"{epoch_loss:.4g}")
                bar.close()
            seconds = time.perf_counter() - t0
            if log_lines:
                # Outside a terminal (a log file, CI) a bar's redraws pile up on one line: write
                # one plain line per epoch instead, as Keras's verbose=2 does.
                print(f"Epoch {epoch}/{epochs}: {n_batches} batches in {seconds:.2f} s, loss={epoch_loss:.4g}",
                      file=sys.stderr, flush=True)
            history.loss.append(epoch_loss)
            history.batch_loss.append(batch_losses.tolist())
            history.seconds.append(seconds)
            history.epochs = epoch
            if not math.isfinite(epoch_loss):
                first = int(torch.nonzero(~torch.isfinite(batch_losses))[0])
                raise ValueError(f"the loss became non-finite in epoch {epoch} (batch {first + 1} of {n_batches}); "
                                 f"the weights diverged: try a smaller lr (now {optimizer.param_groups[0]['lr']:g}) "
                                 f"or check the data's scale")
            if callback is not None and callback(epoch, {"loss": epoch_loss, "seconds": seconds}) is True:
                history.stopped_early = epoch < epochs
                break
    finally:
        if session is not None:
            session.close()
        model.train(was_training)
    return history


# --------------------------------------------------------------------------- predict / evaluate

def predict(model: nn.Module, X: Any, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs for ``X`` as a NumPy array (the parameters' dtype), in eval mode, no grad.

    ``batch_size=None`` lets the model choose: a model with a ``predict_batch_size(shape)``
    method is run in chunks of that many samples (:meth:`torchrnn.RNNModel.predict_batch_size`
    sizes them for the CPU's caches), any other module on all of ``X`` at once. A batch size
    changes the results only by float rounding (matrix products of another shape), a few ulps.
    The chunks' outputs are written into one preallocated array.
    """
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    device, dtype = _param_device_dtype(model)
    return _predict_checked(model, _model_input(model, X, device, dtype), batch_size)


def _predict_checked(model: nn.Module, Xt: torch.Tensor, batch_size: int | None) -> np.ndarray:
    """:func:`predict` on a tensor already validated and on the model's device and dtype."""
    n = Xt.shape[0]
    if batch_size is None:
        choose = getattr(model, "predict_batch_size", None)
        batch_size = int(choose(tuple(Xt.shape))) if callable(choose) else n
    batch_size = max(1, min(batch_size, n))
    was_training = model.training
    model.eval()
    try:
        # inference_mode: no autograd bookkeeping (version counters, views) on any op; the
        # outputs leave as NumPy arrays, never to be differentiated.
        with torch.inference_mode():
            first = model(Xt[:batch_size])
            # Chunks are written into one output: no list of chunk outputs and no torch.cat, and the
            # result never keeps a chunk's internal buffers alive (an output may be a view of one).
            out = torch.empty((n, *first.shape[1:]), dtype=first.dtype, device=first.device)
            out[:batch_size] = first
            del first
            for s in range(batch_size, n, batch_size):
                out[s:s + batch_size] = model(Xt[s:s + batch_size])
    finally:
        model.train(was_training)
    return out.cpu().numpy()


def evaluate(model: nn.Module, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
    """Keras's ``evaluate`` for this loss: ``{'loss': MSE, 'rmse': RMSE, 'n': N}``, computed in float64.

    ``y`` must have the output's shape, or be ``(N,)`` for an ``(N, 1)`` output (see
    :func:`torchrnn.metrics.rmse`).
    """
    pred = predict(model, X, batch_size=batch_size)
    return {"loss": _mse(y, pred), "rmse": _rmse(y, pred), "n": int(pred.shape[0])}
