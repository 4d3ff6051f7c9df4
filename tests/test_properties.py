"""Property tests over random configurations: fused kernel == step loop, float64 == NumPy referee, and
predict's no-grad loop in default chunks == the training forward in one batch."""
from __future__ import annotations

from unittest import mock

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parity import FLOAT32_ATOL, FLOAT64_ATOL, assert_close, numpy_forward
from cases import float32_atol_for, model_configs
from torchrnn import create_rnn

def configs(rnn_activations=None):
    return model_configs(rnn_activations, with_seed=True)


def _random_bias(model, seed):
    """Keras starts biases at zero; give them values so a bias fault cannot hide."""
    rng = np.random.default_rng(seed)
    model.set_weights([w if w.ndim == 2 else rng.uniform(-0.5, 0.5, w.shape) for w in model.get_weights()])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(rnn_activations=["tanh", "relu"]), batch=st.integers(1, 4))
def test_fused_kernel_equals_step_loop(cfg, batch):
    model = create_rnn(**cfg)
    _random_bias(model, cfg["seed"])
    x = torch.from_numpy(np.random.default_rng(cfg["seed"]).uniform(-1, 1, (batch, *cfg["input_shape"])).astype(np.float32))
    with torch.no_grad():
        fused = model.use_fused_kernel(True)(x)
        loop = model.use_fused_kernel(False)(x)
    # Both are float32 with different summation orders: rtol covers relu's unbounded growth.
    assert_close(fused, loop, atol=FLOAT32_ATOL, rtol=FLOAT32_ATOL, name=f"fused vs loop {cfg}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), batch=st.integers(1, 4), fused=st.booleans())
def test_float64_model_matches_numpy_reference(cfg, batch, fused):
    model = create_rnn(**cfg).double().use_fused_kernel(fused)
    _random_bias(model, cfg["seed"])
    x = np.random.default_rng(cfg["seed"] + 1).uniform(-1, 1, (batch, *cfg["input_shape"]))
    with np.errstate(all="ignore"):
        fwd = numpy_forward(model.get_weights(), x, config=model.config, return_states=True)
    ref = fwd.output
    # 'exponential' stacked over 30 steps can overflow float64 (and an activation such as
    # hard_shrink may then hide the inf); that is not a parity question.
    assume(all(np.all(np.isfinite(a)) and np.max(np.abs(a)) < 1e6 for a in [ref, *fwd.states]))
    out = model.predict(x)
    assert out.dtype == np.float64
    # rtol of the same size keeps the check meaningful for values far from 1 (relu, exponential).
    assert_close(out, ref, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL, name=f"float64 torch vs numpy {cfg}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), batch=st.integers(2, 40), chunk=st.integers(1, 39))
def test_inference_loop_and_default_chunks_equal_the_training_forward(cfg, batch, chunk):
    """predict's no-grad step loop, in default chunks of ``chunk`` sequences, against the forward
    of the loop that training runs (its own autograd node), in one batch."""
    import torchrnn.model as M

    model = create_rnn(**cfg).use_fused_kernel(False)
    _random_bias(model, cfg["seed"])
    x = np.random.default_rng(cfg["seed"] + 2).uniform(-1, 1, (batch, *cfg["input_shape"])).astype(np.float32)
    train_forward = model(torch.from_numpy(x)).detach().numpy()  # gradients on: the training path
    assume(np.all(np.isfinite(train_forward)) and np.max(np.abs(train_forward)) < 1e6)
    widest = max(layer.units for layer in model.rnn)
    with mock.patch.object(M, "PREDICT_ROW_BYTES", chunk * widest * 4), \
            mock.patch.object(M, "PREDICT_CHUNK_BYTES", 2**40):
        assert model.predict_batch_size(x.shape) == min(chunk, batch)
        out = model.predict(x)
    with np.errstate(all="ignore"):
        atol = float32_atol_for(model, x)
    assert_close(out, train_forward, atol=atol, rtol=FLOAT32_ATOL,
                 name=f"predict in chunks of {chunk} vs training forward {cfg}")
