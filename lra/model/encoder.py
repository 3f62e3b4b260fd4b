"""Pre-norm Transformer encoder whose attention core is any registered backend."""

from __future__ import annotations

import torch
from torch import nn

from lra.attention import create
from lra.attention.packing import PackedSequences


class SelfAttention(nn.Module):
    """Projections around an attention backend: x -> q, k, v -> backend -> output projection."""

    def __init__(self, width: int, num_heads: int, qkv_dim: int, attention: str, attention_options: dict,
                 max_length: int, dropout: float, causal: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = qkv_dim // num_heads
        self.qkv = nn.Linear(width, 3 * qkv_dim, bias=False)  # LRA: no bias on q/k/v/out
        self.out = nn.Linear(qkv_dim, width, bias=False)
        nn.init.xavier_uniform_(self.out.weight)
        for chunk in self.qkv.weight.detach().chunk(3):
            nn.init.xavier_uniform_(chunk)
        self.core = create(attention, num_heads=num_heads, head_dim=self.head_dim, max_length=max_length,
                           dropout=dropout, causal=causal, **attention_options)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                packing: PackedSequences | None = None) -> torch.Tensor:
        """``x`` ``(batch, length, width)``, or ``(tokens, width)`` of packed sequences with ``packing``."""
        if packing is not None:
            q, k, v = self.qkv(x).view(x.shape[0], 3, self.num_heads, self.head_dim).unbind(1)
            return self.out(self.core.forward_packed(q, k, v, packing).flatten(1))
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = self.core(q, k, v, key_padding_mask=padding_mask)
        return self.out(y.transpose(1, 2).reshape(batch, length, -1))


class Block(nn.Module):
    """``x + Drop(Attn(LN(x)))`` then ``x + MLP(LN(x))``, MLP = Dense-GELU-Drop-Dense-Drop (LRA)."""

    def __init__(self, width: int, num_heads: int, qkv_dim: int, mlp_dim: int, dropout: float,
                 attention_dropout: float, attention: str, attention_options: dict, max_length: int,
                 causal: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, num_heads, qkv_dim, attention, attention_options, max_length,
                                  attention_dropout, causal)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                packing: PackedSequences | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), padding_mask, packing))
        return x + self.mlp(self.norm2(x))
