"""Linformer: softmax attention over keys and values projected along the sequence to a fixed size."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lra.attention.base import AttentionBackend
from lra.attention.registry import register


@register("linformer")
class LinformerAttention(AttentionBackend):
    """Linformer (Wang et al., "Linformer: Self-Attention with Linear Complexity", 2020, arXiv 2006.04768).

    Learned projections ``E, F`` of shape (k, max_length) per head compress the keys and values along
    the sequence:

        out = softmax(q (E K)^T / sqrt(d)) (F V)

    A sequence shorter than ``max_length`` uses the first N columns of E and F. Padded keys and values
    are zeroed before the projection, so they add nothing to ``E K`` or ``F V``. With ``share_kv`` one
    projection serves both (the paper's key-value sharing). Projections are initialised as a
    ``torch.nn.Linear(max_length, k)`` weight would be (uniform, bound 1/sqrt(max_length)).

    No causal form: each projected key row mixes keys from every position.

    Time O(N k d), memory O(N k). Needs ``max_length``; not permutation-equivariant (E, F act on
    positions). Dropout applies to the (N x k) attention weights.
    """

    complexity = "O(N k d)"
    needs_max_length = True
    permutation_equivariant = False

    def __init__(
        self,
        *,
        proj_dim: int = 256,
        share_kv: bool = False,
        **common: Any,
    ):
        super().__init__(**common)
        if proj_dim < 1:
            raise ValueError(f"linformer proj_dim must be positive, got {proj_dim}")
        self.proj_dim = proj_dim
        self.share_kv = share_kv
        bound = 1 / math.sqrt(self.max_length)
        shape = (self.num_heads, proj_dim, self.max_length)
        self.key_projection = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.value_projection = None if share_kv else nn.Parameter(torch.empty(shape).uniform_(-bound, bound))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, proj_dim={self.proj_dim}, share_kv={self.share_kv}, "
                f"max_length={self.max_length}")

    def forward(self, q, k, v, key_padding_mask=None):
        length = k.shape[-2]
        if length > self.max_length:
            raise ValueError(f"linformer was built for at most {self.max_length} tokens but got {length}; "
                             "raise max_length (the task's max_length sets it)")
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, :, None]
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        key_projection = self.key_projection[..., :length].to(k.dtype)
        value_projection = key_projection
        if not self.share_kv:
            value_projection = self.value_projection[..., :length].to(v.dtype)
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, key_projection @ k, value_projection @ v, dropout_p=p)
