"""Performer: softmax attention approximated with positive orthogonal random features (FAVOR+)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lra.attention.base import AttentionBackend, State
from lra.attention.causal import CHUNK, causal_step, causal_sum
from lra.attention.registry import register

KERNELS = ("softmax", "relu")
# The additive stabilisers of Google's reference (fast_attention.py): they keep the normaliser positive.
SOFTMAX_EPS = 1e-6
RELU_EPS = 1e-3
LOW_PRECISION = (torch.float16, torch.bfloat16)


def random_features(num_features: int, dim: int, orthogonal: bool, device=None) -> torch.Tensor:
    """An (m, d) matrix of Gaussian directions w ~ N(0, I_d), orthogonal within blocks of d rows if asked.

    Orthogonal rows come from the QR decomposition of a Gaussian block; each row is rescaled by the norm
    of an independent Gaussian vector, so every row keeps the marginal law of N(0, I_d) (the paper's
    "regularized" orthogonal features, Choromanski et al. 2021, section 2.4).
    """
    if not orthogonal:
        return torch.randn(num_features, dim, device=device)
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        q, r = torch.linalg.qr(torch.randn(dim, dim, device=device))
        blocks.append((q * r.diagonal().sign()).T)  # the sign fix makes q uniform (Haar) on O(d)
    directions = torch.cat(blocks)[:num_features]
    return directions * torch.randn(num_features, dim, device=device).norm(dim=1, keepdim=True)


@register("performer")
class PerformerAttention(AttentionBackend):
    """Performer / FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", ICLR 2021).

    Softmax attention ``softmax(q k^T / sqrt(d)) v`` is approximated with random features: with
    ``x = q / d^(1/4)`` (likewise ``k``) and ``m`` directions ``w_r ~ N(0, I_d)``,

        phi(x) = exp(w_r . x - |x|^2 / 2) / sqrt(m)          (positive features, ``kernel=softmax``)
        phi(x) = relu(w_r . x) / sqrt(m)                     (``kernel=relu``, the generalized variant)
        out_i  = phi(q_i) (sum_j phi(k_j) v_j^T) / phi(q_i) . sum_j phi(k_j)

    since ``E[phi(x) . phi(y)] = exp(x . y)``. Numerical stabiliser as in the paper's code: each query's
    exponent is shifted by its own maximum over features and every key's by the maximum over all real
    keys and features of that head (both shifts cancel in the ratio), then a small constant is added.
    Padded keys get zero features. The directions are orthogonal in blocks of d (``orthogonal``) or
    i.i.d., drawn again every ``redraw_interval`` training-mode forward calls (``null``: never).

    ``chunk_size``: compute the key summary and the outputs over blocks of that many tokens, each block
    recomputed in the backward pass, so that activation memory is O(N d + m d) instead of O(N m) (the
    memory-saving order of SLiM Performer, Likhosherstov et al. 2020).

    Time O(N m d), memory O(N m) (O(N d + chunk m) with ``chunk_size``). Dropout does not apply: there is
    no attention matrix.

    ``causal``: the sums run over ``j <= i`` (the paper's prefix-sum form, section 2.5), and the key
    stabiliser of query i is the maximum over the keys ``j <= i`` only (Google's causal code takes it over
    all keys, so there a later key changes earlier outputs through the ``eps`` term). Key j then enters
    query i's sums scaled by ``exp(s_j - s_i) <= 1``, where ``s`` is that running maximum; the ``eps`` part
    of the features is never scaled, so it is summed apart (``eps sum_r phi(q_i)_r sum_{j<=i} v_j``).
    Computed in float32 at least, in blocks of ``chunk_size`` tokens (default 64; no recomputation in
    backward) by ``lra.attention.causal.causal_sum``: time O(N m d + N C (m + d)), memory O(N m + N C).
    Recurrent form: the state is the scaled sums (m, d + 1), the plain sum of ``[1 | v_j]`` and the running
    maximum; each token rescales the sums by ``exp(s_old - s_new)``.
    """

    complexity = "O(N m d)"
    forms_attention_matrix = False
    permutation_equivariant = True
    supports_causal = True
    supports_recurrent = True

    def __init__(
        self,
        *,
        nb_features: int | None = None,
        kernel: str = "softmax",
        orthogonal: bool = True,
        redraw_interval: int | None = 1000,
        chunk_size: int | None = None,
        **common: Any,
    ):
        super().__init__(**common)
        if kernel not in KERNELS:
            raise ValueError(f"performer kernel={kernel!r}; valid: {', '.join(KERNELS)}")
        if nb_features is not None and nb_features < 1:
            raise ValueError(f"performer nb_features must be positive or null (= d ln d), got {nb_features}")
        for key, value in (("redraw_interval", redraw_interval), ("chunk_size", chunk_size)):
            if value is not None and value < 1:
                raise ValueError(f"performer {key} must be positive or null, got {value}")
        self.nb_features = nb_features or max(1, round(self.head_dim * math.log(self.head_dim)))
        self.kernel = kernel
        self.orthogonal = orthogonal
        self.redraw_interval = redraw_interval
        self.chunk_size = chunk_size
        self.training_calls = 0
        self.register_buffer("projection", random_features(self.nb_features, self.head_dim, orthogonal))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, nb_features={self.nb_features}, kernel={self.kernel}, "
                f"orthogonal={self.orthogonal}, redraw_interval={self.redraw_interval}, "
                f"chunk_size={self.chunk_size}")

    # The training-call counter is saved with the weights, so a resumed run redraws on the same schedule.
    def get_extra_state(self) -> dict:
        return {"training_calls": self.training_calls}

    def set_extra_state(self, state: dict) -> None:
        self.training_calls = int(state["training_calls"])

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw fresh random directions (in place, keeping device and dtype)."""
        fresh = random_features(self.nb_features, self.head_dim, self.orthogonal, self.projection.device)
        self.projection.copy_(fresh)

    def forward(self, q, k, v, key_padding_mask=None):
        if self.training and self.redraw_interval is not None:
            if self.training_calls and self.training_calls % self.redraw_interval == 0:
                self.redraw()
            self.training_calls += 1
        if self.causal:
            return self._causal(q, k, v, key_padding_mask)
        real = None if key_padding_mask is None else (~key_padding_mask)[:, None, :, None].to(k.dtype)
        if self.chunk_size is None:
            kv, normaliser = self._key_summary(k, v, real, None, key_padding_mask)
            return self._readout(q, kv, normaliser)
        key_shift = self._key_shift(k, key_padding_mask)
        kv, normaliser = 0, 0
        for start in range(0, k.shape[-2], self.chunk_size):
            part = slice(start, start + self.chunk_size)
            real_part = None if real is None else real[:, :, part]
            kv_part, norm_part = self._maybe_checkpoint(self._key_summary, k[:, :, part], v[:, :, part],
                                                        real_part, key_shift)
            kv, normaliser = kv + kv_part, normaliser + norm_part
        outputs = [
            self._maybe_checkpoint(self._readout, q[:, :, start:start + self.chunk_size], kv, normaliser)
            for start in range(0, q.shape[-2], self.chunk_size)
        ]
        return torch.cat(outputs, dim=-2)

    def _causal(self, q, k, v, key_padding_mask):
        dtype = torch.promote_types(v.dtype, torch.float32)
        phi_q = self._features(q, self._project(q), None).to(dtype)
        values = _with_ones(v.to(dtype))
        exponent = self._project(k).to(dtype)
        pad = None if key_padding_mask is None else key_padding_mask[:, None, :, None]
        if self.kernel == "relu":
            phi_k = self._features(k, exponent, None).to(dtype)
        else:
            running = self._running_key_max(exponent, key_padding_mask)
            exponent = exponent - _half_squared_norm(k, dtype) - running[..., None]
            if pad is not None:  # before the exp: a padded key may overflow, and a masked inf has NaN gradients
                exponent = exponent.masked_fill(pad, -torch.inf)
            phi_k = self.nb_features**-0.5 * exponent.exp()
        if pad is not None:
            phi_k, values = phi_k.masked_fill(pad, 0.0), values.masked_fill(pad, 0.0)
        chunk = self.chunk_size or CHUNK
        if self.kernel == "relu":  # no stabiliser: the features are the whole kernel
            return _ratio(causal_sum(phi_q, phi_k, values, chunk_size=chunk))
        y = causal_sum(phi_q, phi_k, values, shift=-running, chunk_size=chunk)
        y = y + self._eps_part(phi_q) * values.cumsum(-2)
        return _ratio(y)

    @staticmethod
    @torch.no_grad()
    def _running_key_max(exponent: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, H, N): the key stabiliser of each prefix, the maximum exponent over its real keys and features."""
        per_key = exponent.amax(-1)
        if key_padding_mask is not None:
            per_key = per_key.masked_fill(key_padding_mask[:, None, :], -torch.inf)
        # Before the first real key (padded queries only) any finite value does: the smallest keeps it monotone.
        return per_key.cummax(-1).values.clamp_min(torch.finfo(per_key.dtype).min)

    def _eps_part(self, phi_q: torch.Tensor) -> torch.Tensor:
        """What the constant ``scale * eps`` of every key feature adds to query i's sums, per unit of ``v_j``."""
        return self.nb_features**-0.5 * SOFTMAX_EPS * phi_q.sum(-1, keepdim=True)

    def _initial_state(self, batch, dtype, device) -> State:
        heads, width = self.num_heads, self.head_dim + 1
        state = {"kv": torch.zeros(batch, heads, self.nb_features, width, dtype=dtype, device=device)}
        if self.kernel == "softmax":
            state["values"] = torch.zeros(batch, heads, width, dtype=dtype, device=device)
            state["shift"] = torch.full((batch, heads), torch.finfo(dtype).min, dtype=dtype, device=device)
        return state

    def _step(self, state, q, k, v):
        phi_q = self._features(q, self._project(q), None).to(state["kv"].dtype)
        values = _with_ones(v)
        exponent = self._project(k).to(state["kv"].dtype)
        if self.kernel == "relu":
            y, kv = causal_step(state["kv"], phi_q, self._features(k, exponent, None), values)
            return _ratio(y), {"kv": kv}
        shift = torch.maximum(state["shift"], exponent.amax(-1))
        phi_k = self.nb_features**-0.5 * (exponent - _half_squared_norm(k, exponent.dtype) - shift[..., None]).exp()
        y, kv = causal_step(state["kv"], phi_q, phi_k, values, decay=(state["shift"] - shift).exp())
        summed = state["values"] + values
        return _ratio(y + self._eps_part(phi_q) * summed), {"kv": kv, "values": summed, "shift": shift}

    def _maybe_checkpoint(self, fn, *args):
        if not torch.is_grad_enabled():
            return fn(*args)
        return checkpoint(fn, *args, use_reentrant=False)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 at least: the features exponentiate it, and bf16 keeps only ~3 significant digits.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float() if x.dtype in LOW_PRECISION else x
            return (x * x.shape[-1] ** -0.25) @ self.projection.to(x.dtype).T

    @torch.no_grad()
    def _key_shift(self, k: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Max of the key exponents over real keys and features, per (batch, head); softmax kernel only.

        A separate pass over the chunks: every chunk's features need the shift of all keys.
        """
        if self.kernel != "softmax":
            return None
        dtype = torch.promote_types(k.dtype, torch.float32)  # as _project computes the exponents
        shift = torch.full(k.shape[:2] + (1, 1), -torch.inf, dtype=dtype, device=k.device)
        for start in range(0, k.shape[-2], self.chunk_size):
            part = slice(start, start + self.chunk_size)
            pad = None if key_padding_mask is None else key_padding_mask[:, part]
            shift = torch.maximum(shift, _masked_max(self._project(k[:, :, part]), pad))
        return shift

    def _features(self, x: torch.Tensor, exponent: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
        """phi(x) from its projection ``exponent``; ``shift=None`` shifts each row by its own maximum."""
        scale = self.nb_features**-0.5
        if self.kernel == "relu":
            return (scale * F.relu(exponent) + RELU_EPS).to(x.dtype)
        if shift is None:
            shift = exponent.detach().amax(-1, keepdim=True)
        return ScaledExp.apply(exponent - _half_squared_norm(x, exponent.dtype) - shift, scale, SOFTMAX_EPS, x.dtype)

    def _key_summary(self, k, v, real, key_shift, key_padding_mask=None):
        exponent = self._project(k)
        if key_shift is None and self.kernel == "softmax":
            # Unchunked: the stabiliser comes from these same exponents, so the keys are projected once.
            key_shift = _masked_max(exponent.detach(), key_padding_mask)
        phi = self._features(k, exponent, key_shift)
        if real is not None:
            phi = phi * real
        return phi.transpose(-1, -2) @ v, phi.sum(-2, keepdim=True)

    def _readout(self, q, kv, normaliser):
        phi = self._features(q, self._project(q), None)
        denominator = (phi * normaliser).sum(-1, keepdim=True)
        return (phi @ kv) / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


def _half_squared_norm(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``|x / d^(1/4)|^2 / 2`` per token, the norm term of the positive features."""
    return (x.to(dtype) ** 2).sum(-1, keepdim=True) / (2 * math.sqrt(x.shape[-1]))


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """``[1 | v]``: the sum over the first column is the normaliser."""
    return torch.cat([torch.ones_like(v[..., :1]), v], dim=-1)


def _ratio(y: torch.Tensor) -> torch.Tensor:
    return y[..., 1:] / y[..., :1].clamp_min(torch.finfo(y.dtype).tiny)


class ScaledExp(torch.autograd.Function):
    """``scale * (exp(u) + eps)`` cast to ``dtype``, whose backward reuses that output (``d/du = out - scale
    eps``). Autograd's own exp would keep a float32 (N, m) copy of the features for its backward, on top of
    the cast copy the matmuls after it keep; with bf16 inputs this halves what the features hold."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, scale: float, eps: float, dtype: torch.dtype) -> torch.Tensor:
        out = (scale * (torch.exp(u) + eps)).to(dtype)
        ctx.save_for_backward(out)
        ctx.offset = scale * eps
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        dtype = torch.promote_types(out.dtype, torch.float32)
        return grad.to(dtype) * (out.to(dtype) - ctx.offset), None, None, None


def _masked_max(exponent: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Max over real keys and features per (batch, head); 0 for an example with no real key."""
    if key_padding_mask is not None:
        exponent = exponent.masked_fill(key_padding_mask[:, None, :, None], -torch.inf)
    return exponent.amax(dim=(-1, -2), keepdim=True).nan_to_num(0.0, neginf=0.0)
