"""Linear attention with the elu + 1 feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lra.attention.base import AttentionBackend, State
from lra.attention.causal import causal_step, causal_sum
from lra.attention.registry import register

EPS = 1e-6  # the denominator guard of the paper's reference implementation (fast-transformers)


@register("linear")
class LinearAttention(AttentionBackend):
    """Linear Transformer (Katharopoulos et al., "Transformers are RNNs", ICML 2020).

    With the feature map ``phi(x) = elu(x) + 1`` (positive, so the weights are a valid average),

        out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps)

    over real keys (padded keys get ``phi = 0``). Time O(N d^2), memory O(N d + d^2). Dropout does not
    apply: there is no attention matrix.

    ``causal``: the sums run over ``j <= i`` (the paper's autoregressive form), computed in blocks by
    ``lra.attention.causal.causal_sum``: time O(N d^2 + N C d), memory O(N C + (N/C) d^2) for blocks of C
    tokens. Recurrent form (the paper's RNN): the state is ``sum_j phi(k_j) [1 | v_j]^T``, (d, d + 1).
    """

    complexity = "O(N d^2)"
    forms_attention_matrix = False
    permutation_equivariant = True
    supports_causal = True
    supports_recurrent = True

    def forward(self, q, k, v, key_padding_mask=None):
        phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
        if key_padding_mask is not None:
            phi_k = phi_k.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        if self.causal:
            return _ratio(causal_sum(phi_q, phi_k, _with_ones(v)))
        kv = phi_k.transpose(-1, -2) @ v
        normaliser = phi_k.sum(-2, keepdim=True)
        return (phi_q @ kv) / ((phi_q * normaliser).sum(-1, keepdim=True) + EPS)

    def _initial_state(self, batch, dtype, device) -> State:
        shape = (batch, self.num_heads, self.head_dim, self.head_dim + 1)
        return {"kv": torch.zeros(shape, dtype=dtype, device=device)}

    def _step(self, state, q, k, v):
        y, kv = causal_step(state["kv"], F.elu(q) + 1, F.elu(k) + 1, _with_ones(v))
        return _ratio(y), {"kv": kv}


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """``[1 | v]``: the sum over the first column is the normaliser."""
    return torch.cat([torch.ones_like(v[..., :1]), v], dim=-1)


def _ratio(y: torch.Tensor) -> torch.Tensor:
    return y[..., 1:] / (y[..., :1] + EPS)
