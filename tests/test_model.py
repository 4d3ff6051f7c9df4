"""The torch model against the handed cases' golden values (K1-K4, K8) and its own contract."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from parity import FLOAT32_ATOL, GOLDEN_ATOL, assert_close, numpy_forward
from cases import K2_WEIGHTS, K2_X, K3_FLAT, K3_WEIGHTS, float32_atol_for
from torchrnn import RNNConfig, create_rnn, create_rnn_from_config

def k1_model(go_backwards):
    m = create_rnn(4, None, (3, 4), ("tanh", "linear"), go_backwards=go_backwards)
    m.set_weights([np.full((4, 4), 0.01), np.full((4, 4), 0.02), np.full((4,), 0.03)])
    return m


@pytest.mark.parametrize("go_backwards, s0, s1", [(False, 0.40543202, 0.7360534), (True, 0.1114473, 0.55288875)])
@pytest.mark.parametrize("fused", [True, False])
def test_k1_keras_golden_values(go_backwards, s0, s1, fused):
    m = k1_model(go_backwards).use_fused_kernel(fused)
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    expected = np.array([[s0] * 4, [s1] * 4])
    assert_close(m(x), expected, atol=GOLDEN_ATOL, name=f"K1 go_backwards={go_backwards} fused={fused}")


def test_k2_linear_hidden_states_and_output():
    m = create_rnn(2, 1, (3, 1), ("linear", "linear"))
    m.set_weights(K2_WEIGHTS)
    states = m.hidden_states(torch.tensor(K2_X, dtype=torch.float32))[0]
    assert_close(states[0], [[1.1, -0.6], [2.77, -1.17], [4.719, -1.674]], atol=GOLDEN_ATOL, name="K2 h1..h3")
    assert_close(m.predict(K2_X), [[1.8709998]], atol=GOLDEN_ATOL, name="K2 linear output")


@pytest.mark.parametrize("fused", [True, False])
def test_k2_tanh_output(fused):
    m = create_rnn(2, 1, (3, 1), ("tanh", "tanh")).use_fused_kernel(fused)
    m.set_weights(K2_WEIGHTS)
    assert_close(m.predict(K2_X), [[-0.3659179]], atol=GOLDEN_ATOL, name="K2 tanh output")


def test_k2_known_mistakes_give_other_numbers():
    """The faults K2 names produce the values it names, so the golden test above catches them."""
    wx, wh, b, wy, by = K2_WEIGHTS
    untransposed = numpy_forward([wx, wh.T, b, wy, by], K2_X)
    assert_close(untransposed, [[-0.41229114]], atol=GOLDEN_ATOL, name="recurrent matrix not transposed")
    # Keras's bias copied into both biases of a torch nn.RNN counts it twice.
    rnn = torch.nn.RNN(1, 2, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(wx.T))
        rnn.weight_hh_l0.copy_(torch.tensor(wh.T))
        rnn.bias_ih_l0.copy_(torch.tensor(b))
        rnn.bias_hh_l0.copy_(torch.tensor(b))
        h = rnn(torch.tensor(K2_X, dtype=torch.float32))[0][:, -1]
        doubled = torch.tanh(h @ torch.tensor(wy, dtype=torch.float32) + torch.tensor(by, dtype=torch.float32))
    assert_close(doubled, [[-0.38514036]], atol=GOLDEN_ATOL, name="bias copied into both torch biases")


def test_k2_parameter_counts_match_keras():
    assert create_rnn(2, 1, (3, 1), ("linear", "linear")).count_params() == 11
    assert create_rnn(3, 1, (12, 1), ("tanh", "tanh")).count_params() == 19
    plain = torch.nn.ModuleList([torch.nn.RNN(1, 2), torch.nn.Linear(2, 1)])
    assert sum(p.numel() for p in plain.parameters()) == 13  # the fault the one-bias layer avoids


def test_k2_bias_gradient_is_keras_gradient():
    """One bias vector receives dL/db once; nn.RNN's two biases would each get it (twice the step)."""
    m64 = create_rnn(2, 1, (3, 1), ("tanh", "tanh")).double()
    m64.set_weights(K2_WEIGHTS)
    x = torch.tensor(K2_X, dtype=torch.float64)
    m64(x).sum().backward()
    eps = 1e-6
    num = []
    for i in range(2):
        bp, bm = [w.copy() for w in K2_WEIGHTS], [w.copy() for w in K2_WEIGHTS]
        bp[2][i] += eps
        bm[2][i] -= eps
        num.append((numpy_forward(bp, K2_X) - numpy_forward(bm, K2_X)).item() / (2 * eps))
    rnn_layer = m64.rnn[0]
    assert_close(rnn_layer.bias.grad, num, atol=1e-8, name="bias gradient vs central difference")


def test_k3_multi_feature_gives_one_number():
    m = create_rnn(2, 1, (3, 2), ("tanh", "linear"))
    m.set_weights(K3_WEIGHTS)
    out = m.predict(K3_FLAT.reshape(1, 3, 2))
    assert_close(out, [[1.9231117]], atol=GOLDEN_ATOL, name="K3 output")
    for bad in (K3_FLAT, K3_FLAT.reshape(3, 2)):
        with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3, 2\), got"):
            m.predict(bad)


def test_k4_recurrence_is_additive():
    w = [np.array([[0.5, -1.0]]), np.array([[0.3, 0.2], [0.1, 0.4]]), np.array([0.1, 0.2])]
    m = create_rnn(2, None, (3, 1), ("tanh", "linear"))
    m.set_weights(w)
    for fused in (True, False):
        assert_close(m.use_fused_kernel(fused).predict([[1.0, 2.0, 3.0]]), [[0.94177427, -0.99522895]],
                     atol=GOLDEN_ATOL, name=f"K4 final state fused={fused}")


def test_k8_float64_input_equals_float32_input_exactly():
    m = create_rnn(3, 1, (12, 1), seed=3)
    x64 = np.random.default_rng(0).random((187, 12))
    out64 = m.predict(x64)
    out32 = m.predict(x64.astype(np.float32))
    assert out64.shape == (187, 1)
    np.testing.assert_array_equal(out64, out32)
    # the 2-D array is read as (187, 12, 1), not as one sequence of 187 steps
    assert_close(out64, m.predict(x64[:, :, None]), atol=0.0, name="2-D vs explicit 3-D")


def test_k8_shape_errors_name_both_shapes():
    m = create_rnn(3, 1, (12, 1))
    with pytest.raises(ValueError, match=r"\(batch, 12, 1\), got \(187, 10, 1\)"):
        m.predict(np.zeros((187, 10, 1)))
    with pytest.raises(ValueError, match=r"got \(12,\)"):
        m.predict(np.zeros(12))
    with pytest.raises(ValueError, match=r"input holds 24 non-finite values \(first nan at index \(0, 0, 0\)\)"):
        m.predict(np.full((2, 12, 1), np.nan))


def test_overflowing_output_is_an_error_not_a_nan():
    m = create_rnn(1, 1, (30, 1), ("exponential", "linear"))
    m.set_weights([np.array([[1.0]]), np.array([[1.0]]), np.array([1.0]), np.array([[1.0]]), np.array([0.0])])
    with pytest.raises(ValueError, match=r"output is not finite \(inf at index \(0, 0\)\)"):
        m.predict(np.ones((1, 30, 1)))


def test_variable_length_model_accepts_any_length():
    m = create_rnn([4, 3], 2, (None, 2), seed=1)
    assert m.predict(np.ones((5, 7, 2))).shape == (5, 2)
    assert m.predict(np.ones((5, 1, 2))).shape == (5, 2)


def test_get_weights_order_shapes_and_names():
    m = create_rnn([4, 3], 2, (5, 2), use_bias=[True, False], seed=0)
    shapes = [w.shape for w in m.get_weights()]
    assert shapes == [(2, 4), (4, 4), (4,), (4, 3), (3, 3), (3, 2), (2,)]
    assert m.weight_names() == ["simple_rnn/kernel", "simple_rnn/recurrent_kernel", "simple_rnn/bias",
                                "simple_rnn_1/kernel", "simple_rnn_1/recurrent_kernel", "dense/kernel", "dense/bias"]
    # get -> set -> get is the identity
    w = [np.random.default_rng(i).standard_normal(s) for i, s in enumerate(shapes)]
    m.set_weights(w)
    for got, want in zip(m.get_weights(), w):
        assert_close(got, want.astype(np.float32), atol=0.0, name="set/get round trip")


def test_set_weights_names_the_wrong_entry():
    m = create_rnn(2, 1, (3, 1))
    bad = [w.copy() for w in K2_WEIGHTS]
    bad[1] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"weight 1 \(simple_rnn/recurrent_kernel\) should have Keras shape \(2, 2\), got \(2, 3\)"):
        m.set_weights(bad)
    with pytest.raises(ValueError, match="expected 5 arrays"):
        m.set_weights(K2_WEIGHTS[:4])
    bad = [w.copy() for w in K2_WEIGHTS]
    bad[2] = np.array([np.nan, 0.0])
    with pytest.raises(ValueError, match=r"weight 2 \(simple_rnn/bias\) holds non-finite"):
        m.set_weights(bad)


def test_unknown_activation_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'tahn'; valid names: None, .*tanh"):
        create_rnn(2, 1, (3, 1), ("tahn", "linear"))
    with pytest.raises(ValueError, match="'glu' is not supported"):
        create_rnn(2, 1, (3, 1), ("tanh", "glu"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_units=0, dense_units=1, input_shape=(3, 1)), "hidden_units must be a positive integer, got 0"),
    (dict(hidden_units=2, dense_units=1, input_shape=(3,)), r"input_shape must be \(time_steps, features\)"),
    (dict(hidden_units=2, dense_units=1, input_shape=(3, 0)), r"input_shape\[1\] \(features\) must be"),
    (dict(hidden_units=[2, 2], dense_units=1, input_shape=(3, 1), use_bias=[True]), "use_bias has 1 entries"),
    (dict(hidden_units=2, dense_units=1.5, input_shape=(3, 1)), "dense_units must be a positive integer or None, got 1.5"),
])
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_rnn(**kwargs)


def test_config_round_trips_through_a_dict():
    m = create_rnn([3, 2], 1, (12, 1), (["relu", "tanh"], "sigmoid"), go_backwards=[True, False], seed=7)
    d = dataclasses.asdict(m.config)
    assert RNNConfig(**d) == m.config
    rebuilt = create_rnn_from_config(d)
    for a, b in zip(rebuilt.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)  # same seed -> same initial weights


def test_return_sequences_shape_and_values():
    m = create_rnn(3, 2, (6, 1), return_sequences=True, seed=0)
    x = np.random.default_rng(1).random((4, 6, 1))
    out = m.predict(x)
    assert out.shape == (4, 6, 2)
    assert_close(out, numpy_forward(m.get_weights(), x, config=m.config), atol=1e-6, name="sequence output")


def test_weights_beyond_float32_are_refused():
    bad = [w.copy() for w in K2_WEIGHTS]
    bad[0] = np.array([[1e39, -0.5]])
    m = create_rnn(2, 1, (3, 1))
    with pytest.raises(ValueError, match=r"weight 0 \(simple_rnn/kernel\) holds values beyond the range of torch.float32"):
        m.set_weights(bad)


def test_input_errors_say_what_was_given():
    m = create_rnn(3, 1, (12, 1))
    with pytest.raises(ValueError, match=r"got \(12, 1, 1\) \(read from a 2-D array of shape \(12, 1\)"):
        m.predict(np.random.default_rng(0).random((12, 1)))
    with pytest.raises(ValueError, match=r"beyond the range of the model's torch.float32"):
        m.predict(np.full((1, 12, 1), 1e39))
    with pytest.raises(ValueError, match=r"input is empty \(shape \(0, 12, 1\)\)"):
        m.predict(np.zeros((0, 12, 1)))
    # a float64 cast would drop the imaginary parts with a warning and go on
    with pytest.raises(ValueError, match=r"^input must be real, got complex128 values$"):
        m.predict(np.array([[1j, 2, 3]]))
    with pytest.raises(ValueError, match=r"^input must be real, got complex64 values$"):
        m.predict(np.ones((1, 12, 1), dtype=np.complex64))


def test_compare_never_excuses_nan_or_a_different_infinity():
    from parity import compare

    assert compare([np.inf], [np.inf], atol=1e-5, rtol=1e-5).ok
    for actual, expected in [([np.nan], [np.inf]), ([np.nan], [np.nan]), ([-np.inf], [np.inf]), ([1.0], [np.inf])]:
        assert not compare(actual, expected, atol=1e-5, rtol=1e-5).ok, (actual, expected)


# ---- predict: input conversion, default chunks --------------------------------------------

def test_float32_input_is_shared_not_copied():
    m = create_rnn(3, 1, (12, 1), seed=0)
    x = np.random.default_rng(0).random((50, 12, 1), dtype=np.float32)
    t = m.as_input(x)
    assert t.dtype == torch.float32 and np.shares_memory(t.numpy(), x)
    assert np.shares_memory(m.as_input(x[:, :, 0]).numpy(), x), "a 2-D (N, L) array is viewed as (N, L, 1)"
    x64 = x.astype(np.float64)
    t64 = m.as_input(x64)
    assert t64.dtype == torch.float32 and not np.shares_memory(t64.numpy(), x64)
    before = x.copy()
    np.testing.assert_array_equal(m.predict(x), m.predict(x64))
    np.testing.assert_array_equal(x, before)  # predict never writes into the array it shares


def test_arrays_torch_cannot_view_are_converted():
    m = create_rnn(3, 1, (12, 1), seed=0)
    x = np.random.default_rng(0).random((20, 12, 1), dtype=np.float32)
    want = m.predict(x)
    frozen = x.copy()
    frozen.flags.writeable = False  # torch.from_numpy would warn about it
    assert_close(m.predict(frozen), want, atol=0.0, name="read-only array")
    assert_close(m.predict(x[:, ::-1][:, ::-1]), want, atol=0.0, name="negative strides")
    assert_close(m.predict(x.astype(">f4")), want, atol=0.0, name="big-endian array")
    assert_close(m.predict(x.tolist()), want, atol=0.0, name="nested lists")
    assert_close(m.predict(np.ones((20, 12, 1), dtype=np.int64)), m.predict(np.ones((20, 12, 1))), atol=0.0,
                 name="integers")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value, index", [(np.nan, (1234, 3, 0)), (np.inf, (0, 0, 0)), (-np.inf, (2999, 11, 0))])
def test_non_finite_input_names_value_and_index(dtype, value, index):
    m = create_rnn(3, 1, (12, 1), seed=0)
    x = np.random.default_rng(0).random((3000, 12, 1)).astype(dtype)
    x[index] = value
    with pytest.raises(ValueError, match=re.escape(f"input holds 1 non-finite value (first {value!r} at index {index})")):
        m.predict(x)


def test_float64_beyond_float32_is_refused_not_made_infinite():
    m = create_rnn(3, 1, (12, 1), seed=0)
    x = np.random.default_rng(0).random((3000, 12, 1))
    x[1500, 6, 0] = -1e39  # finite in float64, -inf in float32
    with pytest.raises(ValueError, match=r"input holds 1 value beyond the range of the model's torch.float32 "
                                         r"\(first -1e\+39 at index \(1500, 6, 0\)\)"):
        m.predict(x)
    m64 = create_rnn(3, 1, (12, 1), seed=0).double()
    assert m64.predict(np.full((1, 12, 1), 1e39)).shape == (1, 1), "a float64 model takes it"


def test_default_chunk_sizes():
    """The documented defaults: state rows within 512 KB, a chunk's state buffers within 32 MB."""
    assert create_rnn(64, 1, (120, 8)).predict_batch_size((10_000, 120, 8)) == 2048
    assert create_rnn(3, 1, (12, 1)).predict_batch_size((100_000, 12, 1)) == 43690
    assert create_rnn(64, 1, (120, 8), return_sequences=True).predict_batch_size((10_000, 120, 8)) == 1092
    assert create_rnn([64, 64], 1, (120, 8)).predict_batch_size((10_000, 120, 8)) == 1074
    assert create_rnn(64, 1, (120, 8)).double().predict_batch_size((10_000, 120, 8)) == 1024
    assert create_rnn(3, 1, (12, 1)).predict_batch_size((187, 12, 1)) == 187, "all at once when they fit"
    assert create_rnn(512, 1, (None, 1), return_sequences=True).predict_batch_size((5, 20_000, 1)) == 1, \
        "at least one sequence, however long"
    fused_seq = create_rnn(64, 1, (120, 8)).use_fused_kernel(True).predict_batch_size((10_000, 120, 8))
    assert fused_seq == 1092, "the fused kernel keeps every step's state"


def _chunk_count(model, x, **kwargs):
    calls = []
    handle = model.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    try:
        out = model.predict(x, **kwargs)
    finally:
        handle.remove()
    return out, calls


@pytest.mark.parametrize("kwargs", [
    dict(hidden_units=5, dense_units=2),
    dict(hidden_units=5, dense_units=2, return_sequences=True),
    dict(hidden_units=[6, 4], dense_units=1, go_backwards=[False, True]),
    dict(hidden_units=[6, 4], dense_units=None, return_sequences=True, activation=("sigmoid", "linear")),
    dict(hidden_units=4, dense_units=3, activation=("softmax", "tanh"), use_bias=False),
], ids=["last_state", "return_sequences", "stacked", "stacked_sequences_no_dense", "softmax_no_bias"])
def test_default_chunks_equal_one_batch(monkeypatch, kwargs):
    import torchrnn.model as M

    m = create_rnn(input_shape=(9, 3), seed=4, **kwargs)
    x = np.random.default_rng(1).uniform(-1, 1, (2500, 9, 3)).astype(np.float32)
    whole, calls = _chunk_count(m, x, batch_size=len(x))
    assert calls == [2500]
    # Budgets small enough for 1000 sequences a chunk: 3 chunks, the last one short.
    kept_per_sequence = sum(l.units * (9 if l.return_sequences else 2) for l in m.rnn) * 4
    monkeypatch.setattr(M, "PREDICT_ROW_BYTES", 1000 * max(l.units for l in m.rnn) * 4)
    monkeypatch.setattr(M, "PREDICT_CHUNK_BYTES", 1000 * kept_per_sequence)
    assert m.predict_batch_size(x.shape) == 1000
    chunked, calls = _chunk_count(m, x)
    assert calls == [1000, 1000, 500]
    assert chunked.flags.c_contiguous and chunked.shape == whole.shape
    assert_close(chunked, whole, atol=FLOAT32_ATOL, name=f"default chunks vs one batch {kwargs}")
    explicit, calls = _chunk_count(m, x, batch_size=999)
    assert calls == [999, 999, 502], "an explicit batch size overrides the default"
    assert_close(explicit, whole, atol=FLOAT32_ATOL, name="batch size 999 vs one batch")
    assert_close(whole, numpy_forward(m.get_weights(), x.astype(np.float64), config=m.config),
                 atol=float32_atol_for(m, x), name="one batch vs the NumPy referee")


def test_a_bare_simple_rnn_takes_its_activation_alone_and_gives_its_last_state():
    # the README's no-Dense route: create_rnn(units, None, shape, "tanh") once failed with
    # "activation must be a pair"; its predict is the last of hidden_states, by the hand computation
    x = np.random.default_rng(7).uniform(-1, 1, (2, 3, 4))
    for act in ("tanh", ("tanh",), ["tanh"]):
        m = create_rnn(4, None, (3, 4), act, seed=3)
        assert m.config.activation == (("tanh",), "linear") and m.count_params() == 4 * 4 + 4 * 4 + 4
        out = m.predict(x)
        states = m.hidden_states(x)[0].detach().numpy()
        wx, wh, b = (w.astype(np.float64) for w in m.get_weights())
        h = np.zeros((2, 4))
        for t in range(3):
            h = np.tanh(x[:, t] @ wx + h @ wh + b)
            assert_close(states[:, t], h, atol=FLOAT32_ATOL, name=f"h{t + 1}")
        assert out.shape == (2, 4)
        assert_close(out, states[:, -1], atol=FLOAT32_ATOL, name="predict = last state")  # other kernels: ulps
    with pytest.raises(ValueError, match=r"activation must be a pair \(rnn, dense\), got 'tanh' \(one name alone"):
        create_rnn(4, 1, (3, 4), "tanh")
