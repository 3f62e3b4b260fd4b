"""Pooling and classifier heads (LRA's ``classifier_head`` and ``classifier_head_dual``)."""

from __future__ import annotations

import torch
from torch import nn


def pool(x: torch.Tensor, padding_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """CLS: the first position. Mean: over real positions (padding excluded, unlike LRA's code,
    which averages padding in too; without padding the two agree)."""
    if how == "cls":
        return x[:, 0]
    if padding_mask is None:
        return x.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


class ClassifierHead(nn.Module):
    """Dense(mlp_dim) -> ReLU -> Dense(classes)."""

    def __init__(self, width: int, mlp_dim: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, num_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class DualHead(nn.Module):
    """Two pooled documents u, v -> [u, v, u*v, u-v] (NLI) or [u, v] -> Dense-ReLU-Dense-ReLU-Dense."""

    def __init__(self, width: int, mlp_dim: int, num_classes: int, interaction: str):
        super().__init__()
        self.interaction = interaction
        features = width * (4 if interaction == "nli" else 2)
        self.net = nn.Sequential(nn.Linear(features, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, mlp_dim // 2),
                                 nn.ReLU(), nn.Linear(mlp_dim // 2, num_classes))

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        parts = [u, v, u * v, u - v] if self.interaction == "nli" else [u, v]
        return self.net(torch.cat(parts, dim=-1))
