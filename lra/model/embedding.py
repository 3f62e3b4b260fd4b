"""Input embeddings and positional encodings."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, width: int) -> torch.Tensor:
    """The fixed sin/cos table of Vaswani et al. (LRA's ``AddPositionEmbs`` without learned init)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class InputEmbedding(nn.Module):
    """Token ids through a lookup table, or scalar values (pixels as floats) through a linear map."""

    def __init__(self, vocab_size: int | None, width: int, init_std: float):
        super().__init__()
        if vocab_size is None:
            self.proj = nn.Linear(1, width)
            self.table = None
        else:
            self.table = nn.Embedding(vocab_size, width)
            nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return self.table(inputs)
        return self.proj(inputs.unsqueeze(-1))


class PositionalEncoding(nn.Module):
    """Adds a position code: fixed sinusoidal, learned (normal, std 0.02, as LRA), or none."""

    def __init__(self, kind: str, length: int, width: int):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(length, width) * 0.02)
        elif kind == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(length, width), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        return x + self.table[: x.shape[1]].to(x.dtype)
