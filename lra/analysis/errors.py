"""How far ``softmax(scores)`` is from a sparse target, from the logits (never forming the softmax twice).

Per row i, with ``p = softmax(scores_i)`` and the target row ``a`` (support S_i, s entries):

* ``tv``: total variation ``1/2 sum_j |p_j - a_j|``; summarised as the mean over rows.
* ``max_abs``: ``max_j |p_j - a_j|``; summarised as the maximum over rows (the matrix's max-abs error).
* ``log_ratio``: the worst distortion of a ratio of two support entries,
  ``max_{j,k in S_i} |log(p_j/p_k) - log(a_j/a_k)|``; maximum over rows.
* ``leak``: the largest off-support entry relative to the smallest support entry,
  ``max_{j not in S_i} p_j / min_{k in S_i} p_k``; maximum over rows.
* ``ratio``: ``max(log_ratio, leak)``: our reading of the paper's "precision defined in terms of preserving
  matrix element ratios" as one number (support ratios kept within a factor exp(+-ratio), every
  off-support entry below ratio times the smallest support entry); maximum over rows.
"""

from __future__ import annotations

import math

import torch

METRICS = ("tv", "max_abs", "ratio", "log_ratio", "leak")
CHOSEN_BY = {"tv": "tv", "max_abs": "max_abs", "ratio": "ratio", "log_ratio": "ratio", "leak": "ratio"}
"""The measure whose smallest value picks Delta for each metric: log_ratio and leak are the two halves of
ratio (log_ratio alone would pick Delta -> 0, leak alone Delta -> infinity)."""
CRITERIA = ("tv", "max_abs", "ratio")  # the measures a threshold applies to (d_min, the fits)


def row_errors(scores: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor,
               overwrite: bool = False) -> dict[str, torch.Tensor]:
    """Per-row errors of ``softmax(scores)`` against the sparse rows ``(columns, weights)``: each (rows,).
    ``overwrite``: ``scores`` may be written over (saves a copy of the matrix)."""
    on = scores.gather(1, columns)
    off = scores if overwrite else scores.clone()
    off.scatter_(1, columns, -math.inf)  # the off-support logits only
    off_max = off.amax(1, keepdim=True)
    off_lse = (off - off_max).exp_().sum(1).log_() + off_max[:, 0]
    off_max = off_max[:, 0]
    del off
    lse = torch.logaddexp(torch.logsumexp(on, 1), off_lse)
    log_p = on - lse[:, None]
    gap = (log_p.exp() - weights).abs()
    distortion = log_p - weights.log()
    leak = (off_max - on.amin(1)).exp()
    log_ratio = distortion.amax(1) - distortion.amin(1)
    return {
        "tv": 0.5 * (gap.sum(1) + (off_lse - lse).exp()),
        "max_abs": torch.maximum(gap.amax(1), (off_max - lse).exp()),
        "log_ratio": log_ratio,
        "leak": leak,
        "ratio": torch.maximum(log_ratio, leak),
    }


def summarise(rows: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean total variation over rows; the maximum over rows of every other measure."""
    return {name: float(values.mean() if name == "tv" else values.max()) for name, values in rows.items()}


def matrix_errors(scores: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor,
                  overwrite: bool = False) -> dict[str, float]:
    return summarise(row_errors(scores, columns, weights.to(scores.dtype), overwrite))
