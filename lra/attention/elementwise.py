"""Element-wise attention: per-channel Gaussian similarity, made linear in N by a Taylor polynomial."""

from __future__ import annotations

import math
import warnings

import torch

from lra.attention.base import AttentionBackend
from lra.attention.registry import register

MODES = ("linear", "quadratic", "direct")


@register("elementwise")
class ElementwiseAttention(AttentionBackend):
    """Element-wise Attention (Guoxin Feng, "Element-wise Attention Is All You Need", arXiv 2501.05730, 2025).

    RECONSTRUCTED, NOT CHECKED AGAINST THE PAPER'S BODY. Only the abstract could be read: similarity is the
    element-wise squared Euclidean distance instead of the dot product, the term ``exp(q_ic k_jc)`` is
    replaced by a Taylor polynomial of highest order t, training costs O(t L D). The formula below is the
    reconstruction of the issue and of ``shared/reference/published.md`` section 4; its constants (the
    factor 2, the absence of a temperature), the default order and the normalisation are our choices:

        o_ic = sum_j exp(-(q_ic - k_jc)^2) v_jc / sum_j exp(-(q_ic - k_jc)^2)         (``mode=direct``)

    one softmax per channel c. Since ``-(q - k)^2 = -q^2 + 2 q k - k^2``, the ``exp(-q_ic^2)`` factor
    cancels, ``exp(-k_jc^2)`` becomes a key weight, and ``exp(2 q_ic k_jc)`` is replaced by
    ``P_t(2 q_ic k_jc)`` with ``P_t(x) = sum_{n<=t} x^n / n!`` (positive for every x when t is even):

        o_ic = sum_n (2^n/n!) q_ic^n S_nc / sum_n (2^n/n!) q_ic^n Z_nc,
        S_nc = sum_j exp(-k_jc^2) k_jc^n v_jc,   Z_nc = sum_j exp(-k_jc^2) k_jc^n       (``mode=linear``)

    ``mode=quadratic`` evaluates the same polynomial weights pair by pair (for checking the linear form).
    The key weights are computed as ``exp(-(k_jc^2 - min_j k_jc^2))`` (minimum over real keys): the shift
    cancels in the ratio and keeps the largest key weight at 1. Padded keys get weight 0.

    Cost: ``linear`` time and memory O(t N d); ``quadratic`` and ``direct`` O(N^2 d). Dropout does not
    apply in any mode: ``linear`` has no attention matrix, and the checking modes must compute the same
    function.
    """

    def __init__(
        self,
        *,
        num_heads: int,
        head_dim: int,
        max_length: int | None = None,
        dropout: float = 0.0,
        mode: str = "linear",
        order: int = 2,
    ):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout)
        if mode not in MODES:
            raise ValueError(f"elementwise mode={mode!r}; valid: {', '.join(MODES)}")
        if order < 0:
            raise ValueError(f"elementwise order must be >= 0, got {order}")
        if order % 2:
            warnings.warn(f"elementwise: odd order {order} lets P_t(2qk) go negative, so weights may "
                          "cancel and the normaliser may vanish; even orders keep every weight positive",
                          stacklevel=2)
        if dropout > 0:
            warnings.warn(f"elementwise: attention dropout {dropout} does not apply (no attention matrix)",
                          stacklevel=2)
        self.mode = mode
        self.order = order

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}, order={self.order}"

    def forward(self, q, k, v, key_padding_mask=None):
        if self.mode == "direct":
            return self._direct(q, k, v, key_padding_mask)
        weight = self._key_weight(k, key_padding_mask)
        if self.mode == "quadratic":
            return self._quadratic(q, k, v, weight)
        return self._linear(q, k, v, weight)

    @staticmethod
    def _key_weight(k: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``exp(-(k^2 - min_j k^2))`` per channel, zero at padded keys: (B, H, N, d)."""
        square = k * k
        if key_padding_mask is None:
            return torch.exp(square.detach().amin(-2, keepdim=True) - square)
        pad = key_padding_mask[:, None, :, None]
        smallest = square.detach().masked_fill(pad, torch.inf).amin(-2, keepdim=True)
        smallest = smallest.nan_to_num(0.0, posinf=0.0)  # no real key at all: any finite shift
        return torch.exp(smallest - square).masked_fill(pad, 0.0)

    def _coefficients(self) -> list[float]:
        return [2.0**n / math.factorial(n) for n in range(self.order + 1)]

    def _linear(self, q, k, v, weight):
        numerator = denominator = 0
        q_power, weighted_k_power = torch.ones_like(q), weight
        for n, coefficient in enumerate(self._coefficients()):
            if n:
                q_power, weighted_k_power = q_power * q, weighted_k_power * k
            numerator = numerator + coefficient * q_power * (weighted_k_power * v).sum(-2, keepdim=True)
            denominator = denominator + coefficient * q_power * weighted_k_power.sum(-2, keepdim=True)
        return numerator / _guard(denominator)

    def _quadratic(self, q, k, v, weight):
        x = 2 * q.unsqueeze(-2) * k.unsqueeze(-3)  # (B, H, N_q, N_k, d)
        polynomial = sum(x**n / math.factorial(n) for n in range(self.order + 1))
        w = polynomial * weight.unsqueeze(-3)
        return (w * v.unsqueeze(-3)).sum(-2) / _guard(w.sum(-2))

    @staticmethod
    def _direct(q, k, v, key_padding_mask):
        logits = -((q.unsqueeze(-2) - k.unsqueeze(-3)) ** 2)  # (B, H, N_q, N_k, d)
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, None, :, None], -torch.inf)
        return (torch.softmax(logits, dim=-2) * v.unsqueeze(-3)).sum(-2).nan_to_num(0.0)


def _guard(denominator: torch.Tensor) -> torch.Tensor:
    """Keep a vanishing normaliser (no real key, or an odd order) from dividing by zero."""
    tiny = torch.finfo(denominator.dtype).tiny
    return torch.where(denominator.abs() < tiny, torch.full_like(denominator, tiny), denominator)
