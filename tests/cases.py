"""Inputs shared by several test files: the handed cases' weights and a Keras twin of create_rnn."""
from __future__ import annotations

import warnings

import numpy as np

from hypothesis import strategies as st

from parity import FLOAT32_ATOL, numpy_forward
from torchrnn import ACTIVATIONS

# Handed case K2: the tutorial's demo model with fixed weights, Keras order.
K2_WEIGHTS = [np.array([[1.0, -0.5]]), np.array([[0.5, 0.1], [-0.2, 0.3]]), np.array([0.1, -0.1]),
              np.array([[1.0], [2.0]]), np.array([0.5])]
K2_X = np.array([1.0, 2.0, 3.0], dtype=np.float32).reshape(1, 3, 1)

# Handed case K3: two features; the flat input is reshaped to (1, 3, 2).
K3_WEIGHTS = [np.array([[0.3, -0.6], [0.8, 0.2]]), np.array([[0.5, -0.4], [0.1, 0.9]]), np.array([0.05, -0.05]),
              np.array([[0.7], [-1.1]]), np.array([0.2])]
K3_FLAT = np.array([1, 0.1, 2, 0.2, 3, 0.3])
K3_X = K3_FLAT.astype(np.float32).reshape(1, 3, 2)


def keras_create_rnn(hidden_units, dense_units, input_shape, activation, *, use_bias=True,
                     return_sequences=False, go_backwards=False, seed=0):
    """The tutorial's create_RNN in Keras 3, generalised the way torchrnn.create_rnn is."""
    import keras

    units = hidden_units if isinstance(hidden_units, (list, tuple)) else [hidden_units]
    n = len(units)

    def per(v):
        return list(v) if isinstance(v, (list, tuple)) else [v] * n

    rnn_act, biases, backwards = per(activation[0]), per(use_bias), per(go_backwards)
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape=input_shape)]
    for i, u in enumerate(units):
        layers.append(keras.layers.SimpleRNN(u, activation=rnn_act[i], use_bias=biases[i], go_backwards=backwards[i],
                                             return_sequences=(i < n - 1) or return_sequences))
    if dense_units is not None:
        layers.append(keras.layers.Dense(dense_units, activation=activation[1]))
    return keras.Sequential(layers)


def keras_save(km, path, weights_only=False):
    """Keras's own saving warns about itself (HDF5 is legacy; a NumPy 2 __array__ note): not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (km.save_weights if weights_only else km.save)(str(path))


def float32_atol_for(model, x):
    """FLOAT32_ATOL, scaled by the largest magnitude that flows through the layers.

    A float32 rounding error is relative to the numbers being added: log_softmax states near -20
    feed errors of ~20 * 1e-7 per step into the next layer, and Keras itself then differs from the
    float64 referee by ~6e-5 on outputs of size 1. For states of size <= 1 this is FLOAT32_ATOL.
    """
    fwd = numpy_forward(model.get_weights(), x, config=model.config, return_states=True)
    scale = max([1.0] + [float(np.max(np.abs(s))) for s in fwd.states] + [float(np.max(np.abs(fwd.output)))])
    return FLOAT32_ATOL * scale


@st.composite
def model_configs(draw, rnn_activations=None, with_seed=False):
    """create_rnn arguments over the space the issues name: 1-3 stacked layers of 1-16 units,
    1-30 steps, 1-5 features, any activation pair, use_bias / go_backwards per layer,
    return_sequences; ``with_seed`` adds a seed for the Keras initialisers."""
    names = sorted(ACTIVATIONS)
    rnn_names = names if rnn_activations is None else list(rnn_activations)
    layers = draw(st.integers(1, 3))
    cfg = dict(
        hidden_units=[draw(st.integers(1, 16)) for _ in range(layers)],
        dense_units=draw(st.integers(1, 3)),
        input_shape=(draw(st.integers(1, 30)), draw(st.integers(1, 5))),
        activation=([draw(st.sampled_from(rnn_names)) for _ in range(layers)], draw(st.sampled_from(names))),
        use_bias=[draw(st.booleans()) for _ in range(layers)],
        go_backwards=[draw(st.booleans()) for _ in range(layers)],
        return_sequences=draw(st.booleans()),
    )
    if with_seed:
        cfg["seed"] = draw(st.integers(0, 2**31 - 1))
    return cfg
