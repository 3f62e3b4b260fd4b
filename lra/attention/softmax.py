"""Softmax attention through PyTorch's fused ``scaled_dot_product_attention``."""

from __future__ import annotations

import torch.nn.functional as F

from lra.attention.base import AttentionBackend
from lra.attention.registry import register


@register("softmax")
class SoftmaxAttention(AttentionBackend):
    """Standard attention (Vaswani et al. 2017, "Attention Is All You Need").

    ``out = softmax(q k^T / sqrt(d) + M) v`` with ``M = -inf`` on padded keys.

    Time O(N^2 d), memory O(N) with the flash / memory-efficient kernels (O(N^2) with the math
    fallback). Without a padding mask SDPA can take FlashAttention; with one it passes a boolean mask,
    which selects the memory-efficient kernel.
    """

    def __init__(self, *, num_heads: int, head_dim: int, max_length: int | None = None, dropout: float = 0.0):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout)

    def forward(self, q, k, v, key_padding_mask=None):
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # True = may attend
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
