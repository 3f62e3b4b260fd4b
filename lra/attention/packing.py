"""Padded batches packed end to end: the real tokens of every sequence in one ``(tokens, ...)`` tensor.

A model whose attention backend can attend within packed sequences (``packs_sequences``) runs every
layer on the real tokens alone: projections, MLPs and attention then cost nothing at padded positions,
and each batch keeps the examples the sampler drew (unlike length bucketing, which changes the mix).
The packing is computed once per batch, from the padding mask. Built from a mask on the host (as the training
module does before the batch goes to the GPU) it costs the device nothing and is exact; built from a mask on
the device, it reads the number of real tokens back (one synchronisation per forward pass), and the host
then waits for the GPU on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PackedSequences:
    """Where the real tokens of a ``(batch, length)`` padded layout sit in the packed one.

    ``rows``: ``(tokens,)`` flat indices ``b * length + i`` of the real positions, in order;
    ``cu_seqlens``: ``(batch + 1,)`` int32 offsets of each sequence in the packed tensor (FlashAttention's
    ``cu_seqlens``); ``longest``: the longest sequence's length (from a mask on the host), or an upper bound
    of it, the padded length (from a mask on the device: the exact one would cost a second read-back);
    ``lengths``: each sequence's length, known on the host when built from a mask there (else None).
    """

    rows: torch.Tensor
    cu_seqlens: torch.Tensor
    longest: int
    batch: int
    length: int
    lengths: tuple[int, ...] | None = None

    @classmethod
    def from_padding_mask(cls, padding_mask: torch.Tensor) -> PackedSequences:
        """``padding_mask`` ``(batch, length)``, True at padding, which must sit after the real tokens."""
        batch, length = padding_mask.shape
        real = ~padding_mask
        lengths = real.sum(-1, dtype=torch.int32)
        cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        rows = real.flatten().nonzero().squeeze(-1)  # on the device, the one read-back: the packed size
        if padding_mask.device.type != "cpu":
            return cls(rows, cu_seqlens, length, batch, length)
        on_host = tuple(lengths.tolist())
        return cls(rows, cu_seqlens, max(on_host, default=length), batch, length, on_host)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> PackedSequences:
        """On ``device`` (Lightning moves a batch's entries by their ``to``); the copies do not wait for it."""
        return replace(self, rows=self.rows.to(device, non_blocking=non_blocking),
                       cu_seqlens=self.cu_seqlens.to(device, non_blocking=non_blocking))

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
        """The packed ``(tokens, ...)`` tensor cut into its sequences (without host lengths, reads the offsets
        back from the device)."""
        if self.lengths is not None:
            return list(x.split(self.lengths))
        bounds = self.cu_seqlens.tolist()
        return [x[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]
