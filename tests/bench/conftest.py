"""Backends that only the benchmark tests register (through monkeypatch, so the registry is restored)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lra.attention import registry
from lra.attention.base import AttentionBackend


class FailingAboveAttention(AttentionBackend):
    """Softmax attention that raises beyond 32 positions: a backend that fails at some size."""

    def forward(self, q, k, v, key_padding_mask=None):
        if q.shape[-2] > 32:
            raise RuntimeError(f"no kernel for length {q.shape[-2]}")
        return F.scaled_dot_product_attention(q, k, v)


class OutOfMemoryAboveAttention(AttentionBackend):
    """Softmax attention that runs out of memory beyond 32 positions."""

    def forward(self, q, k, v, key_padding_mask=None):
        if q.shape[-2] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return F.scaled_dot_product_attention(q, k, v)


class TaylorAttention(AttentionBackend):
    """Second-order Taylor attention (1 + s + s^2/2), quadratic (direct) or through features (efficient);
    stands in for ``taylorshift`` where that backend is not merged yet."""

    def __init__(self, *, num_heads, head_dim, max_length=None, dropout=0.0, mode="auto", impl="torch"):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout)
        self.mode, self.impl = mode, impl

    def forward(self, q, k, v, key_padding_mask=None):
        if self.impl == "triton":
            raise RuntimeError("the Triton kernel needs CUDA")
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if self.mode == "direct":
            s = q @ k.transpose(-1, -2)
            weights = 1 + s + s * s / 2
            return (weights @ v) / weights.sum(-1, keepdim=True)

        def features(x):
            square = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) / 2**0.5
            return torch.cat([torch.ones_like(x[..., :1]), x, square], dim=-1)

        phi_q, phi_k = features(q), features(k)
        return (phi_q @ (phi_k.transpose(-1, -2) @ v)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1))


@pytest.fixture
def test_backends(monkeypatch):
    """Registers ``failing_above_32``, ``oom_above_32`` and, if missing, a stand-in ``taylorshift``."""
    monkeypatch.setitem(registry._BACKENDS, "failing_above_32", FailingAboveAttention)
    monkeypatch.setitem(registry._BACKENDS, "oom_above_32", OutOfMemoryAboveAttention)
    if "taylorshift" not in registry.available():
        monkeypatch.setitem(registry._BACKENDS, "taylorshift", TaylorAttention)
    return registry
