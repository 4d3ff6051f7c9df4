"""Keras's default initializers: distributions, not single draws."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import torchrnn.init
from torchrnn import cli, create_rnn, fit
from torchrnn.init import glorot_uniform, make_generator, orthogonal

ORTHO_ATOL = 1e-5  # float32 rounding of an exactly orthogonal float64 QR factor is ~1e-7


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (16, 16), (64, 64), (5, 3), (3, 5)])
def test_orthogonal_is_orthogonal(shape):
    q = orthogonal(shape, make_generator(0)).double()
    small = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram.numpy(), np.eye(small), atol=ORTHO_ATOL, err_msg=f"Q^T Q != I for {shape}")


def test_orthogonal_is_haar_not_biased_by_qr_signs():
    """Without folding sign(diag R) into Q, LAPACK's QR gives a biased Q[0, 0]."""
    first = np.array([orthogonal((4, 4), make_generator(s))[0, 0].item() for s in range(2000)])
    # For Haar-random 4x4 orthogonal matrices, Q[0,0] is symmetric around 0 with variance 1/4.
    assert abs(first.mean()) < 4 * math.sqrt(0.25 / 2000), first.mean()
    assert abs(first.var() - 0.25) < 0.03, first.var()


def test_recurrent_kernel_of_the_model_is_orthogonal():
    m = create_rnn([16, 8], 1, (12, 3), seed=11)
    for i, r in enumerate(m.get_weights()[1::3][:2]):
        np.testing.assert_allclose(r.T.astype(np.float64) @ r, np.eye(r.shape[0]), atol=ORTHO_ATOL,
                                   err_msg=f"layer {i} recurrent kernel")


@pytest.mark.parametrize("shape", [(200, 300), (1, 3), (12, 1)])
def test_glorot_uniform_bound_and_distribution(shape):
    limit = math.sqrt(6.0 / sum(shape))
    draws = np.concatenate([glorot_uniform(shape, make_generator(s)).numpy().ravel() for s in range(max(1, 3000 // (shape[0] * shape[1])))])
    assert np.all(np.abs(draws) <= limit), (np.abs(draws).max(), limit)
    assert np.abs(draws).max() > 0.9 * limit  # the bound is used, not a narrower range
    ks = stats.kstest(draws, stats.uniform(loc=-limit, scale=2 * limit).cdf)
    assert ks.pvalue > 1e-3, f"not U(-{limit}, {limit}): KS p = {ks.pvalue}"


def test_model_kernels_use_the_glorot_bound_of_their_keras_shape():
    m = create_rnn(16, 4, (12, 5), seed=2)
    kernel, _, bias, dense_kernel, dense_bias = m.get_weights()
    assert np.abs(kernel).max() <= math.sqrt(6 / (5 + 16))
    assert np.abs(dense_kernel).max() <= math.sqrt(6 / (16 + 4))
    assert not np.any(bias) and not np.any(dense_bias)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (create_rnn([3, 2], 1, (12, 2), seed=s).get_weights() for s in (5, 5, 6))
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert all(not np.array_equal(wa, wc) for wa, wc in zip(a, c) if np.any(wa))


def test_no_seed_follows_torch_global_generator():
    torch.manual_seed(123)
    a = create_rnn(3, 1, (12, 1)).get_weights()
    torch.manual_seed(123)
    b = create_rnn(3, 1, (12, 1)).get_weights()
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def test_seeded_model_leaves_torch_global_generator_alone():
    state = torch.random.get_rng_state()
    create_rnn([4, 3], 2, (12, 2), seed=9)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("seed, needle", [
    (1.5, "seed must be an integer or None, got 1.5"),
    (2.0, "seed must be an integer or None, got 2.0"),
    (True, "seed must be an integer or None, got True"),
    (np.bool_(False), "seed must be an integer or None, got"),
    ("a", "seed must be an integer or None, got 'a'"),
    (2**70, f"seed must be an integer from 0 to 2**32 - 1 (torch's CPU generator keeps 32 bits of a seed), "
            f"got {2**70}"),
    (2**32, f"got {2**32}"),  # torch would give seed 0's run
    (-1, "got -1"),           # torch would give seed 2**32 - 1's run

])
def test_create_rnn_and_fit_refuse_seeds_they_would_truncate_or_overflow(seed, needle):
    # create_rnn(seed=1.5) used to build the seed-1 model silently, while fit refused 1.5.
    with pytest.raises(ValueError) as info:
        create_rnn(2, 1, (3, 1), seed=seed)
    assert needle in str(info.value)
    with pytest.raises(ValueError) as info:
        fit(create_rnn(2, 1, (3, 1), seed=0), np.zeros((2, 3, 1)), np.zeros((2, 1)), epochs=1, seed=seed)
    assert needle in str(info.value)


def test_seeds_at_the_ends_of_the_range_and_numpy_integers_work_and_differ():
    weights = {}
    for seed in (0, 2**32 - 1, np.int64(5), np.uint32(2**32 - 2)):
        m = create_rnn(2, 1, (3, 1), seed=seed)
        assert m.config.seed == int(seed)
        weights[int(seed)] = np.concatenate([w.ravel() for w in m.get_weights()])
    # every seed taken gives a model of its own (2**32 used to give seed 0's)
    vs = list(weights.values())
    assert all(not np.array_equal(a, b) for i, a in enumerate(vs) for b in vs[i + 1:])
    assert torchrnn.init.SEED_RANGE == cli.SEED_RANGE and torchrnn.init.SEED_RANGE_TEXT == cli.SEED_RANGE_TEXT
