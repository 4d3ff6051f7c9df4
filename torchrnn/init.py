"""Keras's default initializers, written against torch tensors of Keras shape.

Keras initialises a ``SimpleRNN`` with ``kernel_initializer='glorot_uniform'``,
``recurrent_initializer='orthogonal'`` and ``bias_initializer='zeros'``, and a ``Dense`` with
glorot_uniform / zeros. torch's ``nn.RNN`` and ``nn.Linear`` draw every tensor from
``U(-1/sqrt(H), 1/sqrt(H))`` instead, which starts training somewhere else.

The functions take the Keras shape ``(fan_in, fan_out)`` and a ``torch.Generator`` (or None for
torch's global generator, so ``torch.manual_seed`` governs them). Draws happen on the CPU and are
then moved, so a seed gives the same weights on every device.
"""
from __future__ import annotations

import math
import numbers

import torch


def glorot_uniform(shape: tuple[int, int], generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``U(-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))`` (Keras ``GlorotUniform``)."""
    fan_in, fan_out = shape
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2.0 * u - 1.0) * limit).to(dtype)


def orthogonal(shape: tuple[int, int], generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32, gain: float = 1.0) -> torch.Tensor:
    """Keras ``Orthogonal``: QR of a standard normal matrix, with the signs of ``diag(R)`` folded
    into ``Q`` so the result is uniformly distributed over orthogonal matrices."""
    rows, cols = shape
    flat = (max(rows, cols), min(rows, cols))
    a = torch.randn(flat, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).to(dtype)


# torch.Generator.manual_seed takes -2**63 to 2**64 - 1, but the CPU generator (mt19937) keeps
# the low 32 bits: seeds 2**32 apart, or -1 and 2**64 - 1, gave the very same run. So only the
# seeds that give runs of their own are taken.
SEED_RANGE = (0, 2**32 - 1)
SEED_RANGE_TEXT = "an integer from 0 to 2**32 - 1 (torch's CPU generator keeps 32 bits of a seed)"


def check_seed(seed, name: str = "seed") -> int | None:
    """``seed`` as an int, or None; refuses what would otherwise be silently truncated (1.5 -> 1,
    True -> 1, 2**32 -> 0 in torch's generator) or fail inside torch without naming the seed
    ('Overflow when unpacking long long')."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be an integer or None, got {seed!r}")
    if not SEED_RANGE[0] <= int(seed) <= SEED_RANGE[1]:
        raise ValueError(f"{name} must be {SEED_RANGE_TEXT}, got {seed!r}")
    return int(seed)


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or None to use torch's global one."""
    seed = check_seed(seed)
    if seed is None:
        return None
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
