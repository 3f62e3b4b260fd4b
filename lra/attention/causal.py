"""Causal sums of the linear-time backends: the chunked parallel form and its one-token recurrent step.

Every linear-time backend here (linear, TaylorShift's efficient form, Performer, Element-wise) computes, for
query i, a sum over keys of ``(phi_q(q_i) . phi_k(k_j)) v_j`` with a backend's own feature maps. Causal means
``j <= i``. Where a backend stabilises its key features with a shift that depends on the keys (Performer's
maximum, Element-wise's minimum), the causal shift of query i is the one of its prefix ``j <= i``, so key j
enters query i's sum with the factor ``exp(shift_i - shift_j)``. ``shift`` never increases along the sequence
(a running minimum, or a running maximum negated), so that factor is at most 1: nothing overflows, and the
recurrent step only ever scales its state down (the rescaling of an online softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 64  # tokens per block of the parallel form: C x C weights inside a block, an (m, e) state between


def causal_sum(query_features: torch.Tensor, key_features: torch.Tensor, values: torch.Tensor,
               shift: torch.Tensor | None = None, chunk_size: int = CHUNK) -> torch.Tensor:
    """``y_i = sum_{j <= i} exp(shift_i - shift_j) (query_features_i . key_features_j) values_j`` for all i.

    Shapes: features ``(B, H, N, m)``, values ``(B, H, N, e)``, ``shift`` ``(B, H, N)`` non-increasing along N
    (``None``: no shift); the result is ``(B, H, N, e)``. Within a block of ``chunk_size`` tokens the weights are
    formed pair by pair; between blocks the keys are summed into an (m, e) state per block. Time
    O(N C (m + e) + N m e + (N/C)^2 m e), memory O(N C + (N/C) m e): linear in N, nothing of size N x N.
    """
    batch, heads, length, _ = query_features.shape
    size = min(chunk_size, length)
    tail = -length % size
    if tail:
        query_features, key_features, values = (F.pad(x, (0, 0, 0, tail)) for x in (query_features, key_features,
                                                                                  values))
        if shift is not None:  # repeating the last shift keeps it non-increasing
            shift = torch.cat([shift, shift[..., -1:].expand(-1, -1, tail)], dim=-1)
    blocks = (length + tail) // size

    def in_blocks(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, ...) -> (B, H, blocks, C, ...)
        return x.reshape(batch, heads, blocks, size, *x.shape[3:])

    fq, fk, v = in_blocks(query_features), in_blocks(key_features), in_blocks(values)
    later = torch.ones(size, size, dtype=torch.bool, device=fq.device).triu(1)  # key after query
    # Masked, not multiplied by 0: a later key's weight may be inf, and inf * 0 is NaN.
    weights = (fq @ fk.transpose(-1, -2)).masked_fill(later, 0.0)  # (B, H, blocks, C, C)
    if shift is None:
        inside = weights @ v
        summaries = fk.transpose(-1, -2) @ v  # (B, H, blocks, m, e)
        # Keys of the earlier blocks; the running total in float32 at least, as a matmul would accumulate it.
        total = summaries.cumsum(2, dtype=torch.promote_types(summaries.dtype, torch.float32)).to(summaries.dtype)
        before = F.pad(total, (0, 0, 0, 0, 1, 0))[:, :, :-1]
        return (inside + fq @ before).reshape(batch, heads, -1, v.shape[-1])[:, :, :length]
    s = in_blocks(shift)  # (B, H, blocks, C)
    decay = (s[..., :, None] - s[..., None, :]).masked_fill(later, -torch.inf).exp()
    inside = (weights * decay) @ v
    end = s[..., -1]  # each block's last shift, the reference of its summary: (B, H, blocks)
    summaries = (fk * (end[..., None] - s).exp()[..., None]).transpose(-1, -2) @ v
    # Block b reads the summaries of blocks c < b, each rescaled from its own end to b's start (= c's end
    # when c = b - 1): exp(end_{b-1} - end_c) <= 1, formed directly rather than as a product of steps.
    start = torch.cat([s[:, :, :1, 0], end[..., :-1]], dim=-1)
    earlier = torch.ones(blocks, blocks, dtype=torch.bool, device=fq.device).tril(-1)
    carry = (start[..., :, None] - end[..., None, :]).masked_fill(~earlier, -torch.inf).exp()
    before = (carry @ summaries.flatten(-2)).view_as(summaries)
    inter = (fq @ before) * (s - start[..., None]).exp()[..., None]
    return (inside + inter).reshape(batch, heads, -1, v.shape[-1])[:, :, :length]


def causal_step(state: torch.Tensor, query_feature: torch.Tensor, key_feature: torch.Tensor, value: torch.Tensor,
                decay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of ``causal_sum``: ``S <- decay S + key_feature value^T``, ``y = query_feature . S``.

    Shapes: ``state`` ``(B, H, m, e)``, features ``(B, H, m)``, ``value`` ``(B, H, e)``, ``decay`` ``(B, H)``
    (``exp(shift_t - shift_{t-1})``, at most 1) or ``None``. Returns ``(y (B, H, e), new state)``; the state
    given is not modified.
    """
    if decay is not None:
        state = state * decay[..., None, None]
    state = state + key_feature.unsqueeze(-1) * value.unsqueeze(-2)
    return (query_feature.unsqueeze(-2) @ state).squeeze(-2), state
