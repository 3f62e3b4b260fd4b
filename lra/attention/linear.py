"""Linear attention with the elu + 1 feature map."""

from __future__ import annotations

import warnings

import torch.nn.functional as F

from lra.attention.base import AttentionBackend
from lra.attention.registry import register

EPS = 1e-6  # the denominator guard of the paper's reference implementation (fast-transformers)


@register("linear")
class LinearAttention(AttentionBackend):
    """Linear Transformer (Katharopoulos et al., "Transformers are RNNs", ICML 2020).

    With the feature map ``phi(x) = elu(x) + 1`` (positive, so the weights are a valid average),

        out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps)

    over real keys (padded keys get ``phi = 0``). Time O(N d^2), memory O(N d + d^2). Dropout does not
    apply: there is no attention matrix.
    """

    def __init__(self, *, num_heads: int, head_dim: int, max_length: int | None = None, dropout: float = 0.0):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout)
        if dropout > 0:
            warnings.warn(f"linear: attention dropout {dropout} does not apply (no attention matrix)",
                          stacklevel=2)

    def forward(self, q, k, v, key_padding_mask=None):
        phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
        if key_padding_mask is not None:
            phi_k = phi_k.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        kv = phi_k.transpose(-1, -2) @ v
        normaliser = phi_k.sum(-2, keepdim=True)
        return (phi_q @ kv) / ((phi_q * normaliser).sum(-1, keepdim=True) + EPS)
