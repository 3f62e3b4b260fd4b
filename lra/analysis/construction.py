"""A fixed softmax attention that approximates a given sparse matrix through its inputs alone.

Source: V. Likhosherstov, K. Choromanski, A. Weller, "On the Expressive Power of Self-Attention Matrices",
arXiv 2106.03764 (2021); AAAI 2023 as "On the Expressive Flexibility of Self-Attention Matrices".

WHAT THE ABSTRACT STATES (the only part of the paper read here): the self-attention matrix can provably
approximate sparse matrices, sparsity meaning a bounded number of non-zeros in each row and column; the
attention parameters stay fixed and only the inputs change; the proof uses random projections and the
Johnson-Lindenstrauss lemma, and is constructive, giving an algorithm for the adaptive inputs and the fixed
parameters; to approximate any sparse matrix "up to a given precision defined in terms of preserving matrix
element ratios", the hidden size grows only logarithmically with the length, d = O(log L). A summary of the
AAAI version adds one sentence about its figure: exp(B) is a row-rescaled approximation of A, and
X(1) X(2)^T an unbiased approximation of B, written as X W_Q W_K^T X^T.

WHAT IS RECONSTRUCTED HERE (our reading; constants, the choice of Delta and both query rules are ours):

* The logits. For a row-stochastic target A with support S_i in row i (|S_i| = s) put
  ``B_ij = Delta + log(A_ij / max_k A_ik)`` on the support and 0 elsewhere. Then ``softmax(B)`` keeps the
  support's ratios exactly and gives each off-support entry ``exp(-Delta) * max_k A_ik`` of the row's
  largest entry: for large Delta, exp(B) is a row-rescaled A.
* The random projection. Keys ``r_1..r_L`` are independent uniform unit vectors of R^d (normalised
  Gaussians): nearly orthogonal when d >> log L, by the Johnson-Lindenstrauss lemma. A query combines the
  keys of its own support, ``q_i = sum_{k in S_i} beta_ik r_k``, so ``q_i . r_j`` is B_ij plus cross terms
  ``beta_ik r_k . r_j`` of mean zero:

  - ``projection``: ``beta_i = B_i|S_i``, i.e. ``X(1) = B R``, ``X(2) = R``; ``E[X(1) X(2)^T] = B``
    (the abstract's unbiased random projection). Its support entries carry cross terms too.
  - ``solve``: ``beta_i`` solves ``q_i . r_j = B_ij`` for the s keys of the row exactly (the s x s Gram
    system of the row's keys, a pseudo-inverse when d < s), so only the off-support entries are noisy;
    ``E[q_i . r_j] = 0`` off the support still holds. Not in the abstract: a variant that isolates the
    error the projection cannot avoid.
* The fixed parameters. Inputs ``X = [X(1) | X(2)]`` of width 2d, and
  ``W_Q = d^(1/4) [I_d; 0]``, ``W_K = d^(1/4) [0; I_d]``, so that the standard attention
  ``softmax(X W_Q (X W_K)^T / sqrt(d))`` is ``softmax(X(1) X(2)^T)``. W_Q and W_K depend on d only; X(2)
  depends on (L, d, seed) only; only X(1) depends on the target.
* Delta. The abstract fixes the precision and lets d grow; Delta trades the off-support mass
  (``~ L exp(-Delta)``) against the cross terms (``~ Delta sqrt(s / d)``). Here it is chosen per target,
  d and error measure from a grid, on a sample of rows (``choose``), and the error is then measured on
  every row: the choice belongs to the inputs, not to the fixed parameters.

What the formulas suggest, not a measurement: for ``solve`` the off-support logits are about
``N(0, s Delta^2 / d)``, so the off-support mass is about ``(L/s) exp(s Delta^2 / 2d - Delta)``, smallest at
``Delta = d/s`` where it is ``(L/s) exp(-d/2s)``: d = O(s log L) for a fixed total-variation error. For
``projection`` the support's own logits carry noise of about ``Delta sqrt((s-1)/d)`` as well, so a fixed
total variation needs d ~ s Delta^2 / error^2 with Delta ~ log L; with the abstract's ratio precision at a
fixed Delta the union bound over rows gives d = O(log L) again, with large constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lra.analysis.targets import Target, stable_seed

QUERY_RULES = ("projection", "solve")


def fixed_projections(dim: int, dtype: torch.dtype = torch.float32,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``W_Q, W_K`` of shape (2d, d): the first and the second half of the input, scaled by d^(1/4) so that
    the 1/sqrt(d) of the attention cancels."""
    eye = torch.eye(dim, dtype=dtype, device=device) * dim**0.25
    zeros = torch.zeros(dim, dim, dtype=dtype, device=device)
    return torch.cat([eye, zeros]), torch.cat([zeros, eye])


def attention_scores(inputs: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor) -> torch.Tensor:
    """The logits of single-head attention, ``(X W_Q)(X W_K)^T / sqrt(d)``: (L, 2d) -> (L, L)."""
    return (inputs @ w_q) @ (inputs @ w_k).T / math.sqrt(w_q.shape[1])


def random_keys(length: int, dim: int, seed: int, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """(L, d) independent uniform unit vectors (normalised Gaussians), drawn on the CPU so that every device
    gets the same keys."""
    generator = torch.Generator().manual_seed(stable_seed("keys", length, dim, seed))
    keys = torch.randn(length, dim, generator=generator, dtype=torch.float64)
    return (keys / keys.norm(dim=1, keepdim=True)).to(device=device, dtype=dtype)


@dataclass
class Construction:
    """The inputs for one target and d: ``X(1) = Delta * unit + shape`` and ``X(2) = keys``."""

    unit: torch.Tensor  # (L, d): the queries' part that Delta scales
    shape: torch.Tensor  # (L, d): the part carrying log(A_ij / max_k A_ik)
    keys: torch.Tensor  # (L, d)

    def inputs(self, delta: float) -> torch.Tensor:
        """X = [X(1) | X(2)], (L, 2d)."""
        return torch.cat([delta * self.unit + self.shape, self.keys], dim=1)

    def score_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(slope, offset) with ``scores(inputs(Delta)) = Delta * slope + offset``: the logits are linear in
        X(1), so one pair of matrix products serves every Delta. Both go through ``attention_scores`` with the
        fixed ``W_Q, W_K``."""
        w_q, w_k = fixed_projections(self.keys.shape[1], self.keys.dtype, self.keys.device)
        slope = attention_scores(torch.cat([self.unit, self.keys], 1), w_q, w_k)
        offset = attention_scores(torch.cat([self.shape, self.keys], 1), w_q, w_k)
        return slope, offset


def construct(target: Target, keys: torch.Tensor, rule: str) -> Construction:
    """The queries of ``rule`` (``projection`` or ``solve``, see the module docstring) for ``target``."""
    if rule not in QUERY_RULES:
        raise ValueError(f"query rule {rule!r}; valid: {', '.join(QUERY_RULES)}")
    weights = target.weights.to(torch.float64)
    shape = torch.log(weights / weights.amax(1, keepdim=True))  # (L, s), <= 0, the row's largest at 0
    unit = torch.ones_like(shape)
    if rule == "solve":
        inverse = torch.linalg.pinv(_support_gram(target, keys))  # (L, s, s)
        unit = (inverse @ unit[..., None])[..., 0]
        shape = (inverse @ shape[..., None])[..., 0]
    return Construction(_combine(target, keys, unit), _combine(target, keys, shape), keys)


def _combine(target: Target, keys: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``sum_t coefficients[i, t] * keys[columns[i, t]]`` without an (L, s, d) tensor."""
    out = torch.zeros_like(keys)
    for t in range(target.nonzeros):
        out += coefficients[:, t, None].to(keys.dtype) * keys[target.columns[:, t]]
    return out


def _support_gram(target: Target, keys: torch.Tensor) -> torch.Tensor:
    """(L, s, s) inner products of each row's support keys, in float64."""
    s = target.nonzeros
    gram = torch.empty(target.length, s, s, dtype=torch.float64, device=keys.device)
    for a in range(s):
        for b in range(a, s):
            dot = (keys[target.columns[:, a]].double() * keys[target.columns[:, b]].double()).sum(1)
            gram[:, a, b] = gram[:, b, a] = dot
    return gram
