"""Attention weights recomputed from the q, k (and mask) a backend receives, for analysis only.

The backends never form these in training (SDPA and the linear forms have no weight matrix in memory); the
functions here rebuild the row-stochastic matrix each backend's output is an average under, so that
``weights @ v`` is the backend's output (TaylorShift: before its ``sqrt(N/d)`` output factor; linear
attention: up to its denominator guard). ``tests/analysis/test_weights.py`` checks each against the backend.
Elementwise attention has one matrix per channel, Performer's random features and the other approximations
have none of their own here: they are refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lra.attention.base import AttentionBackend
from lra.attention.linear import LinearAttention
from lra.attention.softmax import SoftmaxAttention
from lra.attention.taylorshift import TaylorShiftAttention

WeightFunction = Callable[[AttentionBackend, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def softmax_weights(core: AttentionBackend, q: torch.Tensor, k: torch.Tensor,
                    key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + M)``, M = -inf on padded keys."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], -math.inf)
    return scores.softmax(-1)


def taylorshift_weights(core: TaylorShiftAttention, q: torch.Tensor, k: torch.Tensor,
                        key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``w = a s^2 + b s + c`` of the normalised, temperature-scaled q, k, normalised over real keys (both of
    TaylorShift's forms compute this function)."""
    s = (F.normalize(q, dim=-1) * core.temperature.to(q.dtype)) @ F.normalize(k, dim=-1).transpose(-1, -2)
    return _normalise(core.a * s * s + core.b * s + core.c, key_padding_mask)


def linear_weights(core: LinearAttention, q: torch.Tensor, k: torch.Tensor,
                   key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``phi(q_i) . phi(k_j)`` normalised over real keys, ``phi = elu + 1``."""
    return _normalise((F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2), key_padding_mask)


def _normalise(weights: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    if key_padding_mask is not None:
        weights = weights.masked_fill(key_padding_mask[:, None, None, :], 0.0)
    return weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


WEIGHT_FUNCTIONS: dict[type[AttentionBackend], WeightFunction] = {
    SoftmaxAttention: softmax_weights,
    TaylorShiftAttention: taylorshift_weights,
    LinearAttention: linear_weights,
}


class NoWeightsError(ValueError):
    """A backend whose attention weights this module cannot rebuild."""


def weight_function(core: AttentionBackend) -> WeightFunction:
    for backend, function in WEIGHT_FUNCTIONS.items():
        if isinstance(core, backend):
            return function
    supported = ", ".join(sorted(b.__name__ for b in WEIGHT_FUNCTIONS))
    raise NoWeightsError(f"{type(core).__name__} has no single attention matrix to analyse here "
                         f"(supported: {supported})")
