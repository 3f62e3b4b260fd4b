"""The learned baseline: the construction's fixed ``W_Q, W_K``, inputs found by gradient descent.

The inputs ``X`` (L, 2d) start as ``N(0, d^(-1/2))`` entries (logits of unit variance) and Adam minimises the
cross-entropy of the target rows against ``softmax(X W_Q (X W_K)^T / sqrt(d))``, i.e. the mean KL divergence
``KL(A_i || softmax_i)`` plus the constant entropy of A: full batch, every row every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lra.analysis.construction import attention_scores, fixed_projections
from lra.analysis.targets import Target, stable_seed


@dataclass(frozen=True)
class LearnedSettings:
    steps: int = 300
    lr: float = 0.05


def learn_inputs(target: Target, dim: int, seed: int, settings: LearnedSettings,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The inputs after ``settings.steps`` Adam steps; returns their logits ``(L, L)`` (no gradient)."""
    device = target.columns.device
    w_q, w_k = fixed_projections(dim, dtype, device)
    generator = torch.Generator().manual_seed(stable_seed("learned", target.pattern, target.nonzeros,
                                                          target.length, dim, seed))
    start = torch.randn(target.length, 2 * dim, generator=generator, dtype=dtype) * dim**-0.25
    inputs = start.to(device).requires_grad_()
    weights = target.weights.to(dtype)
    optimiser = torch.optim.Adam([inputs], lr=settings.lr)
    for _ in range(settings.steps):
        log_p = torch.log_softmax(attention_scores(inputs, w_q, w_k), dim=1)
        loss = -(weights * log_p.gather(1, target.columns)).sum(1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return attention_scores(inputs, w_q, w_k)
