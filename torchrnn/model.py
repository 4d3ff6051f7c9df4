"""The tutorial's ``create_RNN`` as a torch model: SimpleRNN layer(s) and a Dense on top.

Keras, in the tutorial::

    model = Sequential()
    model.add(SimpleRNN(hidden_units, input_shape=input_shape, activation=activation[0]))
    model.add(Dense(units=dense_units, activation=activation[1]))

torchrnn::

    model = create_rnn(hidden_units, dense_units, input_shape, activation)

Shapes: ``N`` batch, ``L`` time steps, ``F`` features, ``H`` units of an RNN layer, ``D`` dense
units. Every SimpleRNN layer computes (see :mod:`torchrnn.layers`)::

    Keras:  h_t = act(x_t @ K + b + h_{t-1} @ R)            torch: h_t = act(x_t W_ih^T + b + h_{t-1} W_hh^T)

and the Dense computes ``o = act2(h_L @ Wy + by)`` (torch: ``h_L W^T + b``). Forward maps
``(N, L, F) -> (N, D)``, or ``(N, L, D)`` with ``return_sequences=True``. Stacked layers
(``hidden_units=[8, 4]``) pass whole sequences between them, as Keras requires.

Weights read back with :meth:`RNNModel.get_weights` in Keras order and Keras shapes, so the
tutorial's NumPy cell runs unchanged::

    wx, wh, bh, wy, by = model.get_weights()
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import activations as _act
from .init import check_seed, glorot_uniform, make_generator
from .layers import SimpleRNN

# RNNModel.predict runs long inputs in chunks of sequences (RNNModel.predict_batch_size): one
# time step's states of a chunk take at most PREDICT_ROW_BYTES (so they stay in a core's L2
# cache between the step that writes them and the step that reads them) and all the state
# buffers of a chunk at most PREDICT_CHUNK_BYTES (a sequence output of 10,000 windows x 120 steps
# x 64 units would be 300 MB at once). Chosen with bench/bench_inference.py's two cases and a
# return_sequences and a stacked variant of the large one, at 1 and 2 threads.
PREDICT_ROW_BYTES = 512 * 2**10
PREDICT_CHUNK_BYTES = 32 * 2**20


def _per_layer(value: Any, n: int, name: str, kind: type) -> tuple:
    """A scalar for every layer, or one value per layer (checked), as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries {tuple(value)!r} but there are {n} RNN layers")
        values = tuple(value)
    else:
        values = (value,) * n
    if kind is bool:
        for v in values:
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name} must be True/False (or one per layer), got {v!r}")
        return tuple(bool(v) for v in values)
    return tuple(_act.canonical_name(v) for v in values)


def _positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class RNNConfig:
    """Everything needed to rebuild a model; ``RNNConfig(**dataclasses.asdict(cfg)) == cfg``.

    Per-layer options are normalised to tuples with one entry per RNN layer;
    ``activation = (rnn activations per layer, dense activation)``.
    """

    hidden_units: tuple[int, ...]
    dense_units: int | None
    input_shape: tuple[int | None, int]
    activation: tuple[tuple[str, ...], str] = ("tanh", "tanh")
    use_bias: tuple[bool, ...] | bool = True
    dense_use_bias: bool = True
    return_sequences: bool = False
    go_backwards: tuple[bool, ...] | bool = False
    seed: int | None = None

    def __post_init__(self):
        units = self.hidden_units if isinstance(self.hidden_units, (list, tuple)) else (self.hidden_units,)
        if len(units) == 0:
            raise ValueError("hidden_units is empty; give at least one RNN layer's units")
        units = tuple(_positive_int(u, "hidden_units") for u in units)
        n = len(units)
        if not isinstance(self.input_shape, (list, tuple)) or len(self.input_shape) != 2:
            raise ValueError(f"input_shape must be (time_steps, features), got {self.input_shape!r}")
        steps = _positive_int(self.input_shape[0], "input_shape[0] (time_steps)", allow_none=True)
        feats = _positive_int(self.input_shape[1], "input_shape[1] (features)")
        act = self.activation
        if self.dense_units is None and (isinstance(act, str) or (isinstance(act, (list, tuple)) and len(act) == 1)):
            # no Dense: the RNN's activation alone (Keras's bare SimpleRNN(units, activation))
            act = (act if isinstance(act, str) else act[0], "linear")
        if isinstance(act, str) or act is None or len(act) != 2:
            raise ValueError(f"activation must be a pair (rnn, dense), got {act!r}"
                             + ("" if self.dense_units is None else
                                " (one name alone is taken only with dense_units=None, no Dense)"))
        rnn_act = _per_layer(act[0], n, "activation[0]", str)
        dense_act = _act.canonical_name(act[1])
        for name in ("dense_use_bias", "return_sequences"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        fields = {
            "hidden_units": units,
            "dense_units": _positive_int(self.dense_units, "dense_units", allow_none=True),
            "input_shape": (steps, feats),
            "activation": (rnn_act, dense_act),
            "use_bias": _per_layer(self.use_bias, n, "use_bias", bool),
            "dense_use_bias": bool(self.dense_use_bias),
            "return_sequences": bool(self.return_sequences),
            "go_backwards": _per_layer(self.go_backwards, n, "go_backwards", bool),
            "seed": check_seed(self.seed),
        }
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    @property
    def time_steps(self) -> int | None:
        return self.input_shape[0]

    @property
    def features(self) -> int:
        return self.input_shape[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RNNModel(nn.Module):
    """SimpleRNN layer(s) followed by an optional Dense, with Keras semantics throughout."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        gen = make_generator(config.seed)
        layers = []
        in_size = config.features
        n = len(config.hidden_units)
        for i, units in enumerate(config.hidden_units):
            last = i == n - 1
            layers.append(SimpleRNN(
                in_size, units, config.activation[0][i], use_bias=config.use_bias[i],
                return_sequences=(not last) or config.return_sequences,
                go_backwards=config.go_backwards[i], generator=gen))
            in_size = units
        self.rnn = nn.ModuleList(layers)
        self.dense: nn.Linear | None = None
        self.dense_activation = config.activation[1]
        if config.dense_units is not None:
            # nn.Linear's own initialisation draws from torch's global generator even when a seed
            # is given; the Keras initialisers below set every value anyway, so its draws are
            # undone by fork_rng. (torch.nn.utils.skip_init would avoid them too, but its meta-
            # device path imports sympy: 0.3-0.45 s of every CLI run, measured.)
            with torch.random.fork_rng(devices=[]):
                self.dense = nn.Linear(in_size, config.dense_units, bias=config.dense_use_bias)
            with torch.no_grad():
                # Keras Dense: glorot_uniform kernel (H, D), zero bias; torch keeps (D, H).
                self.dense.weight.copy_(glorot_uniform((in_size, config.dense_units), gen).T)
                if self.dense.bias is not None:
                    self.dense.bias.zero_()
        self._dense_act = _act.ACTIVATIONS[self.dense_activation]

    @property
    def output_units(self) -> int:
        return self.config.dense_units if self.config.dense_units is not None else self.config.hidden_units[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        for layer in self.rnn:
            x = layer(x)
        if self.dense is not None:
            if x.dim() == 3 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous():
                # A sequence from the step loop is a (N, L, H) view of a time-major (L, N, H)
                # buffer; the Dense acts on each step alike, so it runs on that buffer as it lies
                # (nn.Linear would first copy the view to a contiguous (N, L, H) tensor).
                x = self._dense_act(self.dense(x.transpose(0, 1))).transpose(0, 1)
            else:
                x = self._dense_act(self.dense(x))
        return x

    def _check_input(self, x: torch.Tensor) -> None:
        steps, feats = self.config.input_shape
        if x.dim() != 3 or x.shape[2] != feats or (steps is not None and x.shape[1] != steps) or x.shape[1] == 0:
            raise ValueError(
                f"expected input of shape (batch, {steps if steps is not None else 'time_steps'}, {feats}), "
                f"got {tuple(x.shape)}")
        dtype = self.rnn[0].weight_ih.dtype
        if x.dtype != dtype:
            raise ValueError(f"input dtype {x.dtype} does not match the model's {dtype}; "
                             f"convert it (x.to({dtype})) or use model.predict, which does")

    def hidden_states(self, x: Any) -> list[torch.Tensor]:
        """Every RNN layer's full state sequence ``(N, L, H)``, in processing order, for parity
        reports. ``x``: a tensor as :meth:`forward` takes it, or an array-like as :meth:`predict`
        takes it (see :meth:`as_input`)."""
        if not isinstance(x, torch.Tensor):
            x = self.as_input(x)
        self._check_input(x)
        states = []
        for layer in self.rnn:
            keep = layer.return_sequences
            layer.return_sequences = True
            try:
                seq = layer(x)
            finally:
                layer.return_sequences = keep
            states.append(seq)
            x = seq
        return states

    def use_fused_kernel(self, flag: bool | None) -> "RNNModel":
        """Force torch's fused kernel where it applies (True), the step loop (False), or let each
        layer choose by measurement (None, the default; see :class:`torchrnn.layers.SimpleRNN`)."""
        for layer in self.rnn:
            layer.use_fused = None if flag is None else bool(flag)
        return self

    # ---- Keras-compatible weight access -------------------------------------------------

    def _keras_slots(self) -> list[tuple[str, nn.Parameter, bool]]:
        """(Keras name, torch parameter, stored transposed?) in Keras's get_weights order."""
        slots = []
        for i, layer in enumerate(self.rnn):
            name = "simple_rnn" if i == 0 else f"simple_rnn_{i}"
            # torch multiplies by W^T, Keras by K: both matrices are stored transposed.
            slots.append((f"{name}/kernel", layer.weight_ih, True))
            slots.append((f"{name}/recurrent_kernel", layer.weight_hh, True))
            if layer.bias is not None:
                slots.append((f"{name}/bias", layer.bias, False))
        if self.dense is not None:
            slots.append(("dense/kernel", self.dense.weight, True))
            if self.dense.bias is not None:
                slots.append(("dense/bias", self.dense.bias, False))
        return slots

    def weight_names(self) -> list[str]:
        return [name for name, _, _ in self._keras_slots()]

    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies in Keras order and shapes: kernel (F, H), recurrent_kernel (H, H), bias (H,), ..."""
        out = []
        for _, p, transposed in self._keras_slots():
            t = p.detach().T if transposed else p.detach()
            out.append(t.cpu().numpy().copy())
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load a Keras-order list (as ``keras_model.get_weights()`` gives), checking every entry."""
        slots = self._keras_slots()
        if len(weights) != len(slots):
            raise ValueError(
                f"set_weights expected {len(slots)} arrays ({', '.join(n for n, _, _ in slots)}), got {len(weights)}")
        staged = []
        for i, ((name, p, transposed), w) in enumerate(zip(slots, weights)):
            arr = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
            want = tuple(p.shape[::-1]) if transposed else tuple(p.shape)
            if arr.shape != want:
                raise ValueError(f"weight {i} ({name}) should have Keras shape {want}, got {arr.shape}")
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise ValueError(f"weight {i} ({name}) holds non-finite or non-numeric values")
            t = torch.as_tensor(np.ascontiguousarray(arr), dtype=p.dtype, device=p.device)
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"weight {i} ({name}) holds values beyond the range of {p.dtype} "
                                 f"(largest |value| {float(np.max(np.abs(arr))):g})")
            staged.append((p, t.T if transposed else t))
        with torch.no_grad():
            for p, t in staged:
                p.copy_(t)

    def count_params(self) -> int:
        """Trainable parameters, counted as Keras's ``model.count_params()`` does."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---- NumPy convenience ---------------------------------------------------------------

    def as_input(self, x: Any, name: str = "input") -> torch.Tensor:
        """Validate an array-like and return it as a ``(N, L, F)`` tensor on the model's device/dtype.

        A 2-D ``(N, L)`` array is read as ``(N, L, 1)`` only when the model has one feature; any
        other rank or a feature count that does not fit is refused, never broadcast. An array
        already in the model's dtype (float32 NumPy for a float32 model on the CPU) is not copied:
        the tensor shares its memory. Other input is cast once, then checked for values the
        model's dtype cannot hold (float64 1e39 is infinite in float32). ``name`` is what the
        messages call it (``fit`` and ``predict`` say ``X``).
        """
        from .train import _cast_or_refuse, _numeric_tensor

        p = next(self.parameters())
        arr = _numeric_tensor(x, name)
        steps, feats = self.config.input_shape
        want = f"(batch, {steps if steps is not None else 'time_steps'}, {feats})"
        given = tuple(arr.shape)
        if arr.dim() == 2 and feats == 1:
            arr = arr.unsqueeze(-1)
        elif arr.dim() != 3:
            hint = (" (a 2-D (batch, time_steps) array is accepted only for a one-feature model)"
                    if arr.dim() == 2 else "")
            raise ValueError(f"expected {name} of shape {want}, got {tuple(arr.shape)}{hint}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {given}); need at least one sequence")
        out = _cast_or_refuse(arr, name, p.device, p.dtype)
        try:
            self._check_input(out)
        except ValueError as e:
            if out.dim() == 3 and len(given) == 2:
                raise ValueError(f"{e} (read from a 2-D array of shape {given} as (batch, time_steps, 1))") from None
            raise
        return out

    def predict_batch_size(self, shape: Sequence[int]) -> int:
        """How many sequences :meth:`predict` runs at once when not told, for input of ``shape``.

        As many as keep one step's states within ``PREDICT_ROW_BYTES`` and all the states the
        chunk holds within ``PREDICT_CHUNK_BYTES``: every step of a layer that returns its
        sequence (or runs the fused kernel), two steps of one that returns only its last state.
        At least 1; all of them when they fit.
        """
        n, steps = int(shape[0]), int(shape[1])
        p = self.rnn[0].weight_ih
        itemsize = p.element_size()
        row = max(layer.units for layer in self.rnn) * itemsize
        kept = sum(layer.units * (steps if layer.return_sequences or layer.uses_fused(p.device) else min(steps, 2))
                   for layer in self.rnn) * itemsize
        return max(1, min(n, PREDICT_ROW_BYTES // row, PREDICT_CHUNK_BYTES // kept))

    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """NumPy in (float64 welcome), NumPy out: ``(N, D)``, or ``(N, L, D)`` with return_sequences.

        The input is validated by :meth:`as_input` (a float32 array is not copied), then run in
        eval mode without gradients. ``batch_size=None`` (the default) runs it in chunks of
        :meth:`predict_batch_size` sequences: one step's states of a chunk within 512 KB and
        all of its state buffers within 32 MB (``PREDICT_ROW_BYTES``, ``PREDICT_CHUNK_BYTES``),
        e.g. 2,048 windows of (120, 8) through 64 units, 43,690 windows of (12, 1) through 3, or
        1,092 windows of (120, 8) with ``return_sequences``. The states then stay in the CPU's
        caches and the buffers are reused from chunk to chunk; all 10,000 such windows in one
        batch took 1.2-1.5x as long here (1 and 2 threads) and, with ``return_sequences``, a
        300 MB state buffer. An explicit ``batch_size`` overrides the choice; every batch size
        gives the same outputs up to float rounding (a few ulps).
        """
        from .train import _positive_int, _predict_checked  # train knows nothing of this model

        if batch_size is not None:
            batch_size = _positive_int(batch_size, "batch_size")
        # as_input has validated and converted x: the runner need not look at it again.
        out = _predict_checked(self, self.as_input(x), batch_size)
        if not np.all(np.isfinite(out)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
            raise ValueError(f"the model's output is not finite ({float(out[bad])!r} at index {bad}): an activation "
                             f"overflowed (e.g. 'exponential' fed back into itself) or the weights are too large")
        return out


def create_rnn_from_config(config: RNNConfig | dict) -> RNNModel:
    if isinstance(config, dict):
        config = RNNConfig(**config)
    return RNNModel(config)


def create_rnn(hidden_units: int | Sequence[int], dense_units: int | None, input_shape: Sequence[int | None],
               activation: Sequence[Any] = ("tanh", "tanh"), *, use_bias: bool | Sequence[bool] = True,
               dense_use_bias: bool = True, return_sequences: bool = False,
               go_backwards: bool | Sequence[bool] = False, seed: int | None = None) -> RNNModel:
    """The tutorial's ``create_RNN(hidden_units, dense_units, input_shape, activation)`` in torch.

    ``hidden_units`` may be a list (stacked SimpleRNN layers); ``activation = (rnn, dense)`` where
    ``rnn`` may be one name per layer; ``use_bias`` and ``go_backwards`` may be per layer;
    ``dense_units=None`` leaves the Dense out (then ``activation`` may be the RNN's alone, e.g.
    ``"tanh"``); ``seed`` makes the Keras initialisers repeatable.
    """
    return RNNModel(RNNConfig(
        hidden_units=tuple(hidden_units) if isinstance(hidden_units, (list, tuple)) else hidden_units,
        dense_units=dense_units, input_shape=tuple(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape,
        activation=tuple(activation) if isinstance(activation, list) else activation,
        use_bias=use_bias, dense_use_bias=dense_use_bias, return_sequences=return_sequences,
        go_backwards=go_backwards, seed=seed))
