"""The step loop's own autograd node (a whole SimpleRNN layer) against plain autograd."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parity import assert_close
from torchrnn import ACTIVATIONS, create_rnn
from torchrnn.layers import _ELEMENTWISE, _SequenceFn

GRAD_ATOL = 1e-10  # float64 gradients: the two computations differ only in summation order


def plain_autograd_layer(x, w_ih, b, w_hh, act):
    """The SimpleRNN recurrence written the obvious way; autograd differentiates it op by op."""
    h = x.new_zeros(x.shape[0], w_hh.shape[0])
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.t() + h @ w_hh.t()
        h = act(z if b is None else z + b)
        out.append(h)
    return torch.stack(out, 1)


def _tensors(seed, n, steps, feats, units, bias=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) - 0.5).requires_grad_(True)

    return r(n, steps, feats), r(units, feats), (r(units) if bias else None), r(units, units)


@pytest.mark.parametrize("last_only", [False, True], ids=["sequence", "last_state"])
@pytest.mark.parametrize("name", sorted(_ELEMENTWISE))
def test_gradcheck_every_elementwise_activation(name, last_only):
    x, w_ih, b, w_hh = _tensors(0, 2, 5, 2, 3)
    # kinks (relu at 0, shrink thresholds) are measure-zero for these random inputs
    assert torch.autograd.gradcheck(lambda *a: _SequenceFn.apply(*a, name, last_only), (x, w_ih, b, w_hh),
                                    eps=1e-6, atol=1e-7)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_ELEMENTWISE)), n=st.integers(1, 4), steps=st.integers(1, 20),
       feats=st.integers(1, 4), units=st.integers(1, 8), bias=st.booleans(), last_only=st.booleans(),
       seed=st.integers(0, 1000))
def test_own_node_equals_plain_autograd(name, n, steps, feats, units, bias, last_only, seed):
    """Outputs and every gradient; with ``last_only`` the node returns (N, H) and the reference
    is the plain loop's last state."""
    act = ACTIVATIONS[name]
    shape = (n, units) if last_only else (n, steps, units)
    upstream = torch.rand(*shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)

    def plain(*a):
        seq = plain_autograd_layer(*a, act)
        return seq[:, -1] if last_only else seq

    results = []
    for fn in (lambda *a: _SequenceFn.apply(*a, name, last_only), plain):
        inputs = _tensors(seed, n, steps, feats, units, bias)
        out = fn(*inputs)
        assert out.shape == shape
        (out * upstream).sum().backward()
        results.append([out.detach()] + [t.grad for t in inputs if t is not None])
    # exponential fed back into itself can overflow float64: not a question about the backward pass
    assume(all(bool(torch.isfinite(t).all()) and float(t.abs().max()) < 1e6 for t in results[1]))
    labels = ["states", "d/dx", "d/dW_ih"] + (["d/db"] if bias else []) + ["d/dW_hh"]
    for label, mine, ref in zip(labels, *results):
        assert_close(mine, ref, atol=GRAD_ATOL, rtol=GRAD_ATOL, name=f"{name} {label}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("last_only", [False, True], ids=["sequence", "last_state"])
@pytest.mark.parametrize("name", ["tanh", "linear", "sigmoid"])
@pytest.mark.parametrize("n, units", [(3, 5), (40, 32)], ids=["numpy_loop", "torch_loop"])
def test_own_node_on_both_sides_of_the_small_row_threshold(name, last_only, n, units, dtype):
    """Rows under layers._SMALL_ROW values run the loops in NumPy (tanh, linear), larger ones in
    torch: both must be plain autograd's numbers (float64 to 1e-10, float32 to 1e-5)."""
    from torchrnn.layers import _SMALL_ROW, _numpy_loop
    steps, feats = 7, 3
    numpy_side = n * units < _SMALL_ROW
    assert numpy_side == (n == 3)
    assert _numpy_loop(torch.empty(steps, n, units, dtype=dtype), name) == (numpy_side and name != "sigmoid")
    shape = (n, units) if last_only else (n, steps, units)
    upstream = torch.rand(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
    results = []
    for fn in (lambda *a: _SequenceFn.apply(*a, name, last_only),
               lambda *a: (lambda seq: seq[:, -1] if last_only else seq)(plain_autograd_layer(*a, ACTIVATIONS[name]))):
        inputs = [t.detach().to(dtype).requires_grad_(True) for t in _tensors(2, n, steps, feats, units)]
        out = fn(*inputs)
        (out * upstream).sum().backward()
        results.append([out.detach()] + [t.grad for t in inputs])
    for label, mine, ref in zip(["states", "d/dx", "d/dW_ih", "d/db", "d/dW_hh"], *results):
        # float32: 1e-5 of the largest magnitude (linear's gradients sum hundreds of terms near 500)
        atol = GRAD_ATOL if dtype == torch.float64 else 1e-5 * max(1.0, float(ref.abs().max()))
        assert_close(mine, ref, atol=atol, rtol=0.0, name=f"{name} {label} n={n} units={units} {dtype}")


def test_model_gradients_through_step_loop_equal_fused_kernel():
    """tanh and relu have both paths: the own node must give the fused kernel's outputs and gradients."""
    for act in ("tanh", "relu"):
        m = create_rnn([5, 4], 2, (9, 3), (act, "linear"), use_bias=[True, False], seed=4).double()
        x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, 9, 3))).requires_grad_(True)
        results = []
        for fused in (True, False, None):  # None: the layer's own choice (the own node, with gradients)
            m.zero_grad()
            x.grad = None
            out = m.use_fused_kernel(fused)(x)
            out.pow(2).sum().backward()
            results.append([out.detach(), x.grad.clone()] + [p.grad.clone() for p in m.parameters()])
        names = ["output", "d/dx"] + [n for n, _ in m.named_parameters()]
        for name, fused, loop, auto in zip(names, *results):
            assert_close(loop, fused, atol=GRAD_ATOL, rtol=GRAD_ATOL, name=f"{act} {name} loop vs fused")
            assert_close(auto, fused, atol=GRAD_ATOL, rtol=GRAD_ATOL, name=f"{act} {name} default vs fused")


# The step loops' tanh goes through NumPy on CPU buffers (layers._numpy_rows). With an identity
# input kernel, a zero bias and no recurrence every state is tanh of its own input value exactly
# (x * 1 plus zeros is exact), so the states can be held to the exact tanh of that input. Two
# ulps: a correctly rounded tanh is within 0.5, the SIMD ones within 1.5 (measured); a fast
# approximation such as Eigen's (~1e-6 relative) would not pass.
TANH_ULPS = 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["inference", "inference_last", "training"])
@pytest.mark.parametrize("n, units", [(257, 33), (1, 3)], ids=["numpy_rows", "torch_rows"])
def test_step_loop_tanh_is_within_two_ulp_of_exact(dtype, path, n, units):
    from torchrnn.layers import _SMALL_ROW, _inference_states
    assert (n * units >= _SMALL_ROW) == (n == 257), "one case on each side of the threshold"
    g = torch.Generator().manual_seed(3)
    steps = 3  # 257 x 33: odd sizes, so the SIMD loop's tail elements are in too
    # values from 1e-6 to 10 in magnitude, both signs
    x = (torch.randn(n, steps, units, generator=g).sign() * 10 ** (torch.rand(n, steps, units, generator=g) * 7 - 6)).to(dtype)
    w_ih = torch.eye(units, dtype=dtype)
    b = torch.zeros(units, dtype=dtype)
    w_hh = torch.zeros(units, units, dtype=dtype)
    if path == "training":
        states = _SequenceFn.apply(x, w_ih.requires_grad_(True), b, w_hh, "tanh", False).detach()
    else:
        states = _inference_states(x, w_ih, b, w_hh, "tanh", path == "inference_last")
        states = states.unsqueeze(1) if path == "inference_last" else states.transpose(0, 1)
    xs = x[:, -states.shape[1]:].double().numpy()
    # float32: float64 tanh is exact to float32's resolution; float64: the C library's scalar
    # tanh (math.tanh), an implementation independent of NumPy's SIMD loop, within 1 ulp
    exact = np.tanh(xs) if dtype == torch.float32 else np.vectorize(math.tanh)(xs)
    ulp = np.spacing(np.abs(exact).astype(x.numpy().dtype)).astype(np.float64)
    got = states.double().numpy()
    err = np.abs(got - exact) / ulp
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= TANH_ULPS, (f"{path} {dtype}: {err.max():.2f} ulp from the exact tanh at {worst} "
                                    f"(got {got[worst]!r}, exact {exact[worst]!r})")
