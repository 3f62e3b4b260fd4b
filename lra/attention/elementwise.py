"""Element-wise attention: per-channel Gaussian similarity, made linear in N by a Taylor polynomial."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from lra.attention.base import AttentionBackend, State, causal_mask
from lra.attention.causal import causal_step, causal_sum
from lra.attention.registry import register

MODES = ("linear", "quadratic", "direct")
# The features are only t + 1 wide per channel, so the C x C weights of a block dominate the causal form's
# memory (N C d per head): small blocks.
CAUSAL_CHUNK = 16


@register("elementwise")
class ElementwiseAttention(AttentionBackend):
    """Element-wise Attention (Guoxin Feng, "Element-wise Attention Is All You Need", arXiv 2501.05730, 2025).

    RECONSTRUCTED, NOT CHECKED AGAINST THE PAPER'S BODY. Only the abstract could be read: similarity is the
    element-wise squared Euclidean distance instead of the dot product, the term ``exp(q_ic k_jc)`` is
    replaced by a Taylor polynomial of highest order t, training costs O(t L D), and there are causal and
    non-causal forms with O(t D) recurrent inference. The formula below is our reconstruction; the
    absence of a temperature, the default order and the normalisation are our choices. With
    ``scale`` gamma,

        o_ic = sum_j exp(-gamma (q_ic - k_jc)^2) v_jc / sum_j exp(-gamma (q_ic - k_jc)^2)   (``mode=direct``)

    one softmax per channel c. Since ``-gamma (q - k)^2 = -gamma q^2 + 2 gamma q k - gamma k^2``, the
    ``exp(-gamma q_ic^2)`` factor cancels, ``exp(-gamma k_jc^2)`` becomes a key weight, and
    ``exp(2 gamma q_ic k_jc)`` is replaced by ``P_t(2 gamma q_ic k_jc)`` with ``P_t(x) = sum_{n<=t} x^n / n!``
    (positive for every x when t is even):

        o_ic = sum_n ((2 gamma)^n/n!) q_ic^n S_nc / sum_n ((2 gamma)^n/n!) q_ic^n Z_nc,
        S_nc = sum_j exp(-gamma k_jc^2) k_jc^n v_jc,   Z_nc = sum_j exp(-gamma k_jc^2) k_jc^n   (``mode=linear``)

    The default ``scale = 1/2`` follows the abstract: the similarity ``-(q - k)^2 / 2`` leaves exactly
    ``exp(q_ic k_jc)``, which the abstract expands, i.e. ``P_t(q_ic k_jc)`` with key weight
    ``exp(-k_jc^2 / 2)``. ``scale = 1`` (``-(q - k)^2``, expanding ``exp(2 q k)``) is what this module
    computed before it had the option; the ListOps ``elementwise`` records of 2026-11-23 in ``results/runs/``
    ran with it.

    ``mode=quadratic`` evaluates the same polynomial weights pair by pair (for checking the linear form).
    The key weights are computed as ``exp(-(gamma k_jc^2 - min_j gamma k_jc^2))`` (minimum over real keys):
    the shift cancels in the ratio and keeps the largest key weight at 1. Padded keys get weight 0.

    ``causal``: the sums run over ``j <= i``, and the shift of query i is the minimum over the real keys
    ``j <= i`` only (the minimum over all keys is not causal: a later key with a smaller ``k^2`` would
    rescale, and could underflow, every earlier weight). Key j then enters query i's sums scaled by
    ``exp(m_i - m_j) <= 1``, ``m`` the running minimum. The linear form is computed in blocks of
    ``CAUSAL_CHUNK`` tokens by ``lra.attention.causal.causal_sum``, one channel at a time: time and memory
    O(N C d + t N d). Recurrent form (``linear`` and ``quadratic``, the same function): per head and channel
    the sums ``S_nc``, ``Z_nc`` (2 (t + 1) d numbers, the abstract's O(t D)) and the running minimum; a
    token with a new minimum rescales the sums by ``exp(m_new - m_old)``. ``direct`` has no recurrent form.

    Cost: ``linear`` time and memory O(t N d); ``quadratic`` and ``direct`` O(N^2 d). Dropout does not
    apply in any mode: ``linear`` has no attention matrix, and the checking modes must compute the same
    function.
    """

    complexity = "O(N d t)"
    forms_attention_matrix = False
    permutation_equivariant = True
    supports_causal = True
    supports_recurrent = True

    @classmethod
    def complexity_of(cls, options: Mapping[str, object]) -> str:
        return cls.complexity if options.get("mode", "linear") == "linear" else "O(N^2 d)"

    def __init__(
        self,
        *,
        mode: str = "linear",
        order: int = 2,
        scale: float = 0.5,
        **common: Any,
    ):
        super().__init__(**common)
        if mode not in MODES:
            raise ValueError(f"elementwise mode={mode!r}; valid: {', '.join(MODES)}")
        if order < 0:
            raise ValueError(f"elementwise order must be >= 0, got {order}")
        if not scale > 0:
            raise ValueError(f"elementwise scale must be positive (similarity -scale (q - k)^2), got {scale}")
        if order % 2:
            warnings.warn(f"elementwise: odd order {order} lets P_t(2 scale qk) go negative, so weights may "
                          "cancel and the normaliser may vanish; even orders keep every weight positive",
                          stacklevel=2)
        self.mode, self.order, self.scale = mode, order, scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}, order={self.order}, scale={self.scale}"

    def forward(self, q, k, v, key_padding_mask=None):
        if self.mode == "direct":
            return self._direct(q, k, v, key_padding_mask)
        square = self.scale * k * k
        shift = None
        if self.causal:
            shift = _running_min(square.detach(), key_padding_mask)
            weight = _masked_exp(shift - square, key_padding_mask)
        else:
            weight = _key_weight(square, key_padding_mask)
        if self.mode == "quadratic":
            return self._quadratic(q, k, v, weight, shift)
        if self.causal:
            return self._causal_linear(q, k, v, weight, shift)
        return self._linear(q, k, v, weight)

    def _coefficients(self) -> list[float]:
        return [(2 * self.scale) ** n / math.factorial(n) for n in range(self.order + 1)]

    def _linear(self, q, k, v, weight):
        numerator = denominator = 0
        q_power, weighted_k_power = torch.ones_like(q), weight
        for n, coefficient in enumerate(self._coefficients()):
            if n:
                q_power, weighted_k_power = q_power * q, weighted_k_power * k
            numerator = numerator + coefficient * q_power * (weighted_k_power * v).sum(-2, keepdim=True)
            denominator = denominator + coefficient * q_power * weighted_k_power.sum(-2, keepdim=True)
        return numerator / _guard(denominator)

    def _features(self, q: torch.Tensor, k: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c_n q^n)_n`` and ``(weight k^n)_n`` on a new last axis: (..., d, t + 1) each."""
        q_powers, k_powers = [torch.ones_like(q)], [torch.ones_like(k)]
        for _ in range(self.order):
            q_powers.append(q_powers[-1] * q)
            k_powers.append(k_powers[-1] * k)
        coefficients = torch.tensor(self._coefficients(), dtype=q.dtype, device=q.device)
        return torch.stack(q_powers, -1) * coefficients, weight.unsqueeze(-1) * torch.stack(k_powers, -1)

    def _causal_linear(self, q, k, v, weight, shift):
        batch, heads, length, width = q.shape

        def channels_as_heads(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, d, ...) -> (B, H d, N, ...)
            return x.transpose(2, 3).reshape(batch, heads * width, length, *x.shape[4:])

        q_features, k_features = self._features(q, k, weight)
        values = torch.stack([torch.ones_like(v), v], -1)  # [1 | v] per channel: the normaliser, the sum
        y = causal_sum(channels_as_heads(q_features), channels_as_heads(k_features), channels_as_heads(values),
                       channels_as_heads(shift), chunk_size=CAUSAL_CHUNK)
        y = y.view(batch, heads, width, length, 2).transpose(2, 3)
        return y[..., 1] / _guard(y[..., 0])

    def _quadratic(self, q, k, v, weight, shift=None):
        x = 2 * self.scale * q.unsqueeze(-2) * k.unsqueeze(-3)  # (B, H, N_q, N_k, d)
        polynomial = sum(x**n / math.factorial(n) for n in range(self.order + 1))
        w = polynomial * weight.unsqueeze(-3)
        if shift is not None:  # causal: key j rescaled from its own running minimum to query i's
            later = causal_mask(q.shape[-2], q.device)[..., None]
            w = w * (shift.unsqueeze(-2) - shift.unsqueeze(-3)).masked_fill(later, -torch.inf).exp()
        return (w * v.unsqueeze(-3)).sum(-2) / _guard(w.sum(-2))

    def _direct(self, q, k, v, key_padding_mask):
        logits = -self.scale * (q.unsqueeze(-2) - k.unsqueeze(-3)) ** 2  # (B, H, N_q, N_k, d)
        blocked = torch.zeros(1, 1, 1, 1, 1, dtype=torch.bool, device=q.device)
        if key_padding_mask is not None:
            blocked = blocked | key_padding_mask[:, None, None, :, None]
        if self.causal:
            blocked = blocked | causal_mask(q.shape[-2], q.device)[..., None]
        # A query with no key to see (padding) would get NaN, in the gradient too: let it see every key.
        logits = logits.masked_fill(blocked & ~blocked.all(-2, keepdim=True), -torch.inf)
        return (torch.softmax(logits, dim=-2) * v.unsqueeze(-3)).sum(-2)

    def recurrent_unavailable(self) -> str | None:
        if self.mode == "direct":
            return ("elementwise mode=direct (the exact exponential) has no recurrent form; mode=linear or "
                    "mode=quadratic (the Taylor function) can step")
        return super().recurrent_unavailable()

    def _initial_state(self, batch, dtype, device) -> State:
        channels = self.num_heads * self.head_dim
        return {"sums": torch.zeros(batch, channels, self.order + 1, 2, dtype=dtype, device=device),
                "shift": torch.full((batch, channels), torch.finfo(dtype).max, dtype=dtype, device=device)}

    def _step(self, state, q, k, v):
        batch = q.shape[0]
        square = (self.scale * k * k).reshape(batch, -1)  # channels as heads: (B, H d)
        shift = torch.minimum(state["shift"], square)
        q_features, k_features = self._features(q, k, torch.exp(shift - square).view_as(k))
        values = torch.stack([torch.ones_like(v), v], -1)
        y, sums = causal_step(state["sums"], q_features.flatten(1, 2), k_features.flatten(1, 2),
                              values.flatten(1, 2), decay=torch.exp(shift - state["shift"]))
        y = y.view(batch, self.num_heads, self.head_dim, 2)
        return y[..., 1] / _guard(y[..., 0]), {"sums": sums, "shift": shift}


def _key_weight(square: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``exp(-(s - min_j s))`` per channel for ``s = scale k^2``, zero at padded keys: (B, H, N, d)."""
    if key_padding_mask is None:
        return torch.exp(square.detach().amin(-2, keepdim=True) - square)
    smallest = square.detach().masked_fill(key_padding_mask[:, None, :, None], torch.inf).amin(-2, keepdim=True)
    smallest = smallest.nan_to_num(0.0, posinf=0.0)  # no real key at all: any finite shift
    return _masked_exp(smallest - square, key_padding_mask)


def _masked_exp(exponent: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``exp`` with padded keys at 0, masked before the exp: a padded key's weight may overflow, and
    ``inf`` masked afterwards would still send NaN back through the exp's gradient."""
    if key_padding_mask is not None:
        exponent = exponent.masked_fill(key_padding_mask[:, None, :, None], -torch.inf)
    return exponent.exp()


def _running_min(square: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, H, N, d): the minimum of ``square`` over the real keys up to each position (the causal shift)."""
    if key_padding_mask is not None:
        square = square.masked_fill(key_padding_mask[:, None, :, None], torch.inf)
    # Before the first real key (padded queries only) any finite value does: the largest keeps it monotone.
    return square.cummin(-2).values.clamp_max(torch.finfo(square.dtype).max)


def _guard(denominator: torch.Tensor) -> torch.Tensor:
    """Keep a vanishing normaliser (no real key, or an odd order) from dividing by zero."""
    tiny = torch.finfo(denominator.dtype).tiny
    return torch.where(denominator.abs() < tiny, torch.full_like(denominator, tiny), denominator)
