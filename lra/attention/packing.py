"""Padded batches packed end to end: the real tokens of every sequence in one ``(tokens, ...)`` tensor.

A model whose attention backend can attend within packed sequences (``packs_sequences``) runs every
layer on the real tokens alone: projections, MLPs and attention then cost nothing at padded positions,
and each batch keeps the examples the sampler drew (unlike length bucketing, which changes the mix).
The packing is computed once per forward pass, from the padding mask; building it reads the number of
real tokens back from the device (one synchronisation per forward pass, not one per layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PackedSequences:
    """Where the real tokens of a ``(batch, length)`` padded layout sit in the packed one.

    ``rows``: ``(tokens,)`` flat indices ``b * length + i`` of the real positions, in order;
    ``cu_seqlens``: ``(batch + 1,)`` int32 offsets of each sequence in the packed tensor (FlashAttention's
    ``cu_seqlens``); ``longest``: an upper bound of the longest sequence's length (the padded length).
    """

    rows: torch.Tensor
    cu_seqlens: torch.Tensor
    longest: int
    batch: int
    length: int

    @classmethod
    def from_padding_mask(cls, padding_mask: torch.Tensor) -> PackedSequences:
        """``padding_mask`` ``(batch, length)``, True at padding, which must sit after the real tokens."""
        batch, length = padding_mask.shape
        real = ~padding_mask
        lengths = real.sum(-1, dtype=torch.int32)
        cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        rows = real.flatten().nonzero().squeeze(-1)  # the one read-back: the packed size
        # The exact longest length would cost a second read-back; FlashAttention needs only an upper bound.
        return cls(rows, cu_seqlens, length, batch, length)

    @property
    def tokens(self) -> int:
        return self.rows.numel()

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, length, ...)`` -> ``(tokens, ...)``."""
        return x.flatten(0, 1).index_select(0, self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """``(tokens, ...)`` -> ``(batch, length, ...)``, zeros at the padded positions."""
        out = x.new_zeros(self.batch * self.length, *x.shape[1:])
        return out.index_copy(0, self.rows, x).view(self.batch, self.length, *x.shape[1:])

    def sequences(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The packed ``(tokens, ...)`` tensor cut into its sequences (reads the offsets back)."""
        bounds = self.cu_seqlens.tolist()
        return [x[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]
