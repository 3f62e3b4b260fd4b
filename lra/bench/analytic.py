"""The TaylorShift paper's cost model: FLOPs and memory of softmax, direct and efficient TaylorShift.

Nauen, Palacio, Dengel, "TaylorShift: Shifting the Complexity of Self-Attention from Squared to Linear
(and Back) using Taylor-Softmax", ICPR 2024, arXiv 2403.02920; the authors' code tobna/TaylorShift
``analysis/utils.py`` ``theoretical_cutoff``. Per head and per sequence, with N the length, d the head
dimension and F = d^2 + d + 1 the number of Taylor features ``[k (x) k, k, 1]``:

FLOPs of the forward pass (a multiply-add counts 2):
    softmax                4 N^2 d        (Q K^T and P V; the O(N^2) softmax itself is left out)
    direct TaylorShift     4 N^2 (d + 1)  (Q K^T and the polynomial: 2 N^2 (d + 1); A [1 | V]: 2 N^2 (d + 1))
    efficient TaylorShift  4 N F (d + 1)  (Phi(K)^T [1 | V], then Phi(Q) times that: 2 N F (d + 1) each)
Forward + backward: softmax 14 N^2 d (FlashAttention's backward recomputes Q K^T: five products),
direct and efficient TaylorShift 3 x forward (plain autograd: each product's backward is two products).

Speed crossovers (equal FLOPs):
    efficient vs direct        N0 = F = d^2 + d + 1            (the paper's; same in fwd and fwd+bwd)
    efficient vs softmax       N  = F (d + 1) / d              (forward)
                               N  = 6 F (d + 1) / (7 d)        (forward + backward)

Memory, in tensor entries the method holds beyond its inputs (the paper's inference accounting):
    direct TaylorShift   2 N^2                     (the score matrix and the normalised attention matrix)
    efficient TaylorShift N (d + 1)^2 + d^2 (d + 1) (features N d^2, scaled queries N d, [1 | V] N (d + 1);
                                                    the key-value summary d^2 x (d + 1))
Memory crossover: 2 N^2 = N (d + 1)^2 + d^2 (d + 1), whose positive root is the authors'
``theoretical_cutoff(d, flops=False) = round((d^2 + 2d + 1 + sqrt(d^4 + 12 d^3 + 14 d^2 + 4 d + 1)) / 4)``
(158, 574, 2174 for d = 16, 32, 64). Softmax through FlashAttention holds O(N d), so neither TaylorShift
form has a memory crossover with it.
"""

from __future__ import annotations

import math

KINDS = ("softmax", "direct", "efficient")


def features(head_dim: int) -> int:
    """F: entries of the Taylor feature map [k (x) k, k, 1]."""
    return head_dim * head_dim + head_dim + 1


def forward_flops(kind: str, length: int, head_dim: int) -> float:
    """Forward FLOPs of one head on one sequence (see the module docstring)."""
    n, d = float(length), float(head_dim)
    if kind == "softmax":
        return 4 * n * n * d
    if kind == "direct":
        return 4 * n * n * (d + 1)
    if kind == "efficient":
        return 4 * n * features(head_dim) * (d + 1)
    raise ValueError(f"unknown cost-model kind {kind!r}; known: {', '.join(KINDS)}")


def flops(kind: str, length: int, head_dim: int, mode: str) -> float:
    """FLOPs of one head on one sequence in ``mode`` ``fwd`` or ``fwd_bwd``."""
    forward = forward_flops(kind, length, head_dim)
    if mode == "fwd":
        return forward
    if mode == "fwd_bwd":
        return 3.5 * forward if kind == "softmax" else 3.0 * forward
    raise ValueError(f"mode must be fwd or fwd_bwd, not {mode!r}")


def memory_entries(kind: str, length: int, head_dim: int) -> float | None:
    """Entries held beyond the inputs, per head and sequence; None for softmax (O(N d), not modelled)."""
    n, d = float(length), float(head_dim)
    if kind == "direct":
        return 2 * n * n
    if kind == "efficient":
        return n * (d + 1) ** 2 + d * d * (d + 1)
    if kind == "softmax":
        return None
    raise ValueError(f"unknown cost-model kind {kind!r}; known: {', '.join(KINDS)}")


def speed_crossover(head_dim: int) -> int:
    """N0 = d^2 + d + 1: above it efficient TaylorShift needs fewer FLOPs than direct."""
    return features(head_dim)


def memory_crossover(head_dim: int) -> int:
    """N1: above it efficient TaylorShift holds fewer entries than direct (the authors' formula)."""
    d = head_dim
    return round(0.25 * (d**2 + 2 * d + 1 + math.sqrt(d**4 + 12 * d**3 + 14 * d**2 + 4 * d + 1)))


def softmax_speed_crossover(head_dim: int, mode: str) -> float:
    """N above which efficient TaylorShift (fused or not) needs fewer FLOPs than softmax attention."""
    d = head_dim
    if mode == "fwd":
        return features(d) * (d + 1) / d
    if mode == "fwd_bwd":
        return 6 * features(d) * (d + 1) / (7 * d)
    raise ValueError(f"mode must be fwd or fwd_bwd, not {mode!r}")


def predicted_crossover(faster: str, slower: str, metric: str, head_dim: int, mode: str) -> float | None:
    """The model's N above which ``faster`` beats ``slower`` in ``metric`` (time | memory); None if none."""
    pair = (faster, slower)
    if pair == ("efficient", "direct"):
        return speed_crossover(head_dim) if metric == "time" else memory_crossover(head_dim)
    if pair == ("efficient", "softmax") and metric == "time":
        return softmax_speed_crossover(head_dim, mode)
    return None
