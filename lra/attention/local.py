"""Local attention: softmax attention restricted to a window of neighbouring positions."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from lra.attention.base import AttentionBackend
from lra.attention.registry import register

IMPLS = ("auto", "flex", "chunked")


@functools.cache
def _compiled_flex():
    """FlexAttention and its block-mask builder, compiled once: uncompiled, both materialise N x N."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(flex_attention, dynamic=False), torch.compile(create_block_mask)


@register("local")
class LocalAttention(AttentionBackend):
    """Local (windowed) attention: the "Local Attention" baseline of LRA (Tay et al. 2021).

    ``out_i = softmax_j(q_i . k_j / sqrt(d)) v_j`` over the real keys j in the window of i:

    * blocked (``sliding: false``): the sequence is cut into contiguous blocks of ``window`` tokens and
      each query attends within its block;
    * sliding (``sliding: true``): each query attends to the keys with ``|i - j| <= window // 2``.

    Computation: queries are taken in blocks (of ``window`` tokens when blocked, of ``max(window // 2, 32)``
    when sliding) and each block attends to its keys (its own block, or the block widened by ``window // 2``
    on each side) through PyTorch SDPA with a band and padding mask, so nothing of size N x N exists.
    ``impl=flex`` (or ``auto`` on CUDA, sliding, no dropout in training) runs the sliding window through
    compiled FlexAttention with a block-sparse mask instead (FlexAttention has no dropout and no CPU
    backward). Queries whose window holds no real key (padded positions only) get an unspecified finite
    output.

    LRA's released code (``models/local/local_attention.py``) reshapes the sequence to
    ``(block_size, num_blocks)`` and attends along the first axis, so its "blocks" are strided (positions
    equal modulo ``num_blocks``), not contiguous; this module implements the contiguous windows that the
    paper describes. Its default block size is 50 (``local.py``).

    ``causal``: each query also drops the keys after it (the left half of a sliding window, the start of
    its block up to itself when blocked).

    Time O(N w d), memory O(N w). Not permutation-equivariant. Dropout applies to the window weights.
    """

    complexity = "O(N w d)"
    gpu_paths = {"flex": {"sliding": True, "impl": "flex"}}
    compiles_per_shape = True
    permutation_equivariant = False
    supports_causal = True

    def __init__(
        self,
        *,
        window: int = 50,
        sliding: bool = False,
        impl: str = "auto",
        **common: Any,
    ):
        super().__init__(**common)
        if window < 1:
            raise ValueError(f"local window must be positive, got {window}")
        if impl not in IMPLS:
            raise ValueError(f"local impl={impl!r}; valid: {', '.join(IMPLS)}")
        if impl == "flex" and not sliding:
            raise ValueError("local impl=flex is for sliding windows; blocked windows always run as blocks")
        self.window = window
        self.sliding = sliding
        self.impl = impl

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, sliding={self.sliding}, impl={self.impl}"

    def forward(self, q, k, v, key_padding_mask=None):
        dropout = self.dropout if self.training else 0.0
        if self._use_flex(q, dropout):
            return self._flex(q, k, v, key_padding_mask)
        return self._chunked(q, k, v, key_padding_mask, dropout)

    def _use_flex(self, q: torch.Tensor, dropout: float) -> bool:
        if self.impl == "flex":
            if not q.is_cuda or dropout > 0:
                raise RuntimeError("local impl=flex needs CUDA tensors and no attention dropout in training "
                                   "(FlexAttention has neither a CPU backward nor dropout); use impl=auto")
            return True
        return self.impl == "auto" and self.sliding and q.is_cuda and dropout == 0

    def _flex(self, q, k, v, key_padding_mask):
        flex_attention, create_block_mask = _compiled_flex()
        half, length = self.window // 2, q.shape[-2]

        causal = self.causal

        def in_window(batch, head, query, key):
            inside = (query - key).abs() <= half
            if causal:
                inside = inside & (key <= query)
            return inside if key_padding_mask is None else inside & ~key_padding_mask[batch, key]

        batch = None if key_padding_mask is None else q.shape[0]
        block_mask = create_block_mask(in_window, batch, None, length, length, device=q.device)
        return flex_attention(q, k, v, block_mask=block_mask)

    def _chunked(self, q, k, v, key_padding_mask, dropout):
        batch, heads, length, head_dim = q.shape
        half = self.window // 2 if self.sliding else 0
        block = max(half, 32) if self.sliding else self.window
        blocks = -(-length // block)
        tail = blocks * block - length
        span = block + 2 * half

        def windows(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, d) -> (B, H * blocks, span, d)
            x = F.pad(x, (0, 0, half, half + tail)).unfold(2, span, block)
            return x.transpose(-1, -2).reshape(batch, heads * blocks, span, head_dim)

        q_blocks = F.pad(q, (0, 0, 0, tail)).reshape(batch, heads * blocks, block, head_dim)
        mask = self._window_mask(key_padding_mask, batch, length, block, half, tail, q.device)
        if mask is not None:
            mask = mask.unsqueeze(1).expand(-1, heads, -1, -1, -1).reshape(batch, heads * blocks, block, span)
        out = F.scaled_dot_product_attention(q_blocks, windows(k), windows(v), attn_mask=mask,
                                             dropout_p=dropout)
        return out.reshape(batch, heads, blocks * block, head_dim)[:, :, :length]

    def _window_mask(self, key_padding_mask, batch, length, block, half, tail, device):
        """(B, blocks, block, span) True where a query may attend; None when every key is allowed."""
        if key_padding_mask is None and not self.sliding and tail == 0 and not self.causal:
            return None
        real = torch.ones(batch, length, dtype=torch.bool, device=device)
        if key_padding_mask is not None:
            real = ~key_padding_mask
        span = block + 2 * half
        real_windows = F.pad(real, (half, half + tail)).unfold(1, span, block)  # (B, blocks, span)
        allowed = real_windows[:, :, None, :].expand(-1, -1, block, -1)
        # The key at window offset t sits t - i - half positions after query i (half = 0 when blocked).
        offset = torch.arange(span, device=device) - torch.arange(block, device=device)[:, None]
        if self.sliding:  # within `half` of query i iff 0 <= t - i <= 2 half
            allowed = allowed & (offset >= 0) & (offset <= 2 * half)
        if self.causal:
            allowed = allowed & (offset <= half)
        # A query with no real key in reach (padding) would get NaN from SDPA; let it see its window.
        return allowed | ~allowed.any(-1, keepdim=True)
