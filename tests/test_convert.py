"""parity.convert against live Keras 3: from_keras, and Keras files written in the test and read back."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from parity import FLOAT32_ATOL, GOLDEN_ATOL, assert_close
from parity.convert import (MAPPING, from_keras, load_keras, load_keras_weights, spec_from_keras_model,
                            spec_to_config)
from parity.keras_files import KerasFileError
from cases import K2_WEIGHTS, K2_X, K3_WEIGHTS, K3_X, keras_save
from torchrnn import ACTIVATIONS, create_rnn

keras = pytest.importorskip("keras", reason="the test extra installs Keras; pip install '.[test]'")
L = keras.layers

def tutorial_create_RNN(hidden_units, dense_units, input_shape, activation):  # noqa: N802 (the tutorial's name)
    """The tutorial's function, verbatim apart from the keras. prefixes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # Keras 3 prefers keras.Input to input_shape=
        model = keras.Sequential()
        model.add(L.SimpleRNN(hidden_units, input_shape=input_shape, activation=activation[0]))
        model.add(L.Dense(units=dense_units, activation=activation[1]))
    model.compile(loss="mean_squared_error", optimizer="adam")
    return model


def keras_out(km, x) -> np.ndarray:
    return np.asarray(km(x, training=False))


save = keras_save


def random_weights(km, seed=0):
    rng = np.random.default_rng(seed)
    km.set_weights([rng.uniform(-0.8, 0.8, size=w.shape).astype(np.float32) for w in km.get_weights()])
    return km


def x_for(km, steps=None, batch=3, seed=1):
    _, t, f = km.input_shape
    return np.random.default_rng(seed).normal(size=(batch, t or steps, f)).astype(np.float32)


def assert_same_as_keras(km, x, name):
    m = from_keras(km)
    assert_close(m.predict(x), keras_out(km, x), atol=FLOAT32_ATOL, name=name)
    return m


@pytest.mark.parametrize("activation, golden", [(("linear", "linear"), 1.8709998), (("tanh", "tanh"), -0.3659179)])
def test_tutorial_demo_from_keras(activation, golden):
    km = tutorial_create_RNN(2, 1, (3, 1), activation)
    km.set_weights(K2_WEIGHTS)
    m = from_keras(km)
    assert m.config.hidden_units == (2,) and m.config.input_shape == (3, 1) and m.count_params() == 11
    for got, want, name in zip(m.get_weights(), km.get_weights(), m.weight_names()):
        assert_close(got, want, atol=0.0, name=name)     # the very float32 arrays Keras holds
    assert_close(keras_out(km, K2_X), [[golden]], atol=GOLDEN_ATOL, name="Keras")
    assert_close(m.predict(K2_X), [[golden]], atol=GOLDEN_ATOL, name="torch")


def test_k3_multi_feature_from_keras():
    km = tutorial_create_RNN(2, 1, (3, 2), ("tanh", "linear"))
    km.set_weights(K3_WEIGHTS)
    m = from_keras(km)
    y = m.predict(K3_X)
    assert y.shape == (1, 1), "one number, not one per feature"
    assert_close(y, [[1.9231117]], atol=GOLDEN_ATOL, name="K3 torch")
    assert_close(keras_out(km, K3_X), [[1.9231117]], atol=GOLDEN_ATOL, name="K3 Keras")


def test_spec_to_config_is_create_rnn_arguments():
    km = keras.Sequential([keras.Input((None, 3)),
                           L.SimpleRNN(4, activation="relu", return_sequences=True, go_backwards=True),
                           L.Dropout(0.1), L.SimpleRNN(2, use_bias=False, return_sequences=True),
                           L.Dense(5, activation="softplus", use_bias=False)])
    cfg = spec_to_config(spec_from_keras_model(km))
    assert cfg == {"hidden_units": [4, 2], "dense_units": 5, "input_shape": (None, 3),
                   "activation": (["relu", "tanh"], "softplus"), "use_bias": [True, False],
                   "dense_use_bias": False, "return_sequences": True, "go_backwards": [True, False]}
    create_rnn(**cfg)
    assert_same_as_keras(random_weights(km), x_for(km, steps=7), "per-step Dense")


def test_mapping_table_covers_every_torch_parameter():
    m = create_rnn([3, 2], 1, (4, 2), use_bias=[True, False])
    names = {r.torch_name.format(i=i) for i in range(2) for r in MAPPING["SimpleRNN"]} | {
        r.torch_name for r in MAPPING["Dense"]}
    assert set(dict(m.named_parameters())) <= names
    assert [r.keras_name for r in MAPPING["SimpleRNN"]] == ["kernel", "recurrent_kernel", "bias"]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_from_keras(name):
    km = keras.Sequential([keras.Input((4, 2)), L.SimpleRNN(3, activation=name), L.Dense(2, activation=name)])
    assert_same_as_keras(random_weights(km), x_for(km), name)


def test_functional_chain_with_custom_names():
    inp = keras.Input((None, 2), name="series")
    h = L.SimpleRNN(3, return_sequences=True, name="first")(inp)
    h = L.Dropout(0.3, name="drop")(h)
    h = L.SimpleRNN(2, go_backwards=True, name="second")(h)
    km = keras.Model(inp, L.Dense(1, name="head")(h))
    m = assert_same_as_keras(random_weights(km), x_for(km, steps=5), "functional")
    assert m.config.hidden_units == (3, 2) and m.config.input_shape == (None, 2)


def test_sequential_without_input_must_be_built():
    km = keras.Sequential([L.SimpleRNN(2), L.Dense(1)])
    with pytest.raises(KerasFileError, match="not built"):
        from_keras(km)
    km.build((None, 5, 2))
    m = assert_same_as_keras(random_weights(km), x_for(km), "built later")
    assert m.config.input_shape == (5, 2)


def test_inference_only_layers_are_the_identity():
    km = keras.Sequential([keras.Input((6, 2)), L.GaussianNoise(0.5), L.SimpleRNN(3, return_sequences=True),
                           L.Dropout(0.5), L.SpatialDropout1D(0.5), L.GaussianDropout(0.3),
                           L.SimpleRNN(2), L.AlphaDropout(0.2), L.ActivityRegularization(l1=0.1), L.Dense(1)])
    assert_same_as_keras(random_weights(km), x_for(km), "dropouts")


@pytest.mark.parametrize("make, cls", [
    (lambda: L.LSTM(2), "LSTM"),
    (lambda: L.GRU(2), "GRU"),
    (lambda: L.Bidirectional(L.SimpleRNN(2), name="bidirectional"), "Bidirectional"),
    (lambda: L.Conv1D(2, 2, name="conv1d"), "Conv1D"),
    (lambda: L.Masking(name="masking"), "Masking"),
])
def test_unsupported_layer_names_layer_and_class(make, cls):
    layer = make()
    km = keras.Sequential([keras.Input((4, 1)), layer, L.Dense(1)])
    with pytest.raises(KerasFileError, match=rf"layer '{layer.name}' \({cls}\) in <live Sequential .*cannot represent "
                                             rf"an? {cls} layer"):
        from_keras(km)


def test_graphs_that_are_not_a_chain():
    inp = keras.Input((3, 1))
    a, b = L.SimpleRNN(2, name="a")(inp), L.SimpleRNN(2, name="b")(inp)
    km = keras.Model(inp, L.Dense(1)(L.Concatenate()([a, b])))
    with pytest.raises(KerasFileError, match="takes 2 inputs|feeds both"):
        from_keras(km)
    i1, i2 = keras.Input((3, 1)), keras.Input((3, 1))
    two = keras.Model([i1, i2], L.Add()([L.SimpleRNN(2)(i1), L.SimpleRNN(2)(i2)]))
    with pytest.raises(KerasFileError, match=r"one input and one output"):
        from_keras(two)


def test_stateful_and_mixed_precision_are_refused():
    km = keras.Sequential([keras.Input(batch_shape=(2, 3, 1)), L.SimpleRNN(2, stateful=True), L.Dense(1)])
    with pytest.raises(KerasFileError, match=r"layer 'simple_rnn\w*' \(SimpleRNN\) .* has stateful=True"):
        from_keras(km)
    km = keras.Sequential([keras.Input((3, 1)), L.SimpleRNN(2, dtype="mixed_float16"), L.Dense(1)])
    with pytest.raises(KerasFileError, match=r"dtype policy 'mixed_float16'"):
        from_keras(km)


def test_stacking_after_a_layer_that_returns_only_its_last_state_is_refused():
    # Keras itself refuses to build this (ndim 2 into a SimpleRNN); a hand-edited config could say it.
    km = keras.Sequential([keras.Input((3, 1)), L.SimpleRNN(2, return_sequences=True), L.SimpleRNN(2), L.Dense(1)])
    spec = spec_from_keras_model(km)
    spec.layers[1].config["return_sequences"] = False
    with pytest.raises(KerasFileError, match="has return_sequences=False; a stacked SimpleRNN needs the whole sequence"):
        spec_to_config(spec)


def test_every_file_format_round_trips(tmp_path):
    km = random_weights(keras.Sequential([
        keras.Input((5, 2)), L.SimpleRNN(3, activation="relu", return_sequences=True, go_backwards=True),
        L.Dropout(0.2), L.SimpleRNN(4, use_bias=False, return_sequences=True), L.Dense(2, activation="tanh")]))
    x = x_for(km)
    want = keras_out(km, x)
    save(km, tmp_path / "m.keras")
    save(km, tmp_path / "m.h5")
    save(km, tmp_path / "m.weights.h5", weights_only=True)
    for name in ("m.keras", "m.h5"):
        assert_close(load_keras(tmp_path / name).predict(x), want, atol=FLOAT32_ATOL, name=name)
    model = create_rnn(**spec_to_config(spec_from_keras_model(km)))
    load_keras_weights(model, tmp_path / "m.weights.h5")
    assert_close(model.predict(x), want, atol=FLOAT32_ATOL, name="m.weights.h5")


def test_eleven_layers_with_dropouts_between_weights_file(tmp_path):
    # Keras 3 numbers weight groups per class in layer order: simple_rnn ... simple_rnn_10 (not
    # after simple_rnn_1), and the Dropouts between them do not shift the SimpleRNN counter.
    units = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    layers = [keras.Input((3, 2))]
    for i, u in enumerate(units):
        layers.append(L.SimpleRNN(u, return_sequences=i < len(units) - 1))
        layers.append(L.Dropout(0.1))
    km = random_weights(keras.Sequential(layers + [L.Dense(1)]))
    save(km, tmp_path / "deep.weights.h5", weights_only=True)
    save(km, tmp_path / "deep.keras")
    x = x_for(km)
    model = load_keras_weights(create_rnn(units, 1, (3, 2), ("tanh", "linear")), tmp_path / "deep.weights.h5")
    assert_close(model.predict(x), keras_out(km, x), atol=FLOAT32_ATOL, name="deep .weights.h5")
    assert_close(load_keras(tmp_path / "deep.keras").predict(x), keras_out(km, x), atol=FLOAT32_ATOL, name="deep .keras")
