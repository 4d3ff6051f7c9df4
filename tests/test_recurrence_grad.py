"""The step loop's own backward pass (one autograd node per sequence) against plain autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parity import assert_close
from torchrnn import ACTIVATIONS, create_rnn
from torchrnn.layers import _ELEMENTWISE, _Recurrence

GRAD_ATOL = 1e-10  # float64 gradients: the two computations differ only in summation order


def plain_autograd_states(xp, weight_hh, act):
    h = xp.new_zeros(xp.shape[0], xp.shape[2])
    out = []
    for t in range(xp.shape[1]):
        h = act(xp[:, t] + h @ weight_hh.t())
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", sorted(_ELEMENTWISE))
def test_gradcheck_every_elementwise_activation(name):
    g = torch.Generator().manual_seed(0)
    xp = (torch.rand(2, 5, 3, generator=g, dtype=torch.float64) - 0.5).requires_grad_(True)
    w = (torch.rand(3, 3, generator=g, dtype=torch.float64) - 0.5).requires_grad_(True)
    act = ACTIVATIONS[name]
    # kinks (relu at 0, shrink thresholds) are measure-zero for these random inputs
    assert torch.autograd.gradcheck(lambda a, b: _Recurrence.apply(a, b, act), (xp, w), eps=1e-6, atol=1e-7)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_ELEMENTWISE)), n=st.integers(1, 4), steps=st.integers(1, 20),
       units=st.integers(1, 8), seed=st.integers(0, 1000))
def test_custom_backward_equals_plain_autograd(name, n, steps, units, seed):
    g = torch.Generator().manual_seed(seed)
    xp = (torch.rand(n, steps, units, generator=g, dtype=torch.float64) - 0.5)
    w = (torch.rand(units, units, generator=g, dtype=torch.float64) - 0.5)
    upstream = torch.rand(n, steps, units, generator=g, dtype=torch.float64)
    act = ACTIVATIONS[name]
    grads = []
    for fn in (lambda a, b: _Recurrence.apply(a, b, act), lambda a, b: plain_autograd_states(a, b, act)):
        a, b = xp.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = fn(a, b)
        (out * upstream).sum().backward()
        grads.append((out.detach(), a.grad, b.grad))
    # exponential fed back into itself can overflow float64: not a question about the backward pass
    assume(all(bool(torch.isfinite(t).all()) and float(t.abs().max()) < 1e6 for t in grads[1]))
    for label, mine, ref in zip(("states", "d/dxp", "d/dW_hh"), grads[0], grads[1]):
        assert_close(mine, ref, atol=GRAD_ATOL, rtol=GRAD_ATOL, name=f"{name} {label}")


def test_model_gradients_through_step_loop_equal_fused_kernel():
    """tanh has both paths: the custom backward must give the fused kernel's gradients."""
    m = create_rnn([5, 4], 2, (9, 3), seed=4).double()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, 9, 3)))
    grads = []
    for fused in (True, False):
        m.zero_grad()
        m.use_fused_kernel(fused)(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for (name, _), a, b in zip(m.named_parameters(), *grads):
        assert_close(b, a, atol=GRAD_ATOL, rtol=GRAD_ATOL, name=f"grad {name}")
