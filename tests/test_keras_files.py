"""Saved Keras files read without TensorFlow: every committed fixture in every format, and bad files.

The fixtures (tests/fixtures/keras, made by tests/fixtures/make_fixtures.py with real Keras 3
and tf-keras) carry Keras's own predictions; torch must reproduce them from the files alone.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from parity import FLOAT32_ATOL, assert_close
from parity.convert import load_keras, load_keras_weights, spec_to_config
from parity.keras_files import KerasFileError, keras3_group_names, read_keras_file
from torchrnn import create_rnn

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "keras"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.npz") if not p.stem.startswith("bad_"))
FILES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".keras", ".h5") and not p.name.startswith("bad_"))

# float32 forward parity: torch against the prediction Keras itself stored (parity.compare
# explains the 1e-5; the fixtures actually agree to ~1e-7).
KERAS_FILE_ATOL = FLOAT32_ATOL


def model_of(path: Path) -> str:
    return path.name.split(".")[0]


def fixture(name: str) -> dict:
    data = np.load(FIXTURES / f"{name}.npz")
    out = {k: data[k] for k in data.files}
    out["create_rnn"] = json.loads(str(out["create_rnn"]))
    return out


def expected_prediction(path: Path) -> np.ndarray:
    """Keras 2 files were predicted by tf-keras, the others by Keras 3 (same weights, same x)."""
    data = fixture(model_of(path))
    return data["y_keras2"] if ".k2" in path.name else data["y_keras3"]


def test_every_model_has_every_format():
    for name in MODELS:
        have = sorted(p.name[len(name):] for p in FIXTURES.glob(f"{name}.*"))
        want = [".k2.h5", ".k2.keras", ".k2_weights.h5", ".k3.h5", ".keras", ".npz", ".weights.h5"]
        if name == "deep12":     # the _10-after-_9 case: Keras 3 formats are the ones that number groups
            want = [".keras", ".npz", ".weights.h5"]
        assert have == want, f"{name}: fixture files {have}, expected {want} (re-run make_fixtures.py)"
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 2_000_000


# ---------------------------------------------------------------------------------------------
# Every fixture loads in a process that cannot import TensorFlow or Keras

_LOADER = r"""
import importlib.abc, json, sys

class _NoKeras(importlib.abc.MetaPathFinder):
    # Behave as if TensorFlow and Keras were not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked: the file loaders must not need it")
        return None

sys.meta_path.insert(0, _NoKeras())
import numpy as np
from parity.convert import load_keras, load_keras_weights
from parity.keras_files import read_keras_file
from torchrnn import create_rnn

out = {}
for path, npz in json.loads(sys.argv[1]):
    data = np.load(npz)
    if read_keras_file(path).has_architecture:
        model = load_keras(path)
    else:
        model = load_keras_weights(create_rnn(**json.loads(str(data["create_rnn"]))), path)
    out[path] = model.predict(data["x"]).tolist()
out["__modules__"] = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def predictions_without_tensorflow() -> dict:
    jobs = [(str(p), str(FIXTURES / f"{model_of(p)}.npz")) for p in FILES]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _LOADER, json.dumps(jobs)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, f"loader subprocess failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loading_imports_no_tensorflow_or_keras(predictions_without_tensorflow):
    assert predictions_without_tensorflow["__modules__"] == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_matches_keras_prediction_without_tensorflow(path, predictions_without_tensorflow):
    got = np.array(predictions_without_tensorflow[str(path)], dtype=np.float32)
    assert_close(got, expected_prediction(path), atol=KERAS_FILE_ATOL, name=path.name)


@pytest.mark.parametrize("path", [p for p in FILES if read_keras_file(p).has_architecture], ids=lambda p: p.name)
def test_architecture_read_from_file(path):
    want = fixture(model_of(path))["create_rnn"]
    got = spec_to_config(read_keras_file(path))
    assert got == {**want, "input_shape": tuple(want["input_shape"]), "activation": tuple(want["activation"])}


def test_weights_match_the_stored_arrays_in_keras_order():
    for path in FILES:
        data = fixture(model_of(path))
        model = create_rnn(**data["create_rnn"])
        load_keras_weights(model, path)       # works for full-model files too
        for i, (got, name) in enumerate(zip(model.get_weights(), model.weight_names())):
            assert_close(got, data[f"w{i}"], atol=0.0, name=f"{path.name} {name}")


@pytest.mark.parametrize("name", ["demo_tanh.keras", "demo_tanh.k3.h5", "demo_tanh.k2.h5"])
@pytest.mark.parametrize("change, said", [
    ({"activation": ("linear", "relu")}, "activation: file (('tanh',), 'tanh'), model (('linear',), 'relu')"),
    ({"go_backwards": True}, "go_backwards: file (False,), model (True,)"),
    ({"input_shape": (7, 1)}, "input_shape[0] (time_steps): file 3, model 7"),
])
def test_full_model_weights_into_a_model_built_otherwise(name, change, said):
    """A full-model file says how its weights compute; same-shaped weights into a model with
    another activation, direction or length would give other numbers without a word."""
    cfg = {**fixture("demo_tanh")["create_rnn"], **change}
    with pytest.raises(KerasFileError) as e:
        load_keras_weights(create_rnn(**cfg), FIXTURES / name)
    msg = str(e.value)
    assert str(FIXTURES / name) in msg and said in msg and "parity.load_keras(path)" in msg
    # a variable-length model takes the file's weights: nothing about the numbers changes
    variable = create_rnn(**{**fixture("demo_tanh")["create_rnn"], "input_shape": (None, 1)})
    load_keras_weights(variable, FIXTURES / name)
    assert_close(variable.predict(fixture("demo_tanh")["x"]), expected_prediction(FIXTURES / name),
                 atol=KERAS_FILE_ATOL, name=f"{name} into a variable-length model")


def test_return_sequences_with_go_backwards_stays_in_processing_order():
    # Keras does not flip a go_backwards sequence back: step 0 of the output is the LAST input step.
    data = fixture("return_sequences")
    model = load_keras(FIXTURES / "return_sequences.keras")
    y = model.predict(data["x"])
    assert y.shape == (4, 5, 2)
    assert_close(y, data["y_keras3"], atol=KERAS_FILE_ATOL, name="return_sequences")
    flipped = model.predict(data["x"][:, ::-1].copy())
    assert not np.allclose(flipped, y, atol=1e-3), "the fixture would not tell processing order from input order"


# ---------------------------------------------------------------------------------------------
# Keras 3 names weight groups by class and creation number: _10 after _9


def test_keras3_group_names_count_per_class():
    assert keras3_group_names(["SimpleRNN", "Dropout", "SimpleRNN", "Dense"]) == [
        "simple_rnn", "dropout", "simple_rnn_1", "dense"]
    assert keras3_group_names(["SimpleRNN"] * 12)[9:] == ["simple_rnn_9", "simple_rnn_10", "simple_rnn_11"]


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_eleven_plus_layers_follow_creation_order_not_alphabetical(suffix):
    spec = read_keras_file(FIXTURES / f"deep12{suffix}")
    groups = [layer.group for layer in spec.layers if layer.weights and layer.class_name == "SimpleRNN"]
    want = ["layers/simple_rnn"] + [f"layers/simple_rnn_{i}" for i in range(1, 12)]
    assert groups == want
    assert sorted(groups) != want, "HDF5 lists groups alphabetically; this fixture must exercise that trap"
    # 1..12 units: layer i's kernel is (i, i + 1), so any other order breaks the chain.
    kernels = [layer.weights[0].array.shape for layer in spec.layers if layer.class_name == "SimpleRNN"]
    assert kernels == [(max(i, 1), i + 1) for i in range(12)]


# ---------------------------------------------------------------------------------------------
# Bad files: each kind raises KerasFileError with a message that says what and where


def copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copy(FIXTURES / name, dst)
    return dst


def rewrite_keras_zip(path: Path, *, config=None, weights=None, drop=()) -> None:
    """Rewrite a .keras archive in memory: new config dict, an h5py editing function for the weights."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if n not in drop}
    if config is not None:
        members["config.json"] = json.dumps(config(json.loads(members["config.json"]))).encode()
    if weights is not None:
        buf = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buf, "r+") as h5:
            weights(h5)
        members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def reshape_dataset(h5: h5py.File, path: str, shape: tuple) -> None:
    del h5[path]
    h5.create_dataset(path, data=np.zeros(shape, np.float32))


def test_truncated_zip(tmp_path):
    path = tmp_path / "truncated.keras"
    path.write_bytes((FIXTURES / "demo_tanh.keras").read_bytes()[:5000])
    with pytest.raises(KerasFileError, match=r"expected a \.keras zip archive.*truncated or damaged") as e:
        load_keras(path)
    assert str(path) in str(e.value)


def test_text_file_renamed_keras(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("date,value\n2020-01,3.5\n")
    with pytest.raises(KerasFileError, match=r"unknown format: expected a Keras file .* found text starting with "
                                             r"'date,value"):
        load_keras(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    with pytest.raises(KerasFileError, match="found an empty file"):
        load_keras(path)


def test_truncated_h5(tmp_path):
    path = tmp_path / "cut.h5"
    path.write_bytes((FIXTURES / "demo_tanh.k2.h5").read_bytes()[:3000])
    with pytest.raises(KerasFileError, match="looks like HDF5 but cannot be opened"):
        load_keras(path)


def test_h5_without_weights(tmp_path):
    path = copy(tmp_path, "demo_tanh.k3.h5")
    with h5py.File(path, "r+") as h5:
        del h5["model_weights"]
    with pytest.raises(KerasFileError, match=r"expected Keras weights: a 'model_weights' group .* found an HDF5 file "
                                             r"with a model_config but no model_weights group"):
        load_keras(path)


def test_keras_zip_without_weights(tmp_path):
    path = copy(tmp_path, "demo_tanh.keras")
    rewrite_keras_zip(path, drop=("model.weights.h5",))
    with pytest.raises(KerasFileError, match=r"expected model\.weights\.h5 in the \.keras archive .*config\.json"):
        load_keras(path)


def test_zip_that_is_not_a_keras_archive(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(KerasFileError, match=r"expected a \.keras archive with config\.json.*readme\.txt"):
        load_keras(path)


def test_layer_listed_but_dataset_missing(tmp_path):
    path = copy(tmp_path, "demo_tanh.k2.h5")
    with h5py.File(path, "r+") as h5:
        del h5["model_weights/simple_rnn/simple_rnn/simple_rnn_cell/bias:0"]
    with pytest.raises(KerasFileError, match=r"lists 'simple_rnn/simple_rnn_cell/bias:0' but dataset .* is missing"):
        load_keras(path)


@pytest.mark.parametrize("name, dataset, shape, want", [
    ("stacked.k2.h5", "model_weights/simple_rnn_1/simple_rnn_1/simple_rnn_cell/kernel:0", (3, 3), (3, 2)),
    ("stacked.k3.h5", "model_weights/dense/sequential/dense/kernel", (3, 2), (2, 2)),
    ("stacked.k2_weights.h5", "simple_rnn/simple_rnn/simple_rnn_cell/recurrent_kernel:0", (3, 2), (3, 3)),
])
def test_kernel_of_wrong_shape_h5(tmp_path, name, dataset, shape, want):
    path = copy(tmp_path, name)
    with h5py.File(path, "r+") as h5:
        reshape_dataset(h5, dataset, shape)
    cfg = fixture("stacked")["create_rnn"]
    with pytest.raises(KerasFileError) as e:
        load_keras_weights(create_rnn(**cfg), path)
    assert f"dataset {dataset!r} has shape {shape} but the torch model needs {want}" in str(e.value)


def edited_keras3_loader(tmp_path, name, edit):
    """Copy fixture ``name`` (a Keras 3 ``.keras`` or ``.weights.h5``), apply ``edit`` to its
    weights' h5 file, and return (path, a function that loads it the way its kind is loaded)."""
    path = copy(tmp_path, name)
    if name.endswith(".keras"):
        rewrite_keras_zip(path, weights=edit)
        return path, lambda: load_keras(path)
    with h5py.File(path, "r+") as h5:
        edit(h5)
    cfg = fixture(name.split(".")[0])["create_rnn"]
    return path, lambda: load_keras_weights(create_rnn(**cfg), path)


@pytest.mark.parametrize("name", ["stacked.keras", "stacked.weights.h5"])
def test_kernel_of_wrong_shape_keras3(tmp_path, name):
    _, loader = edited_keras3_loader(
        tmp_path, name, lambda h5: reshape_dataset(h5, "layers/simple_rnn/cell/vars/0", (5, 3)))
    with pytest.raises(KerasFileError, match=r"layers/simple_rnn/cell/vars/0' has shape \(5, 3\) but the torch model "
                                             r"needs \(2, 3\) for SimpleRNN kernel"):
        loader()


@pytest.mark.parametrize("name", ["demo_tanh.keras", "demo_tanh.weights.h5"])
def test_float64_weight_beyond_float32_is_refused(tmp_path, name):
    # Finite in the file's float64, inf in the float32 model: it used to load as inf and
    # torchrnn-parity still said PARITY.
    dataset = "layers/simple_rnn/cell/vars/2"

    def edit(h5):
        del h5[dataset]
        h5.create_dataset(dataset, data=np.array([0.0, 1e39]))

    path, loader = edited_keras3_loader(tmp_path, name, edit)
    with pytest.raises(KerasFileError) as e:
        loader()
    msg = str(e.value)
    assert str(path) in msg and f"{dataset}' holds 1e+39 at index (1,)" in msg
    assert "beyond the range of the model's torch.float32" in msg


@pytest.mark.parametrize("name", ["bad_lstm.keras", "bad_lstm.k2.h5"])
def test_lstm_model_names_layer_class_and_file(name):
    path = FIXTURES / name
    with pytest.raises(KerasFileError) as e:
        load_keras(path)
    msg = str(e.value)
    assert "layer 'lstm' (LSTM)" in msg and str(path) in msg and "cannot represent an LSTM layer" in msg


def test_lstm_weights_into_a_simple_rnn_model():
    with pytest.raises(KerasFileError, match=r"missing weights for torch SimpleRNN layer 0: no group 'layers/simple_rnn'"
                                             r" \(groups with weights: \['layers/dense', 'layers/lstm'\]\)"):
        load_keras_weights(create_rnn(2, 1, (3, 1)), FIXTURES / "bad_lstm.weights.h5")


@pytest.mark.parametrize("option", ["stateful", "return_state"])
def test_simple_rnn_options_torch_cannot_honour(tmp_path, option):
    path = copy(tmp_path, "demo_tanh.keras")

    def edit(cfg):
        cfg["config"]["layers"][1]["config"][option] = True
        return cfg

    rewrite_keras_zip(path, config=edit)
    with pytest.raises(KerasFileError, match=rf"layer 'simple_rnn' \(SimpleRNN\) in .* has {option}=True"):
        load_keras(path)


def test_unroll_and_dropout_options_are_accepted(tmp_path):
    path = copy(tmp_path, "demo_tanh.keras")

    def edit(cfg):
        cfg["config"]["layers"][1]["config"].update(unroll=True, dropout=0.3, recurrent_dropout=0.2)
        return cfg

    rewrite_keras_zip(path, config=edit)
    data = fixture("demo_tanh")
    assert_close(load_keras(path).predict(data["x"]), data["y_keras3"], atol=KERAS_FILE_ATOL, name="unroll/dropout")


@pytest.mark.parametrize("batch_shape, needle", [
    # a 4-D input once loaded as (3, 1) from the build shape and torchrnn-parity said PARITY;
    # Keras itself refuses the file
    ([None, 3, 1, 1], r"the model's input shape is \(None, 3, 1, 1\); a SimpleRNN model takes"),
    ([None, 3, 2], r"the config gives two input shapes, \[None, 3, 2\] and \[None, 3, 1\]"),
])
def test_an_input_shape_keras_cannot_build_is_refused(tmp_path, batch_shape, needle):
    path = copy(tmp_path, "demo_tanh.keras")

    def edit(cfg):
        cfg["config"]["layers"][0]["config"]["batch_shape"] = batch_shape
        return cfg

    rewrite_keras_zip(path, config=edit)
    with pytest.raises(KerasFileError, match=needle):
        load_keras(path)


def _set_h5_config(path: Path, edit) -> None:
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = json.dumps(edit(json.loads(h5.attrs["model_config"])))


def test_activation_serialized_as_dict(tmp_path):
    path = copy(tmp_path, "demo_tanh.k2.h5")

    def edit(cfg):
        cfg["config"]["layers"][1]["config"]["activation"] = {
            "module": "keras.activations", "class_name": "function", "config": "tanh", "registered_name": "tanh"}
        return cfg

    _set_h5_config(path, edit)
    data = fixture("demo_tanh")
    assert_close(load_keras(path).predict(data["x"]), data["y_keras2"], atol=KERAS_FILE_ATOL, name="dict activation")


def test_custom_activation_is_refused(tmp_path):
    path = copy(tmp_path, "demo_tanh.k3.h5")

    def edit(cfg):
        cfg["config"]["layers"][1]["config"]["activation"] = {
            "module": "mypkg", "class_name": "function", "config": "swoosh", "registered_name": "mypkg>swoosh"}
        return cfg

    _set_h5_config(path, edit)
    with pytest.raises(KerasFileError, match=r"layer 'simple_rnn' \(SimpleRNN\) .*activation 'mypkg>swoosh' is a custom"):
        load_keras(path)


def test_keras2_hard_sigmoid_is_refused(tmp_path):
    # Keras 2's hard_sigmoid is clip(0.2x + 0.5); Keras 3's (torchrnn's) is clip(x/6 + 0.5).
    path = copy(tmp_path, "demo_tanh.k2.h5")

    def edit(cfg):
        cfg["config"]["layers"][1]["config"]["activation"] = "hard_sigmoid"
        return cfg

    _set_h5_config(path, edit)
    with pytest.raises(KerasFileError, match=r"'hard_sigmoid' was saved by Keras 2\.21\.0, where it is clip\(0\.2\*x"):
        load_keras(path)


def test_weights_only_file_has_no_architecture():
    with pytest.raises(KerasFileError, match=r"weights-only file .* load_keras_weights\(model, path\)"):
        load_keras(FIXTURES / "demo_tanh.weights.h5")


def test_weights_for_a_different_model():
    model = create_rnn(2, 1, (3, 1), ("tanh", "tanh"))
    with pytest.raises(KerasFileError, match=r"has 3 layers with weights .* but the torch model has 2"):
        load_keras_weights(model, FIXTURES / "stacked.k2_weights.h5")
    with pytest.raises(KerasFileError, match=r"unknown weights in groups \['layers/dense'\]"):
        load_keras_weights(create_rnn(2, None, (3, 1)), FIXTURES / "demo_tanh.weights.h5")
    no_bias = create_rnn(2, 1, (3, 1), use_bias=False)
    with pytest.raises(KerasFileError, match=r"has 3 arrays .* expects 2 \(kernel, recurrent_kernel; use_bias=False\)"):
        load_keras_weights(no_bias, FIXTURES / "demo_tanh.k2_weights.h5")


def test_failed_load_leaves_the_model_untouched():
    # The RNN layers fit; only the Dense (3 units here, 2 in the file) does not: nothing is copied.
    cfg = {**fixture("stacked")["create_rnn"], "dense_units": 3, "seed": 0}
    model = create_rnn(**cfg)
    before = model.get_weights()
    for path in (FIXTURES / "stacked.weights.h5", FIXTURES / "stacked.k2_weights.h5"):
        with pytest.raises(KerasFileError, match=r"has shape \(2, 2\) but the torch model needs \(2, 3\) for Dense"):
            load_keras_weights(model, path)
        for a, b, name in zip(model.get_weights(), before, model.weight_names()):
            assert_close(a, b, atol=0.0, name=f"{name} after a failed load")


def test_directory_is_refused(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(KerasFileError, match="is a directory.*SavedModel directory is not supported"):
        load_keras(tmp_path)


def test_old_style_attributes_bytes_and_chunks(tmp_path):
    # Older Keras/h5py wrote these lists as fixed-length byte strings, and Keras splits a list that
    # would overflow the 64 KB object header into layer_names0, layer_names1, ...
    path = copy(tmp_path, "stacked.k2_weights.h5")
    with h5py.File(path, "r+") as h5:
        names = [n.encode() for n in h5.attrs["layer_names"]]
        del h5.attrs["layer_names"]
        h5.attrs["layer_names0"] = np.array(names[:2], dtype="S")
        h5.attrs["layer_names1"] = np.array(names[2:], dtype="S")
        for n in names:
            g = h5[n.decode()]
            g.attrs["weight_names"] = np.array([w.encode() for w in g.attrs["weight_names"]], dtype="S")
    data = fixture("stacked")
    model = load_keras_weights(create_rnn(**data["create_rnn"]), path)
    assert_close(model.predict(data["x"]), data["y_keras2"], atol=KERAS_FILE_ATOL, name="bytes + chunks")


def test_names_are_checked_where_shapes_cannot_tell(tmp_path):
    # multifeature has F == H == 2: kernel and recurrent_kernel have the same shape, so a loader
    # that went by position alone would swap them silently. The table checks names too.
    path = copy(tmp_path, "multifeature.k2.h5")
    with h5py.File(path, "r+") as h5:
        g = h5["model_weights/simple_rnn"]
        k, r, b = list(g.attrs["weight_names"])
        g.attrs["weight_names"] = [r, k, b]
    with pytest.raises(KerasFileError, match=r"recurrent_kernel:0' is 'recurrent_kernel' where the table expects "
                                             r"'kernel'"):
        load_keras(path)
