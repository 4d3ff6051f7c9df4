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

