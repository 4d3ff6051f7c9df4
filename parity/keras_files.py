"""Read saved Keras models with h5py, zipfile and json alone (TensorFlow and Keras never imported).

:func:`read_keras_file` turns any of the files below into a neutral :class:`KerasModelSpec`: the
layers in the order data flows through them, each with its class, name, config (``{}`` when the
file carries no architecture) and its arrays, each named by the HDF5 dataset it came from.
Which layers torchrnn can represent, and how the arrays map onto torch, is decided in
:mod:`parity.convert`; this module only reads, and refuses files it cannot read.

What the files look like inside (Keras 3.15 and tf-keras 2.21, checked on real files):

``.keras`` (``format="keras"``; Keras 3 ``model.save('m.keras')``, also tf-keras 2.13+)
    A zip holding ``metadata.json`` (``keras_version``), ``config.json`` (the architecture) and
    ``model.weights.h5``. In the weights file every layer has a group named after its CLASS, not
    its name: ``to_snake_case(class)`` plus ``_1``, ``_2``, ... per repeat, counted in
    ``model.layers`` order, so a model's third SimpleRNN is ``layers/simple_rnn_2`` whatever it
    is called. Variables are numbered datasets: a SimpleRNN keeps kernel, recurrent_kernel, bias
    in ``layers/simple_rnn/cell/vars/0, 1, 2``; a Dense in ``layers/dense/vars/0, 1``.
    ``optimizer/vars/*`` (present once the model was trained) is optimizer state and ignored.
    The zip is read in memory; nothing is extracted.

``.weights.h5`` (``format="weights_h5"``; Keras 3 ``save_weights``, which insists on that suffix)
    The same HDF5 layout as ``model.weights.h5`` without any config. The group names are the
    only index, so layers are listed by class then creation number, numerically
    (``simple_rnn_9`` before ``simple_rnn_10``); the order ACROSS classes is not recorded.

legacy ``.h5`` full model (``format="legacy_h5"``; Keras 2 ``model.save('m.h5')``, Keras 3 too)
    Root attributes ``model_config`` (JSON), ``keras_version``, ``backend``; group
    ``model_weights`` with attribute ``layer_names`` (layers in model order, by layer NAME), each
    layer group with attribute ``weight_names`` giving dataset paths relative to it. Keras 2
    writes ``simple_rnn_1/simple_rnn_cell/kernel:0``; Keras 3 writes
    ``sequential/simple_rnn_1/simple_rnn_cell/kernel`` (no ``:0``, a model-name level for a
    Sequential). Only these indexes are followed, never a guessed path.

legacy ``.h5`` weights (``format="legacy_weights_h5"``; Keras 2 ``save_weights('w.h5')``)
    The ``model_weights`` group's contents at the root: ``layer_names`` and ``keras_version``
    attributes, then the same per-layer groups.

Every failure is a :class:`KerasFileError` (a ``ValueError``) naming the file, what was
expected and what was found.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import h5py
import numpy as np

__all__ = [
    "FORMATS", "KerasFileError", "KerasModelSpec", "KerasWeight", "LayerSpec",
    "keras3_group_names", "read_keras_file", "spec_from_config",
]

#: format name -> what it is (also the vocabulary of ``KerasModelSpec.format``)
FORMATS = {
    "keras": ".keras zip archive (config.json + model.weights.h5)",
    "legacy_h5": "legacy HDF5 full model (model_config + model_weights)",
    "weights_h5": "Keras 3 .weights.h5 weights-only file",
    "legacy_weights_h5": "legacy HDF5 weights-only file (Keras 2 save_weights)",
    "live": "a live Keras model object",
}
FULL_MODEL_FORMATS = ("keras", "legacy_h5", "live")

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class KerasFileError(ValueError):
    """A Keras file (or model) that cannot be read or represented; the message says why."""


class KerasWeight(NamedTuple):
    """One array and where it came from.

    ``path``: the HDF5 dataset path inside the file (for a live model, the variable's path).
    ``name``: the weight's name as the file records it, relative to its layer: ``kernel``,
    ``recurrent_kernel``, ``bias`` in legacy files (``:0`` stripped), ``cell/vars/0`` etc. in
    Keras 3 files, which number their variables instead of naming them.
    """

    path: str
    name: str
    array: np.ndarray


@dataclass
class LayerSpec:
    class_name: str | None          # None when a weights-only file does not say
    name: str                       # the layer's name (weights-only Keras 3: its group name)
    config: dict = field(default_factory=dict)
    weights: list[KerasWeight] = field(default_factory=list)
    group: str | None = None        # the HDF5 group holding this layer's weights, if any


@dataclass
class KerasModelSpec:
    """A saved Keras model, described without Keras."""

    layers: list[LayerSpec]
    input_shape: tuple[int | None, int | None] | None   # (time_steps, features) from the config
    source: str                                          # the file path (or a live model's repr)
    keras_version: str | None
    format: str                                          # a key of FORMATS
    backend: str | None = None
    model_class: str | None = None                       # Sequential / Functional / None

    @property
    def has_architecture(self) -> bool:
        return self.format in FULL_MODEL_FORMATS

    @property
    def keras_major(self) -> int | None:
        m = re.match(r"\s*(\d+)", self.keras_version or "")
        return int(m.group(1)) if m else None

    def weighted_layers(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.weights]


# ---------------------------------------------------------------------------------------------
# Entry point


def read_keras_file(path: str | os.PathLike) -> KerasModelSpec:
    """Read any supported Keras file into a :class:`KerasModelSpec`; the format is sniffed from
    the file's first bytes, not from its suffix."""
    source = os.fspath(path)
    if os.path.isdir(source):
        found = sorted(os.listdir(source))[:8]
        hint = (" (a TensorFlow SavedModel directory is not supported: load it in Keras and "
                "save it with model.save('model.keras'))" if "saved_model.pb" in found else "")
        raise KerasFileError(f"{source}: is a directory, expected a .keras, .h5 or .weights.h5 file; "
                             f"found entries {found}{hint}")
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KerasFileError(f"{source}: cannot be read: {e.strerror or e}") from e
    if data.startswith(_ZIP_MAGIC) or (data[:4] == b"PK\x05\x06"):
        return _read_keras_zip(data, source)
    if _is_hdf5(data):
        h5 = _open_h5(io.BytesIO(data), source, "file")
        with h5:
            return _read_h5(h5, source)
    raise KerasFileError(
        f"{source}: unknown format: expected a Keras file (a .keras zip archive, which starts with "
        f"{_ZIP_MAGIC!r}, or an HDF5 .h5 file, which starts with {_HDF5_MAGIC!r}); found "
        f"{_describe_bytes(data)}")


def _is_hdf5(data: bytes) -> bool:
    # The superblock sits at 0, or after a user block of 512, 1024, 2048, ... bytes.
    offset = 0
    while offset + 8 <= len(data):
        if data[offset:offset + 8] == _HDF5_MAGIC:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _describe_bytes(data: bytes) -> str:
    if not data:
        return "an empty file"
    head = data[:40]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"text starting with {text!r}"
    return f"{len(data)} bytes starting with {head[:16]!r}"


def _open_h5(fileobj: Any, source: str, what: str) -> h5py.File:
    try:
        return h5py.File(fileobj, "r")
    except (OSError, ValueError) as e:
        raise KerasFileError(f"{source}: the {what} looks like HDF5 but cannot be opened "
                             f"(truncated or damaged?): {e}") from e


# ---------------------------------------------------------------------------------------------
# .keras zip


def _read_keras_zip(data: bytes, source: str) -> KerasModelSpec:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise KerasFileError(f"{source}: expected a .keras zip archive, found a zip that cannot be read "
                             f"(truncated or damaged?): {e}") from e
    with zf:
        if "config.json" not in members:
            raise KerasFileError(f"{source}: expected a .keras archive with config.json, metadata.json and "
                                 f"model.weights.h5; the zip holds {sorted(members)[:10]}")
        if "model.weights.h5" not in members:
            extra = (" (model.weights.npz, Keras's numpy weight store, is not supported; save with the "
                     "default h5 weights)" if "model.weights.npz" in members else "")
            raise KerasFileError(f"{source}: expected model.weights.h5 in the .keras archive (the weights); "
                                 f"the zip holds {sorted(members)}{extra}")
        config = _read_zip_json(zf, "config.json", source)
        metadata = _read_zip_json(zf, "metadata.json", source) if "metadata.json" in members else {}
        weights_bytes = _read_zip_member(zf, "model.weights.h5", source)
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasFileError(f"{source}: config.json should be a serialized Keras model "
                             f"(an object with class_name and config); found {str(config)[:120]!r}")
    if not _is_hdf5(weights_bytes):
        raise KerasFileError(f"{source}: model.weights.h5 in the archive is not HDF5; found "
                             f"{_describe_bytes(weights_bytes)}")
    h5 = _open_h5(io.BytesIO(weights_bytes), source, "model.weights.h5 in the archive")
    with h5:
        if "layers" not in h5:
            raise KerasFileError(f"{source}: model.weights.h5 has no 'layers' group (no layer weights); "
                                 f"found {sorted(h5.keys())}")
        return spec_from_config(config, source=source, keras_version=metadata.get("keras_version"),
                                fmt="keras", weights=_Keras3Weights(h5, source, "model.weights.h5:"))


def _read_zip_member(zf: zipfile.ZipFile, name: str, source: str) -> bytes:
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:   # CRC errors, truncation
        raise KerasFileError(f"{source}: {name} in the .keras archive cannot be read "
                             f"(truncated or damaged?): {e}") from e


def _read_zip_json(zf: zipfile.ZipFile, name: str, source: str) -> Any:
    raw = _read_zip_member(zf, name, source)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KerasFileError(f"{source}: {name} in the .keras archive should be JSON; "
                             f"it does not parse ({e})") from e


# ---------------------------------------------------------------------------------------------
# Keras 3 weight stores (model.weights.h5 inside a .keras, and .weights.h5)


def _snake_case(class_name: str) -> str:
    """Keras's ``naming.to_snake_case``: ``SimpleRNN`` -> ``simple_rnn``, ``Dense`` -> ``dense``."""
    s = re.sub(r"\W+", "", class_name)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def keras3_group_names(class_names: Iterable[str]) -> list[str]:
    """The group name Keras 3 gives each layer of ``model.layers`` in a weights file.

    A name is the snake-cased class, then ``_1``, ``_2``, ... for later layers of the same class,
    counted in layer order (so the 11th SimpleRNN is ``simple_rnn_10``). Layer names play no part.
    """
    seen: dict[str, int] = {}
    out = []
    for cls in class_names:
        base = _snake_case(cls)
        if base in seen:
            seen[base] += 1
            out.append(f"{base}_{seen[base]}")
        else:
            seen[base] = 0
            out.append(base)
    return out


def _group_sort_key(name: str) -> tuple[str, int]:
    """``simple_rnn`` -> ('simple_rnn', 0), ``simple_rnn_10`` -> ('simple_rnn', 10)."""
    m = re.fullmatch(r"(.*?)_(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, 0)


def _numeric_key(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


class _Keras3Weights:
    """Variables of a Keras 3 weight store, looked up by group path."""

    def __init__(self, h5: h5py.File, source: str, prefix: str = ""):
        self.h5 = h5
        self.source = source
        self.prefix = prefix          # "model.weights.h5:" inside a .keras, for messages
        self.claimed: set[str] = set()

    def layer_weights(self, group_path: str) -> list[KerasWeight]:
        """Every dataset under the group: its own ``vars/0..n`` (numerically), then sub-objects
        such as ``cell`` (sorted), recursively."""
        self.claimed.add(group_path)
        if group_path not in self.h5:
            return []
        out: list[KerasWeight] = []
        self._collect(self.h5[group_path], group_path, out)
        return out

    def _collect(self, group: h5py.Group, root: str, out: list[KerasWeight]) -> None:
        keys = list(group.keys())
        if "vars" in keys and isinstance(group["vars"], h5py.Group):
            for k in sorted(group["vars"].keys(), key=_numeric_key):
                ds = group["vars"][k]
                if isinstance(ds, h5py.Dataset):
                    path = ds.name.lstrip("/")
                    out.append(KerasWeight(self.prefix + path, path[len(root) + 1:], _read_dataset(ds, self.source)))
        for k in sorted(keys):
            if k != "vars" and isinstance(group[k], h5py.Group):
                self._collect(group[k], root, out)

    def group_path(self, key: str) -> str:
        return key

    def unclaimed_layer_groups(self) -> list[str]:
        """Groups under ``layers/`` that hold arrays yet no layer of the config claimed."""
        out = []
        for name in self.h5["layers"].keys():
            path = f"layers/{name}"
            if path not in self.claimed and _has_datasets(self.h5[path]):
                out.append(path)
        return sorted(out, key=_group_sort_key)

    def model_level_datasets(self) -> list[str]:
        if "vars" in self.h5 and isinstance(self.h5["vars"], h5py.Group):
            return [f"vars/{k}" for k in self.h5["vars"].keys()]
        return []


def _has_datasets(group: h5py.Group) -> bool:
    found = []
    group.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return bool(found)


def _read_dataset(ds: h5py.Dataset, source: str) -> np.ndarray:
    try:
        return np.array(ds[()])
    except (OSError, ValueError, TypeError) as e:
        raise KerasFileError(f"{source}: dataset {ds.name!r} cannot be read (damaged?): {e}") from e


def _read_keras3_weights_only(h5: h5py.File, source: str) -> KerasModelSpec:
    store = _Keras3Weights(h5, source)
    layers = []
    for name in sorted(h5["layers"].keys(), key=_group_sort_key):
        path = f"layers/{name}"
        weights = store.layer_weights(path)
        if not weights:
            continue                      # Dropout, InputLayer, ...: nothing to load
        base = _group_sort_key(name)[0]
        layers.append(LayerSpec(class_name=_KNOWN_GROUP_CLASSES.get(base), name=name, weights=weights,
                                group=path))
    if not layers:
        raise KerasFileError(f"{source}: expected layer weights under 'layers/' in this .weights.h5 file; "
                             f"found none (groups {sorted(h5['layers'].keys())})")
    return KerasModelSpec(layers=layers, input_shape=None, source=source, keras_version=None,
                          format="weights_h5")


# Only to label layers in a weights-only Keras 3 file (its group names are snake-cased classes).
_KNOWN_GROUP_CLASSES = {
    "simple_rnn": "SimpleRNN", "dense": "Dense", "lstm": "LSTM", "gru": "GRU",
    "bidirectional": "Bidirectional", "conv1d": "Conv1D", "embedding": "Embedding",
}


# ---------------------------------------------------------------------------------------------
# HDF5: legacy full model, legacy weights, Keras 3 weights


def _read_h5(h5: h5py.File, source: str) -> KerasModelSpec:
    if "model_weights" in h5 and isinstance(h5["model_weights"], h5py.Group):
        if "model_config" not in h5.attrs:
            return _read_legacy_weights(h5["model_weights"], source, fmt="legacy_weights_h5", config=None)
        config = _json_attr(h5.attrs["model_config"], "model_config", source)
        return _read_legacy_weights(h5["model_weights"], source, fmt="legacy_h5", config=config,
                                    keras_version=_str_attr(h5.attrs.get("keras_version")),
                                    backend=_str_attr(h5.attrs.get("backend")))
    if "layer_names" in h5.attrs or "layer_names0" in h5.attrs:
        return _read_legacy_weights(h5, source, fmt="legacy_weights_h5", config=None)
    if "layers" in h5 and isinstance(h5["layers"], h5py.Group):
        return _read_keras3_weights_only(h5, source)
    what = ("an HDF5 file with a model_config but no model_weights group (a model saved without its "
            "weights?)" if "model_config" in h5.attrs else "an HDF5 file")
    raise KerasFileError(
        f"{source}: expected Keras weights: a 'model_weights' group (full-model .h5), a 'layer_names' "
        f"attribute (Keras 2 save_weights .h5) or a 'layers' group (Keras 3 .weights.h5); found {what} "
        f"with groups {sorted(h5.keys())[:10]} and attributes {sorted(h5.attrs.keys())[:10]}")


def _str_attr(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _str_attr(value[()])
    return str(value)


def _json_attr(value: Any, name: str, source: str) -> Any:
    text = _str_attr(value)
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise KerasFileError(f"{source}: attribute {name} should hold JSON; it does not parse ({e})") from e


def _list_attr(obj: h5py.HLObject, name: str) -> list[str] | None:
    """A list-of-strings attribute; Keras splits long ones into ``name0``, ``name1``, ... chunks
    (an HDF5 object header holds at most 64 KB of attributes)."""
    if name in obj.attrs:
        chunks = [obj.attrs[name]]
    elif f"{name}0" in obj.attrs:
        chunks, i = [], 0
        while f"{name}{i}" in obj.attrs:
            chunks.append(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out: list[str] = []
    for chunk in chunks:
        for v in np.asarray(chunk).ravel().tolist():
            out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return out


def _read_legacy_weights(group: h5py.Group, source: str, *, fmt: str, config: Any,
                         keras_version: str | None = None, backend: str | None = None) -> KerasModelSpec:
    layer_names = _list_attr(group, "layer_names")
    if layer_names is None:
        raise KerasFileError(f"{source}: expected a 'layer_names' attribute on {group.name!r} (the index of "
                             f"layers in a legacy .h5); found attributes {sorted(group.attrs.keys())}")
    keras_version = keras_version or _str_attr(group.attrs.get("keras_version"))
    backend = backend or _str_attr(group.attrs.get("backend"))
    by_name: dict[str, list[KerasWeight]] = {}
    for lname in layer_names:
        if lname not in group:
            raise KerasFileError(f"{source}: layer_names lists {lname!r} but there is no group "
                                 f"{group.name.rstrip('/')}/{lname} (damaged file?)")
        g = group[lname]
        weight_names = _list_attr(g, "weight_names")
        if weight_names is None:
            raise KerasFileError(f"{source}: layer group {g.name!r} has no 'weight_names' attribute "
                                 f"(the index of its arrays); found {sorted(g.attrs.keys())}")
        weights = []
        for wname in weight_names:
            if wname not in g or not isinstance(g[wname], h5py.Dataset):
                raise KerasFileError(f"{source}: weight_names of {g.name!r} lists {wname!r} but dataset "
                                     f"{g.name}/{wname} is missing (damaged file?)")
            short = re.sub(r":\d+$", "", wname.rsplit("/", 1)[-1])
            weights.append(KerasWeight(g[wname].name.lstrip("/"), short, _read_dataset(g[wname], source)))
        by_name[lname] = weights
    if config is None:
        layers = [LayerSpec(class_name=_class_from_weight_paths(w), name=n, weights=w,
                            group=f"{group.name.rstrip('/')}/{n}".lstrip("/"))
                  for n, w in by_name.items() if w]
        if not layers:
            raise KerasFileError(f"{source}: expected layer weights in this legacy .h5 file; "
                                 f"layer_names {layer_names} hold no arrays")
        return KerasModelSpec(layers=layers, input_shape=None, source=source, keras_version=keras_version,
                              format=fmt, backend=backend)
    return spec_from_config(config, source=source, keras_version=keras_version, fmt=fmt, backend=backend,
                            weights=_LegacyWeights(by_name, group.name, source))


def _class_from_weight_paths(weights: list[KerasWeight]) -> str | None:
    """A weights-only legacy file names no classes; RNN cells leave one in the path
    (``simple_rnn_cell``, ``lstm_cell``). Used only to label layers and word errors."""
    for w in weights:
        for part in w.path.split("/"):
            if part.endswith("_cell") or re.fullmatch(r".*_cell_\d+", part):
                base = re.sub(r"_\d+$", "", part)[: -len("_cell")]
                return {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}.get(base, base)
    return None


class _LegacyWeights:
    def __init__(self, by_name: dict[str, list[KerasWeight]], root: str, source: str):
        self.by_name = by_name
        self.root = root.strip("/")
        self.claimed: set[str] = set()

    def layer_weights(self, layer_name: str) -> list[KerasWeight]:
        self.claimed.add(layer_name)
        return self.by_name.get(layer_name, [])

    def group_path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def unclaimed_layer_groups(self) -> list[str]:
        return [f"{self.root}/{n}" for n, w in self.by_name.items() if w and n not in self.claimed]


# ---------------------------------------------------------------------------------------------
# Architecture from a config (config.json, model_config, or a live model's to_json())


def spec_from_config(config: dict, *, source: str, keras_version: str | None, fmt: str,
                     weights: Any, backend: str | None = None) -> KerasModelSpec:
    """Build a spec from a serialized Keras model and a weight lookup.

    ``weights`` is an object with ``layer_weights(key)`` and ``unclaimed_layer_groups()``; for
    Keras 3 stores the key is the class-based group path, otherwise the layer name. A live model
    passes its own lookup (see :func:`parity.convert.from_keras`).
    """
    model_class = config.get("class_name")
    inner = config.get("config", {})
    raw_layers = inner.get("layers") if isinstance(inner, dict) else inner   # very old Sequential: a list
    if model_class not in ("Sequential", "Functional", "Model") or not isinstance(raw_layers, list):
        raise KerasFileError(f"{source}: expected a Sequential or functional Keras model in the config; "
                             f"found class {model_class!r}")
    entries = []
    for raw in raw_layers:
        if not isinstance(raw, dict) or "class_name" not in raw:
            raise KerasFileError(f"{source}: a layer entry in the config is not a serialized layer: {str(raw)[:120]!r}")
        cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
        entries.append((raw["class_name"], raw.get("name") or cfg.get("name") or raw["class_name"], cfg, raw))

    # Keras 3 stores number layers by class in model.layers order; a Sequential's model.layers
    # leaves out its InputLayer. (InputLayer has no weights, so the counters are unaffected.)
    if fmt == "keras":
        listed = [e for e in entries if not (model_class == "Sequential" and e[0] == "InputLayer")]
        keys = {id(e): f"layers/{g}" for e, g in zip(listed, keras3_group_names(e[0] for e in listed))}
    else:
        keys = {id(e): e[1] for e in entries}

    if model_class != "Sequential":
        entries = _chain_order(entries, inner, source)

    layers = []
    for e in entries:
        cls, name, cfg, _ = e
        key = keys.get(id(e)) if cls != "InputLayer" else None     # an input has no weights
        w = weights.layer_weights(key) if key is not None else []
        layers.append(LayerSpec(class_name=cls, name=name, config=cfg, weights=w,
                                group=weights.group_path(key) if (w and key is not None) else None))
    leftovers = weights.unclaimed_layer_groups()
    if leftovers:
        raise KerasFileError(f"{source}: weights in {leftovers} belong to no layer of the model's config "
                             f"(unknown weights; damaged or mismatched file?)")
    if hasattr(weights, "model_level_datasets") and weights.model_level_datasets():
        raise KerasFileError(f"{source}: model-level variables {weights.model_level_datasets()} belong to no "
                             f"layer; torchrnn cannot represent them")
    return KerasModelSpec(layers=layers, input_shape=_input_shape(config, entries, source), source=source,
                          keras_version=keras_version, format=fmt, backend=backend, model_class=model_class)


def _inbound_names(raw: dict) -> list[list[str]]:
    """For every call of a layer (inbound node), the names of the layers feeding it.
    Keras 2 writes ``[[name, node, tensor, kwargs], ...]``; Keras 3 writes ``{"args": [...]}``
    with ``keras_history: [name, node, tensor]`` inside."""
    calls = []
    for node in raw.get("inbound_nodes") or []:
        found: list[str] = []

        def walk(obj):
            if isinstance(obj, dict):
                if "keras_history" in obj and isinstance(obj["keras_history"], list):
                    found.append(obj["keras_history"][0])
                    return
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, list):
                if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                    found.append(obj[0])
                    return
                for v in obj:
                    walk(v)

        walk(node)
        calls.append(found)
    return calls


def _endpoints(value: Any) -> list[str]:
    """``input_layers``/``output_layers``: ``[name, 0, 0]`` or ``[[name, 0, 0], ...]``."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0]]
    return [v[0] for v in value or [] if isinstance(v, list) and v]


def _chain_order(entries: list, inner: dict, source: str) -> list:
    """A functional model's layers from input to output, provided they form one chain."""
    by_name = {e[1]: e for e in entries}
    inputs, outputs = _endpoints(inner.get("input_layers")), _endpoints(inner.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise KerasFileError(f"{source}: expected a functional model with one input and one output (a chain "
                             f"of layers); found inputs {inputs} and outputs {outputs}")
    feeds: dict[str, str] = {}
    for cls, name, _, raw in entries:
        calls = _inbound_names(raw)
        if len(calls) > 1:
            raise KerasFileError(f"{source}: layer {name!r} ({cls}) is called {len(calls)} times (a shared "
                                 f"layer); torchrnn represents a plain chain of layers")
        if calls and len(calls[0]) != 1:
            raise KerasFileError(f"{source}: layer {name!r} ({cls}) takes {len(calls[0])} inputs "
                                 f"{calls[0]}; torchrnn represents a plain chain of layers")
        if calls:
            if calls[0][0] in feeds:
                raise KerasFileError(f"{source}: layer {calls[0][0]!r} feeds both {feeds[calls[0][0]]!r} and "
                                     f"{name!r} (a branch); torchrnn represents a plain chain of layers")
            feeds[calls[0][0]] = name
    order, cur = [], inputs[0]
    while cur is not None:
        if cur not in by_name or cur in (e[1] for e in order):
            raise KerasFileError(f"{source}: the functional graph does not form a chain at layer {cur!r}")
        order.append(by_name[cur])
        cur = feeds.get(cur)
    if order[-1][1] != outputs[0] or len(order) != len(entries):
        unused = [e[1] for e in entries if e not in order]
        raise KerasFileError(f"{source}: expected the layers to form one chain from {inputs[0]!r} to "
                             f"{outputs[0]!r}; layers {unused} are off that chain")
    return order


def _input_shape(config: dict, entries: list, source: str) -> tuple[int | None, int | None] | None:
    """(time_steps, features) from the config: an InputLayer's batch_shape (Keras 3) or
    batch_input_shape (Keras 2), a first layer's batch_input_shape, or a build shape, in that
    order; every one of them the file gives must say the same (Keras builds the model from the
    first and checks the weights against the others)."""
    candidates = []
    for cls, _, cfg, raw in entries:
        if cls == "InputLayer":
            candidates += [cfg.get("batch_shape"), cfg.get("batch_input_shape")]
    if entries:
        first_cfg, first_raw = entries[0][2], entries[0][3]
        candidates += [first_cfg.get("batch_input_shape"), first_cfg.get("batch_shape")]
        for cls, _, cfg, raw in entries:
            if cls != "InputLayer":
                candidates.append((raw.get("build_config") or {}).get("input_shape"))
                break
    inner = config.get("config", {})
    if isinstance(inner, dict):
        candidates.append(inner.get("build_input_shape"))
    candidates.append((config.get("build_config") or {}).get("input_shape"))
    shapes = [list(shape) for shape in candidates if isinstance(shape, list) and shape]
    if not shapes:
        return None
    for other in shapes[1:] if len(shapes[0]) == 3 else ():  # (not 3-D: refused as such below)
        if other[1:] != shapes[0][1:]:
            raise KerasFileError(f"{source}: the config gives two input shapes, {shapes[0]} and {other}; "
                                 f"Keras cannot build this model")
    # the first as found, of whatever length: model_config refuses one that is not (batch, steps, features)
    return tuple(shapes[0][1:])  # type: ignore[return-value]
