"""Keras SimpleRNN models into torchrnn: one explicit mapping table, checked shape by shape.

    from parity import load_keras, load_keras_weights, from_keras
    model = load_keras("model.keras")           # .keras, or a full-model .h5 (Keras 2 or 3)
    load_keras_weights(model, "w.weights.h5")   # .weights.h5, or a Keras 2 save_weights .h5
    model = from_keras(keras_model)             # a live Keras model (Sequential or a chain)

Reading files (no TensorFlow, no Keras) lives in :mod:`parity.keras_files`; this module decides
what torchrnn can represent and moves the arrays with :data:`MAPPING`. Loading is strict: an
unknown, missing or misshapen weight is a :class:`~parity.keras_files.KerasFileError` naming
the dataset path and both shapes, never a warning.

What torchrnn represents: ``[InputLayer] SimpleRNN+ [Dense]``, with any number of inference-only
layers (:data:`INFERENCE_IDENTITY`: ``Dropout`` and its kin) anywhere in between. A Dropout is the
identity at inference (Keras applies it only when ``training=True``), so it is accepted and
left out. SimpleRNN's ``dropout``/``recurrent_dropout`` are training-only for the same reason
and ``unroll`` changes how Keras computes, not what; ``stateful``, ``return_state`` and Keras 2's
``time_major`` change the outputs and are refused.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from torchrnn import RNNConfig, RNNModel, create_rnn
from torchrnn.activations import canonical_name

from .keras_files import (FORMATS, KerasFileError, KerasModelSpec, KerasWeight, LayerSpec, keras3_group_names,
                          read_keras_file, spec_from_config)

__all__ = [
    "INFERENCE_IDENTITY", "MAPPING", "WeightRule", "from_keras", "load_keras", "load_keras_weights",
    "model_from_spec", "narrowed_weights", "spec_from_keras_model", "spec_to_config",
]


@dataclass(frozen=True)
class WeightRule:
    """One Keras weight and the torch parameter it becomes."""

    keras_name: str        # as legacy .h5 files and live models name it (``kernel``; ``:0`` stripped)
    keras3_name: str       # its place in a Keras 3 weight store, relative to the layer's group
    torch_name: str        # the RNNModel parameter; ``{i}`` is the RNN layer's index
    keras_shape: str       # the Keras shape, for messages: F features in, H units, D dense units
    transpose: bool        # torch stores the transpose of the Keras array
    needs_bias: bool = False   # present only when the layer has use_bias=True


# THE table. Keras computes ``x @ K`` with K stored (in, out); torch's RNN and Linear compute
# ``x @ W.T`` with W stored (out, in). Hence every matrix is transposed on the way in, and
# vectors are copied as they are.
MAPPING: dict[str, tuple[WeightRule, ...]] = {
    "SimpleRNN": (
        # Keras: x_t @ kernel, kernel (F, H).  torch: x_t @ weight_ih.T, weight_ih (H, F).
        WeightRule("kernel", "cell/vars/0", "rnn.{i}.weight_ih", "(F, H)", transpose=True),
        # Keras: h_{t-1} @ recurrent_kernel (H, H).  torch: h_{t-1} @ weight_hh.T. The matrix is
        # square, so a forgotten transpose passes every shape check; only values reveal it
        # (handed case K2 with tanh: -0.41229114 instead of -0.3659179).
        WeightRule("recurrent_kernel", "cell/vars/1", "rnn.{i}.weight_hh", "(H, H)", transpose=True),
        # Keras has ONE bias per layer. torchrnn keeps one trainable bias too (nn.RNN's second
        # bias is a zero buffer there), so it is copied once, not into two torch biases.
        WeightRule("bias", "cell/vars/2", "rnn.{i}.bias", "(H,)", transpose=False, needs_bias=True),
    ),
    "Dense": (
        # Keras: h @ kernel, kernel (H, D).  nn.Linear: h @ weight.T, weight (D, H).
        WeightRule("kernel", "vars/0", "dense.weight", "(H, D)", transpose=True),
        WeightRule("bias", "vars/1", "dense.bias", "(D,)", transpose=False, needs_bias=True),
    ),
}

#: Layers that compute the identity at inference; accepted and left out of the torch model.
INFERENCE_IDENTITY = frozenset({
    "Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
})
_SUPPORTED = ("InputLayer", "SimpleRNN", "Dense", *sorted(INFERENCE_IDENTITY))
_FLOAT_DTYPES = ("float32", "float64")


# ---------------------------------------------------------------------------------------------
# Architecture: spec -> create_rnn arguments


@dataclass
class _Plan:
    config: dict                      # create_rnn keyword arguments
    rnn: list[LayerSpec]
    dense: LayerSpec | None


def _article(word: str) -> str:
    """'an' before a vowel sound as Keras class names are read aloud (an LSTM, an Activation, a GRU)."""
    return "an" if word[:1] in "AEIOU" or word in {"LSTM", "LSTMCell", "RNN", "SimpleRNNCell"} else "a"


def _where(layer: LayerSpec, spec: KerasModelSpec) -> str:
    return f"layer {layer.name!r} ({layer.class_name}) in {spec.source}"


def _activation(value: Any, layer: LayerSpec, spec: KerasModelSpec) -> str:
    """An activation as configs serialize it: a name, ``None``, or a dict
    ``{"class_name": "function", "config": "relu", ...}`` (Keras 3 for non-builtin modules,
    tf-keras for functions)."""
    name = value
    if isinstance(value, dict):
        registered = value.get("registered_name") or ""
        if value.get("class_name") == "function" and isinstance(value.get("config"), str) and ">" not in registered:
            name = value["config"]
        else:
            shown = value.get("registered_name") or value.get("class_name")
            raise KerasFileError(f"{_where(layer, spec)}: activation {shown!r} is a custom or layer activation "
                                 f"({json.dumps(value)[:160]}); torchrnn supports Keras's named activations")
    try:
        name = canonical_name(name)
    except ValueError as e:
        raise KerasFileError(f"{_where(layer, spec)}: {e}") from e
    if name == "hard_sigmoid" and (spec.keras_major or 2) < 3:
        # Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3 (and torchrnn): clip(x / 6 + 0.5, 0, 1).
        raise KerasFileError(f"{_where(layer, spec)}: activation 'hard_sigmoid' was saved by Keras "
                             f"{spec.keras_version or '2'}, where it is clip(0.2*x + 0.5); torchrnn follows "
                             f"Keras 3's clip(x/6 + 0.5), so the outputs would differ")
    return name


def _check_dtype(layer: LayerSpec, spec: KerasModelSpec) -> None:
    dtype = layer.config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype is not None and dtype not in _FLOAT_DTYPES:
        raise KerasFileError(f"{_where(layer, spec)}: dtype policy {dtype!r}; torchrnn computes in float32, "
                             f"so only float32 models convert exactly (float64 ones are rounded to float32)")


def _units(layer: LayerSpec, spec: KerasModelSpec) -> int:
    units = layer.config.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise KerasFileError(f"{_where(layer, spec)}: config has units={units!r}; expected a positive integer")
    return units


def _plan(spec: KerasModelSpec) -> _Plan:
    if not spec.has_architecture:
        raise KerasFileError(f"{spec.source}: is a weights-only file ({FORMATS[spec.format]}) and carries no "
                             f"architecture; build the model with create_rnn(...) and call "
                             f"load_keras_weights(model, path)")
    rnn: list[LayerSpec] = []
    dense: LayerSpec | None = None
    for layer in spec.layers:
        cls = layer.class_name
        if cls == "InputLayer" or cls in INFERENCE_IDENTITY:
            continue
        if cls not in ("SimpleRNN", "Dense"):
            raise KerasFileError(f"{_where(layer, spec)}: torchrnn cannot represent {_article(cls)} {cls} layer; "
                                 f"supported layers are {', '.join(_SUPPORTED)}")
        _check_dtype(layer, spec)
        if dense is not None:
            raise KerasFileError(f"{_where(layer, spec)} follows Dense {dense.name!r}; torchrnn represents "
                                 f"SimpleRNN layers with at most one Dense on top")
        if cls == "Dense":
            if not rnn:
                raise KerasFileError(f"{_where(layer, spec)} comes before any SimpleRNN; torchrnn represents "
                                     f"SimpleRNN layers with at most one Dense on top")
            if layer.config.get("quantization_config"):
                raise KerasFileError(f"{_where(layer, spec)} is quantized; torchrnn holds float32 weights")
            dense = layer
            continue
        refused = [f"{k}={layer.config[k]!r}" for k in ("stateful", "return_state", "time_major")
                   if layer.config.get(k)]
        if refused:
            raise KerasFileError(f"{_where(layer, spec)} has {', '.join(refused)}; torchrnn's SimpleRNN starts "
                                 f"every batch from h0 = 0 and returns only its output, batch-major")
        if rnn and not rnn[-1].config.get("return_sequences", False):
            raise KerasFileError(f"{_where(layer, spec)} follows {rnn[-1].name!r}, which has "
                                 f"return_sequences=False; a stacked SimpleRNN needs the whole sequence "
                                 f"(Keras itself refuses this model)")
        rnn.append(layer)
    if not rnn:
        raise KerasFileError(f"{spec.source}: no SimpleRNN layer found (layers: "
                             f"{[(layer.name, layer.class_name) for layer in spec.layers]})")
    shape = spec.input_shape
    if shape is not None and len(shape) != 2:
        raise KerasFileError(f"{spec.source}: the model's input shape is {(None, *shape)}; a SimpleRNN model "
                             f"takes (batch, time_steps, features)")
    steps, feats = shape if shape is not None else (None, None)
    if feats is None:       # a config without an input shape: the first kernel says it
        kernel = rnn[0].weights[0].array if rnn[0].weights else None
        if kernel is None or kernel.ndim != 2:
            raise KerasFileError(f"{spec.source}: neither the config nor the weights of {rnn[0].name!r} give the "
                                 f"number of input features (is the model built?)")
        feats = int(kernel.shape[0])
    config = {
        "hidden_units": [_units(layer, spec) for layer in rnn],
        "dense_units": _units(dense, spec) if dense is not None else None,
        "input_shape": (steps, feats),
        "activation": ([_activation(layer.config.get("activation", "tanh"), layer, spec) for layer in rnn],
                       _activation(dense.config.get("activation"), dense, spec) if dense is not None else "linear"),
        "use_bias": [bool(layer.config.get("use_bias", True)) for layer in rnn],
        "dense_use_bias": bool(dense.config.get("use_bias", True)) if dense is not None else True,
        "return_sequences": bool(rnn[-1].config.get("return_sequences", False)),
        "go_backwards": [bool(layer.config.get("go_backwards", False)) for layer in rnn],
    }
    return _Plan(config, rnn, dense)


def spec_to_config(spec: KerasModelSpec) -> dict:
    """The ``create_rnn`` keyword arguments that rebuild a saved model (``create_rnn(**cfg)``)."""
    return _plan(spec).config


# ---------------------------------------------------------------------------------------------
# Weights: the table applied, strictly


def _rules(kind: str, has_bias: bool) -> list[WeightRule]:
    return [r for r in MAPPING[kind] if has_bias or not r.needs_bias]


def _assign(model: RNNModel, pairs: Sequence[tuple[str, int, LayerSpec]], spec: KerasModelSpec) -> None:
    """Copy each Keras layer's arrays into torch layer (kind, index), or raise before touching any."""
    params = dict(model.named_parameters())
    staged: dict[str, torch.Tensor] = {}
    keras3 = spec.format in ("keras", "weights_h5")
    for kind, i, layer in pairs:
        module = model.rnn[i] if kind == "SimpleRNN" else model.dense
        rules = _rules(kind, module.bias is not None)
        got = layer.weights
        where = f"layer {layer.name!r} ({layer.class_name or 'class not recorded'}) in {spec.source}"
        if len(got) != len(rules):
            raise KerasFileError(
                f"{where}: has {len(got)} arrays {[w.path for w in got]} but the torch {kind} layer {i} "
                f"expects {len(rules)} ({', '.join(r.keras_name for r in rules)}; "
                f"use_bias={module.bias is not None})")
        for rule, w in zip(rules, got):
            want_name = rule.keras3_name if keras3 else rule.keras_name
            if w.name != want_name:
                raise KerasFileError(f"{where}: dataset {w.path!r} is {w.name!r} where the table expects "
                                     f"{want_name!r} ({kind} {rule.keras_name})")
            tname = rule.torch_name.format(i=i)
            p = params[tname]
            want = tuple(p.shape[::-1]) if rule.transpose else tuple(p.shape)
            arr = w.array
            if arr.shape != want:
                raise KerasFileError(f"{where}: dataset {w.path!r} has shape {arr.shape} but the torch model "
                                     f"needs {want} for {kind} {rule.keras_name} {rule.keras_shape} "
                                     f"(-> {tname} {tuple(p.shape)})")
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
                raise KerasFileError(f"{where}: dataset {w.path!r} holds {arr.dtype} values that are not all "
                                     f"finite floats")
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(dtype=p.dtype, device=p.device)
            if not bool(torch.isfinite(t).all()):
                # finite in the file's float64, inf once cast: the finite check above cannot see it
                bad = tuple(int(j) for j in torch.nonzero(~torch.isfinite(t.cpu()))[0])
                raise KerasFileError(f"{where}: dataset {w.path!r} holds {float(arr[bad])!r} at index {bad}, beyond "
                                     f"the range of the model's {p.dtype} (largest {torch.finfo(p.dtype).max:.6g})")
            staged[tname] = t.T if rule.transpose else t
    missing = sorted(set(params) - set(staged))
    if missing:   # a torch layer no Keras layer filled
        raise KerasFileError(f"{spec.source}: no weights for torch parameters {missing}")
    with torch.no_grad():
        for name, t in staged.items():
            params[name].copy_(t)


def _torch_layers(model: RNNModel) -> list[tuple[str, int]]:
    layers = [("SimpleRNN", i) for i in range(len(model.rnn))]
    if model.dense is not None:
        layers.append(("Dense", 0))
    return layers


def _pair_by_order(model: RNNModel, spec: KerasModelSpec) -> list[tuple[str, int, LayerSpec]]:
    """Layers with weights, in model order, against the torch layers (what Keras's own legacy
    loader does); a layer whose class is known must be the expected class."""
    want = _torch_layers(model)
    have = spec.weighted_layers()
    if len(have) != len(want):
        raise KerasFileError(
            f"{spec.source}: has {len(have)} layers with weights "
            f"{[(layer.name, layer.class_name) for layer in have]} but the torch model has {len(want)} "
            f"({', '.join(k for k, _ in want)})")
    for (kind, i), layer in zip(want, have):
        if layer.class_name is not None and layer.class_name != kind:
            raise KerasFileError(f"{spec.source}: layer {layer.name!r} is a {layer.class_name} where the torch "
                                 f"model has {kind} layer {i}; torchrnn cannot represent {_article(layer.class_name)} {layer.class_name}")
    return [(kind, i, layer) for (kind, i), layer in zip(want, have)]


def _pair_by_group(model: RNNModel, spec: KerasModelSpec) -> list[tuple[str, int, LayerSpec]]:
    """A Keras 3 .weights.h5 is matched the way Keras loads it: by the class-based group name
    each layer of the equivalent Keras model would get (simple_rnn, simple_rnn_1, ..., dense)."""
    want = _torch_layers(model)
    groups = [f"layers/{g}" for g in keras3_group_names(k for k, _ in want)]
    by_group = {layer.group: layer for layer in spec.weighted_layers()}
    pairs = []
    for (kind, i), g in zip(want, groups):
        if g not in by_group:
            raise KerasFileError(f"{spec.source}: missing weights for torch {kind} layer {i}: no group {g!r} "
                                 f"(groups with weights: {sorted(by_group)})")
        pairs.append((kind, i, by_group.pop(g)))
    if by_group:
        raise KerasFileError(f"{spec.source}: unknown weights in groups {sorted(by_group)}: the torch model has "
                             f"{', '.join(k for k, _ in want)} (expected groups {groups})")
    return pairs


def model_from_spec(spec: KerasModelSpec) -> RNNModel:
    """Build the torch model a full-model spec describes and load its weights."""
    plan = _plan(spec)
    try:
        model = create_rnn(**plan.config)
    except ValueError as e:
        raise KerasFileError(f"{spec.source}: cannot build torchrnn model {plan.config}: {e}") from e
    pairs = [("SimpleRNN", i, layer) for i, layer in enumerate(plan.rnn)]
    if plan.dense is not None:
        pairs.append(("Dense", 0, plan.dense))
    weighted = {id(layer) for layer in spec.weighted_layers()}
    if weighted - {id(layer) for _, _, layer in pairs}:    # cannot happen with _plan's checks; be strict
        raise KerasFileError(f"{spec.source}: weights of layers outside the torch model")
    _assign(model, pairs, spec)
    return model.eval()


def narrowed_weights(spec: KerasModelSpec, model: RNNModel) -> list[KerasWeight]:
    """The weights of ``spec`` stored in a wider float than ``model`` holds (a float64 Keras model
    in the float32 torch model): loading rounds them, so comparisons are at float32 precision."""
    size = next(model.parameters()).element_size()
    return [w for layer in spec.weighted_layers() for w in layer.weights if w.array.dtype.itemsize > size]


def load_keras(path: str | os.PathLike) -> RNNModel:
    """A torch model from a saved Keras model: ``.keras`` or a full-model ``.h5`` (Keras 2 or 3).

    Reads with h5py/zipfile alone; the architecture comes from the file's config.
    """
    return model_from_spec(read_keras_file(path))


def load_keras_weights(model: RNNModel, path: str | os.PathLike | KerasModelSpec) -> RNNModel:
    """Fill an existing torch model from a Keras weights file (``.weights.h5``, a Keras 2
    ``save_weights`` ``.h5``, or the weights of a full-model file). Returns the model.

    Nothing is copied unless every array fits: count, name and shape are checked first.
    """
    spec = path if isinstance(path, KerasModelSpec) else read_keras_file(path)
    if not isinstance(model, RNNModel):
        raise TypeError(f"load_keras_weights expects a torchrnn model (create_rnn), got {type(model).__name__}")
    if spec.format == "weights_h5":
        pairs = _pair_by_group(model, spec)
    else:
        if spec.has_architecture:
            check_same_architecture(model, spec)  # LSTM & co. by name, then a model built otherwise
        pairs = _pair_by_order(model, spec)
    _assign(model, pairs, spec)
    return model


# What weights cannot tell: the same arrays give other numbers under another activation,
# direction or sequence length, so a full-model file's own settings must be the model's.
_ARCHITECTURE_FIELDS = ("hidden_units", "dense_units", "activation", "use_bias", "dense_use_bias",
                        "return_sequences", "go_backwards")


def check_same_architecture(model: RNNModel, spec: KerasModelSpec) -> None:
    """Raise :class:`KerasFileError` unless the full model ``spec`` describes is built as ``model``
    is, naming each setting that differs (weights' shapes are checked where they are copied)."""
    file_config = _plan(spec).config
    try:
        theirs = RNNConfig(**file_config)
    except ValueError as e:
        raise KerasFileError(f"{spec.source}: cannot build torchrnn model {file_config}: {e}") from e
    mine = model.config
    diffs = [(f, getattr(theirs, f), getattr(mine, f)) for f in _ARCHITECTURE_FIELDS
             if getattr(theirs, f) != getattr(mine, f)]
    if theirs.features != mine.features:
        diffs.append(("input_shape[1] (features)", theirs.features, mine.features))
    if None not in (theirs.time_steps, mine.time_steps) and theirs.time_steps != mine.time_steps:
        diffs.append(("input_shape[0] (time_steps)", theirs.time_steps, mine.time_steps))
    if diffs:
        said = "; ".join(f"{f}: file {a!r}, model {b!r}" for f, a, b in diffs)
        raise KerasFileError(f"{spec.source} is a full model built otherwise than the torch model ({said}): "
                             f"its weights would compute other numbers; load it with parity.load_keras(path), "
                             f"which takes the file's architecture")


# ---------------------------------------------------------------------------------------------
# Live Keras models


class _LiveWeights:
    def __init__(self, keras_model: Any):
        self.model = keras_model

    def layer_weights(self, name: str) -> list[KerasWeight]:
        layer = self.model.get_layer(name)
        out = []
        for v, arr in zip(layer.weights, layer.get_weights()):
            path = getattr(v, "path", None) or v.name
            short = v.name.rsplit("/", 1)[-1].split(":")[0]
            out.append(KerasWeight(path, short, np.asarray(arr)))
        return out

    def group_path(self, key: str) -> str:
        return key

    def unclaimed_layer_groups(self) -> list[str]:
        return []


def spec_from_keras_model(keras_model: Any) -> KerasModelSpec:
    """Describe a live Keras model (Keras 3 or tf-keras) as a spec, through its own JSON config."""
    if not hasattr(keras_model, "to_json") or not hasattr(keras_model, "get_layer"):
        raise TypeError(f"expected a Keras model (Sequential or functional), got {type(keras_model).__name__}")
    package = type(keras_model).__module__.split(".")[0]
    version = getattr(sys.modules.get(package), "__version__", None)
    source = f"<live {type(keras_model).__name__} {getattr(keras_model, 'name', '?')!r}>"
    if not keras_model.weights and keras_model.layers:
        raise KerasFileError(f"{source}: the model is not built (it has no weights yet); call it on data or "
                             f"build it with an input shape first")
    try:
        config = json.loads(keras_model.to_json())
    except (OSError, TypeError, ValueError) as e:
        # Keras serializes a lambda or a custom function by its source code: typed at a prompt,
        # it has none, and to_json raises "could not get source code"
        raise KerasFileError(f"{source}: Keras cannot describe the model (to_json: {e}); a custom activation "
                             f"(a lambda or a function of your own) cannot be converted: torchrnn supports "
                             f"Keras's named activations") from e
    return spec_from_config(config, source=source, keras_version=version, fmt="live",
                            weights=_LiveWeights(keras_model))


def from_keras(keras_model: Any) -> RNNModel:
    """The torch twin of a live Keras model (Sequential, or a functional chain of the same layers)."""
    return model_from_spec(spec_from_keras_model(keras_model))
