"""The contract every attention backend fulfils."""

from __future__ import annotations

import torch
from torch import nn


class AttentionBackend(nn.Module):
    """Multi-head attention core: ``forward(q, k, v, key_padding_mask=None) -> out``.

    Shapes: ``q``, ``k``, ``v`` and the output are ``(batch, heads, length, head_dim)``;
    ``key_padding_mask`` is ``(batch, length)``, ``True`` where the key is padding. A padded key
    must have no influence on any real query. Outputs at padded query positions are unspecified
    (finite, but nothing downstream may read them).
    The output has the dtype of ``v``: under autocast some backends compute in float32, and the base
    class casts their result back, so the next layer sees what it would see from softmax.

    The projections around the core (q/k/v/out linear layers) belong to the encoder block, so every
    backend is compared on the same parameters. Each subclass documents its formula, its paper and
    its time and memory complexity in its docstring.

    Args shared by every backend (given by ``lra.attention.create``):
        num_heads: heads H.
        head_dim: per-head width d.
        max_length: the longest sequence the model will see (needed by backends with fixed-size
            projections, e.g. Linformer; others ignore it).
        dropout: dropout on the attention weights, for backends that form them; the others say in
            their docstring that they have no attention matrix to drop from.
    """

    # Whether ``forward_packed(q, k, v, packing)`` attends within packed sequences (``lra.attention.packing``):
    # q, k, v of shape (tokens, heads, head_dim), every sequence's real tokens end to end. The encoder then
    # runs every layer on real tokens alone instead of padded batches.
    packs_sequences: bool = False

    def __init__(self, *, num_heads: int, head_dim: int, max_length: int | None = None, dropout: float = 0.0):
        super().__init__()
        if num_heads < 1 or head_dim < 1:
            raise ValueError(f"num_heads and head_dim must be positive, got {num_heads} and {head_dim}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_length = max_length
        self.dropout = dropout
        self.register_forward_hook(_in_the_dtype_of_values, with_kwargs=True)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}"


def _in_the_dtype_of_values(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
    values = args[2] if len(args) > 2 else kwargs["v"]
    return output.to(values.dtype)
