"""torchrnn beside real Keras 3: same weights in Keras order, same outputs, same gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parity import FLOAT32_ATOL, GOLDEN_ATOL, assert_close, numpy_forward
from parity.check import assert_parity, check
from torchrnn import create_rnn

keras = pytest.importorskip("keras", reason="the test extra installs Keras; pip install '.[test]'")

from cases import K2_WEIGHTS, K2_X, K3_FLAT, K3_WEIGHTS, float32_atol_for, model_configs, keras_create_rnn  # noqa: E402


def test_tutorial_demo_three_ways():
    km = keras_create_rnn(2, 1, (3, 1), ("linear", "linear"))
    km.set_weights(K2_WEIGHTS)
    m = create_rnn(2, 1, (3, 1), ("linear", "linear"))
    m.set_weights(km.get_weights())
    assert km.count_params() == m.count_params() == 11
    report = assert_parity(m, K2_X, keras_model=km)
    assert report.implementations == ["torch", "numpy", "keras"]
    assert_close(km.predict(K2_X, verbose=0), [[1.8709998]], atol=GOLDEN_ATOL, name="Keras K2")


def test_k3_multi_feature_in_keras():
    km = keras_create_rnn(2, 1, (3, 2), ("tanh", "linear"))
    km.set_weights(K3_WEIGHTS)
    assert_close(km.predict(K3_FLAT.reshape(1, 3, 2), verbose=0), [[1.9231117]], atol=GOLDEN_ATOL, name="Keras K3")
    m = create_rnn(2, 1, (3, 2), ("tanh", "linear"))
    m.set_weights(km.get_weights())
    assert_parity(m, K3_FLAT.reshape(1, 3, 2), keras_model=km)


def test_parameter_counts_and_weight_shapes_match_keras():
    for args in [(2, 1, (3, 1)), (3, 1, (12, 1)), ([8, 4, 2], 3, (7, 5))]:
        km = keras_create_rnn(*args, ("tanh", "tanh"))
        m = create_rnn(*args)
        assert m.count_params() == km.count_params(), args
        assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in km.get_weights()], args


def test_gradients_match_keras():
    """Same loss, same weights: every gradient, the single bias included, equals Keras's."""
    import tensorflow as tf

    km = keras_create_rnn([3, 2], 1, (12, 1), ("tanh", "tanh"))
    m = create_rnn([3, 2], 1, (12, 1))
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in km.get_weights()]
    km.set_weights(weights)
    m.set_weights(weights)
    x = rng.uniform(0, 1, (5, 12, 1)).astype(np.float32)
    y = rng.uniform(0, 1, (5, 1)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(km(x, training=True) - y))
    kgrads = tape.gradient(loss, km.trainable_weights)
    tloss = torch.nn.functional.mse_loss(m(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    slots = m._keras_slots()
    assert len(slots) == len(kgrads)
    for (name, p, transposed), kg in zip(slots, kgrads):
        g = p.grad.T if transposed else p.grad
        assert_close(g, kg.numpy(), atol=1e-6, name=f"gradient of {name}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=model_configs(), seed=st.integers(0, 10_000))
def test_random_keras_models_match_through_keras_order_weights(cfg, seed):
    km = keras_create_rnn(**cfg, seed=seed)
    rng = np.random.default_rng(seed)
    km.set_weights([w if w.ndim == 2 else rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in km.get_weights()])
    m = create_rnn(**cfg)
    m.set_weights(km.get_weights())
    x = rng.uniform(-1, 1, (3, *cfg["input_shape"])).astype(np.float32)
    # 'exponential' fed back into itself overflows float32 in Keras as in torch (and hard_shrink or a
    # sigmoid can hide the inf from the output): not a parity question.
    with np.errstate(all="ignore"):
        fwd = numpy_forward(m.get_weights(), x, config=m.config, return_states=True)
    assume(all(np.all(np.abs(a) < 1e6) for a in [fwd.output, *fwd.states]))
    report = check(m, x, keras_model=km, atol=float32_atol_for(m, x), rtol=FLOAT32_ATOL)
    assert report.ok, f"{cfg}\n{report.table()}"



@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`:UserWarning")
@pytest.mark.parametrize("source", ["eval", "file"])
def test_custom_activation_from_a_live_model_is_named_not_a_traceback(source):
    """A lambda typed at a prompt has no source code, and Keras's to_json raised a bare OSError
    ("could not get source code"); one from a file gets through to_json and is refused by name."""
    from parity import from_keras
    from parity.keras_files import KerasFileError

    act = eval("lambda x: x * 2.0") if source == "eval" else (lambda x: x * 2.0)
    km = keras.Sequential([keras.Input((3, 1)), keras.layers.SimpleRNN(2, activation=act), keras.layers.Dense(1)])
    with pytest.raises(KerasFileError, match="custom activation|custom or layer activation") as e:
        from_keras(km)
    assert "named activations" in str(e.value)


def test_check_against_a_keras_file_of_another_model_names_the_difference():
    """check(model, keras_path=...) with a file of another architecture used to end in Keras's own
    shape error ("expected shape=(None, 5, 2), found shape=(8, 12)")."""
    from pathlib import Path

    from parity import load_keras
    from parity.keras_files import KerasFileError

    fixtures = Path(__file__).parent / "fixtures" / "keras"
    model = load_keras(fixtures / "demo_tanh.keras")
    report = check(model, keras_path=fixtures / "demo_tanh.keras")
    assert report.ok and report.implementations == ["torch", "numpy", "keras"]
    with pytest.raises(KerasFileError) as e:
        check(model, keras_path=fixtures / "multifeature.keras")
    assert "multifeature.keras is a full model built otherwise than the torch model" in str(e.value)
    assert "input_shape[1] (features): file 2, model 1" in str(e.value)
