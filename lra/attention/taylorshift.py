"""TaylorShift: softmax replaced by its second-order Taylor expansion, computed in O(N) when N is long."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lra.attention.base import AttentionBackend, State, causal_mask
from lra.attention.causal import causal_step, causal_sum
from lra.attention.registry import register

MODES = ("auto", "direct", "efficient")
# Where both forms run as fused Triton kernels, auto runs the direct one up to this many tokens (by head dimension,
# the nearest at or above): the measured crossover of the two on an H200, forward+backward, bf16, B=32, H=4
# (results/bench/nvidia-h200/taylorshift_core_fwd_bwd.md, commit 2064b50).
FUSED_CROSSOVER = {32: 3062, 64: 6853}
IMPLS = ("auto", "torch", "triton")


# A plain memo rather than functools.cache: torch.compile traces through the cache wrapper, with a warning.
_KERNELS: dict[str, ModuleType | ImportError] = {}


def _kernels() -> ModuleType | ImportError:
    """``lra.attention.kernels`` (the fused Triton kernels), or the ImportError that hides it; imported on first use,
    so that Triton is imported only where a TaylorShift backend runs."""
    if "module" not in _KERNELS:
        try:
            import lra.attention.kernels as kernels
        except ImportError as error:  # the kernel modules are absent on this branch
            _KERNELS["module"] = error
        else:
            _KERNELS["module"] = kernels if kernels.TRITON_AVAILABLE else ImportError("no module named 'triton'")
    return _KERNELS["module"]


def _why_no_kernel(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the fused kernels cannot run on tensors of ``dtype`` on ``device``; None when they can."""
    kernels = _kernels()
    if isinstance(kernels, ImportError):
        return f"the kernels do not import ({kernels})"
    if device.type != "cuda":
        return f"the tensors are on {device}, not CUDA"
    if dtype not in kernels.SUPPORTED_DTYPES:
        return f"the tensors are {dtype}, not float16, bfloat16 or float32"
    return None


def fused_crossover(head_dim: int) -> int:
    """The length up to which auto runs the fused direct form rather than the fused efficient one."""
    dims = sorted(FUSED_CROSSOVER)
    return FUSED_CROSSOVER[next((d for d in dims if d >= head_dim), dims[-1])]


def _tensor_square(x: torch.Tensor) -> torch.Tensor:
    """Row-wise ``x (x) x`` flattened, (..., N, d) -> (..., N, d^2): ``(x (x) x).(y (x) y) = (x.y)^2``."""
    return (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)


@register("taylorshift")
class TaylorShiftAttention(AttentionBackend):
    """TaylorShift (Nauen, Palacio, Dengel, ICPR 2024, arXiv 2403.02920; code: github.com/tobna/TaylorShift).

    With ``q^ = tau_h q / |q|`` (learnable per-head temperature ``tau``, initialised at ``temperature``: 1 in the
    authors' code) and ``k^ = k / |k|``,
    ``s_ij = q^_i . k^_j`` and

        w_ij = a s_ij^2 + b s_ij + c          (a, b, c = 1/2, 1, 1: the Taylor expansion of exp)
        out_i = sqrt(N_real / d) * sum_j w_ij v_j / sum_j w_ij

    where the sum runs over real (non-padded) keys and ``N_real`` is the number of real keys of that
    example; the factor ``sqrt(N/d)`` is the paper's output normalisation (``output_normalized``, on in
    all of the authors' LRA models). ``a > 0`` and ``c >= b^2 / 4a`` keep every ``w_ij`` non-negative.

    Two forms of the same function:

    * ``direct``: builds the N x N weights. Time O(N^2 d), memory O(N^2); the fused kernel
      (``lra.attention.kernels.taylorshift_direct``) computes it in FlashAttention's tiles in memory O(N d).
    * ``efficient``: with ``alpha = d^(1/4)``, ``q~ = alpha q^``, ``k~ = alpha k^`` and
      ``V' = [1 | V] / N_real`` (padded rows zeroed),
      ``Y = a (q~ (x) q~) ((k~ (x) k~)^T V') + alpha^2 b q~ (k~^T V') + alpha^4 c sum_j V'_j``
      and ``out = Y[:, 1:] / Y[:, :1]``. ``(q~ (x) q~).(k~ (x) k~) = alpha^4 s^2``, so ``Y`` is
      ``alpha^4 sum_j w_ij V'_j``: the same function; ``alpha`` and ``1/N`` only keep the intermediates
      in range in low precision. Time O(N d^3), memory O(N d^2); no N x N tensor.
    * ``auto``: efficient when ``N > crossover``. The default crossover is the paper's FLOP crossover
      ``N0 = d^2 + d + 1`` for the PyTorch forms, and ``FUSED_CROSSOVER`` (measured) where both forms run
      as fused kernels; a number given as ``crossover`` overrides both.

    ``impl``: ``torch`` runs the PyTorch forms above (the reference, and the CPU path); ``triton`` runs
    either form as fused Triton kernels (``lra.attention.kernels``: ``fused_direct_taylorshift`` with the
    normalisation, temperature and output scaling inside, ``fused_taylorshift`` for the efficient form);
    ``auto`` uses them for CUDA tensors when they import, else PyTorch.

    Dropout: applied to the normalised weights in the direct form only (the fused direct kernel draws
    its masks with Philox from torch's CUDA generator). The efficient form has no
    attention matrix, so there dropout does not apply (the authors' code drops entries of the
    ``(k (x) k)^T V`` summary instead, a different regulariser that this module does not copy).

    Padding: the authors' code has no mask, so in a padded batch it attends to the pad tokens and counts
    them in ``N``. Here padded keys are masked and ``N_real`` counts real keys only, so each example of a
    padded batch gets exactly what the authors' function gives on that example alone, unpadded
    (``tests/attention/test_taylorshift.py``); a model trained with the authors' code on padded batches
    computed something else. Run records say so (``protocol.attention_padding``).

    ``causal`` (not in the paper or the authors' code): the sums run over ``j <= i`` and ``N_real`` is the
    number of real keys ``j <= i``. The direct form masks the later keys; the efficient form is computed
    in blocks by ``lra.attention.causal.causal_sum`` (time O(N d^3 + N C d^2), memory O(N d^2 + (N/C) d^3)
    for blocks of C tokens). The fused Triton kernels have no causal mode: with ``causal`` both forms
    run in PyTorch (``impl=auto``), and ``impl=triton`` is refused. Recurrent form: the state is
    ``sum_j (k~_j (x) k~_j, k~_j, 1) [1 | v_j]^T``, (d^2 + d + 1, d + 1), and the count of tokens seen.
    """

    complexity = "O(N min(N, d^2) d)"
    gpu_paths = {"triton": {"mode": "efficient", "impl": "triton"},
                 "triton-direct": {"mode": "direct", "impl": "triton"}}
    bench_forms = {"triton": {"mode": "efficient", "impl": "triton"},
                   "triton-direct": {"mode": "direct", "impl": "triton"},
                   "efficient": {"mode": "efficient", "impl": "torch"}, "direct": {"mode": "direct"}}
    permutation_equivariant = True
    supports_causal = True
    supports_recurrent = True
    padding_protocol = (AttentionBackend.padding_protocol + "; the TaylorShift authors' code has no mask and "
                        "attends to pad tokens, so on padded batches it computes another function")

    @classmethod
    def complexity_of(cls, options: Mapping[str, object]) -> str:
        mode = options.get("mode", "auto")
        return {"direct": "O(N^2 d)", "efficient": "O(N d^3)"}.get(str(mode), cls.complexity)

    def __init__(
        self,
        *,
        mode: str = "auto",
        crossover: int | None = None,
        a: float = 0.5,
        b: float = 1.0,
        c: float = 1.0,
        output_normalized: bool = True,
        impl: str = "auto",
        temperature: float = 1.0,
        **common: Any,
    ):
        super().__init__(**common)
        if mode not in MODES:
            raise ValueError(f"taylorshift mode={mode!r}; valid: {', '.join(MODES)}")
        if impl not in IMPLS:
            raise ValueError(f"taylorshift impl={impl!r}; valid: {', '.join(IMPLS)}")
        if self.causal and impl == "triton":
            raise ValueError("taylorshift impl=triton has no causal mode (the fused kernel is non-causal); with "
                             "causal=True use impl=auto or impl=torch, which run the PyTorch causal form")
        if not (a > 0 and c >= b * b / (4 * a)):
            raise ValueError(
                f"taylorshift needs a*s^2 + b*s + c >= 0 for every s, i.e. a > 0 and c >= b^2/(4a); "
                f"got a={a}, b={b}, c={c}"
            )
        if crossover is not None and crossover < 0:
            raise ValueError(f"taylorshift crossover must be >= 0 or null (= d^2+d+1), got {crossover}")
        if self.dropout > 0 and mode != "direct":
            warnings.warn(
                f"taylorshift: attention dropout {self.dropout} applies only where the direct form runs; "
                "the efficient form has no attention matrix to drop from",
                stacklevel=2,
            )
        self.mode = mode
        self.crossover = crossover
        self.a, self.b, self.c = a, b, c
        self.output_normalized = output_normalized
        self.impl = impl
        if temperature <= 0:
            raise ValueError(f"taylorshift temperature (every head's initial tau) must be positive, got {temperature}")
        self.temperature = nn.Parameter(torch.full((1, self.num_heads, 1, 1), float(temperature)))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mode={self.mode}, crossover={self.crossover}, "
            f"a={self.a}, b={self.b}, c={self.c}, output_normalized={self.output_normalized}, "
            f"impl={self.impl}"
        )

    def form_for(self, length: int, fused: bool = False) -> str:
        """The form (``direct`` or ``efficient``) that runs for ``length`` tokens; ``fused``: whether the
        forms would run as the fused kernels."""
        if self.mode != "auto":
            return self.mode
        crossover = self.crossover
        if crossover is None:
            crossover = fused_crossover(self.head_dim) if fused else crossover_flops(self.head_dim)
        return "efficient" if length > crossover else "direct"

    def form_description(self, length: int, device: torch.device) -> str:
        fused = self._fused_on(device, self.temperature.dtype)
        form = self.form_for(length, fused)
        text = f"{'fused Triton' if fused else 'PyTorch'} {form} form at N={length}"
        if self.dropout > 0:
            text += (f"; attention dropout {self.dropout} on the weights" if form == "direct" else
                     "; no attention dropout (the efficient form has no attention matrix)")
        return text

    def forward(self, q, k, v, key_padding_mask=None):
        fused = self._use_kernel(q)
        form = self.form_for(q.shape[-2], fused)
        if fused and form == "direct":
            return _kernels().fused_direct_taylorshift(
                q, k, v, self.temperature, key_padding_mask, self.a, self.b, self.c,
                dropout=self.dropout if self.training else 0.0, output_normalized=self.output_normalized)
        # Under autocast the norm runs in float32 and promotes; back to the input dtype, or the (N, d^2)
        # features of the efficient form would double in size.
        q_hat = F.normalize(q, dim=-1).to(q.dtype) * self.temperature.to(q.dtype)
        k_hat = F.normalize(k, dim=-1).to(k.dtype)
        real_keys = self._real_key_count(k, key_padding_mask)
        if form == "direct":
            out = self._direct(q_hat, k_hat, v, key_padding_mask)
        elif fused:
            out = _kernels().fused_taylorshift(q_hat, k_hat, v, key_padding_mask, self.a, self.b, self.c)
        else:
            out = self._efficient(q_hat, k_hat, v, key_padding_mask, real_keys)
        if self.output_normalized:
            out = out * (real_keys / self.head_dim).sqrt().to(out.dtype)
        return out

    def _real_key_count(self, k: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Real keys per example as (B, 1, 1, 1), or with ``causal`` per query, those up to it: (B, 1, N, 1).

        In at least float32 (bf16 cannot count to 2000 exactly)."""
        dtype = torch.promote_types(k.dtype, torch.float32)
        batch, length = k.shape[0], k.shape[-2]
        real = torch.ones(batch, length, dtype=dtype, device=k.device)
        if key_padding_mask is not None:
            real = (~key_padding_mask).to(dtype)
        if self.causal:
            return real.cumsum(-1).view(batch, 1, length, 1)
        return real.sum(-1).view(batch, 1, 1, 1)

    def _use_kernel(self, q: torch.Tensor) -> bool:
        return self._fused_on(q.device, q.dtype, strict=True)

    def _fused_on(self, device: torch.device, dtype: torch.dtype, strict: bool = False) -> bool:
        """Whether the fused kernels run on tensors of ``dtype`` on ``device``; ``strict`` with ``impl=triton``:
        why they cannot, raised."""
        if self.impl == "torch" or self.causal:
            return False
        reason = _why_no_kernel(device, dtype)
        if strict and self.impl == "triton" and reason:
            raise RuntimeError(f"taylorshift impl=triton cannot run: {reason}; use impl=auto or impl=torch")
        return reason is None

    def _direct(self, q_hat, k_hat, v, key_padding_mask):
        s = q_hat @ k_hat.transpose(-1, -2)
        w = self.a * s * s + self.b * s + self.c
        if key_padding_mask is not None:
            w = w.masked_fill(key_padding_mask[:, None, None, :], 0.0)
        if self.causal:
            w = w.masked_fill(causal_mask(w.shape[-1], w.device), 0.0)
        # Dividing a row by its maximum cancels in the normalisation; it keeps fp16 row sums finite.
        tiny = torch.finfo(w.dtype).tiny
        w = w / w.detach().amax(-1, keepdim=True).clamp_min(tiny)
        w = w / w.sum(-1, keepdim=True).clamp_min(tiny)
        w = F.dropout(w, self.dropout, self.training)
        return w @ v

    def _efficient(self, q_hat, k_hat, v, key_padding_mask, real_keys):
        d = q_hat.shape[-1]
        alpha = d**0.25
        q_t, k_t = alpha * q_hat, alpha * k_hat
        # Dividing by the key count keeps the sums in range in low precision; it cancels in the ratio.
        values = torch.cat([torch.ones_like(v[..., :1]), v], dim=-1) / real_keys[..., -1:, :].clamp_min(1).to(v.dtype)
        if key_padding_mask is not None:
            values = values.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        if self.causal:
            y = causal_sum(self._query_features(q_t), self._key_features(k_t), values)
            return y[..., 1:] / y[..., :1].clamp_min(torch.finfo(y.dtype).tiny)
        quadratic = _tensor_square(q_t) @ (_tensor_square(k_t).transpose(-1, -2) @ values)
        linear = q_t @ (k_t.transpose(-1, -2) @ values)
        constant = values.sum(-2, keepdim=True)
        y = self.a * quadratic + (alpha**2 * self.b) * linear + (alpha**4 * self.c) * constant
        return y[..., 1:] / y[..., :1].clamp_min(torch.finfo(y.dtype).tiny)

    def _query_features(self, q_t: torch.Tensor) -> torch.Tensor:
        """``(a q~ (x) q~, alpha^2 b q~, alpha^4 c)``; with ``_key_features`` their dot product is ``alpha^4 w_ij``."""
        alpha = q_t.shape[-1] ** 0.25
        constant = torch.full_like(q_t[..., :1], alpha**4 * self.c)
        return torch.cat([self.a * _tensor_square(q_t), (alpha**2 * self.b) * q_t, constant], dim=-1)

    @staticmethod
    def _key_features(k_t: torch.Tensor) -> torch.Tensor:
        return torch.cat([_tensor_square(k_t), k_t, torch.ones_like(k_t[..., :1])], dim=-1)

    def _initial_state(self, batch, dtype, device) -> State:
        d = self.head_dim
        return {"kv": torch.zeros(batch, self.num_heads, d * d + d + 1, d + 1, dtype=dtype, device=device),
                "count": torch.zeros(batch, 1, 1, dtype=dtype, device=device)}

    def _step(self, state, q, k, v):
        alpha = self.head_dim**0.25
        q_t = alpha * F.normalize(q, dim=-1) * self.temperature.to(q.dtype).view(1, -1, 1)
        k_t = alpha * F.normalize(k, dim=-1)
        values = torch.cat([torch.ones_like(v[..., :1]), v], dim=-1)
        y, kv = causal_step(state["kv"], self._query_features(q_t), self._key_features(k_t), values)
        out = y[..., 1:] / y[..., :1].clamp_min(torch.finfo(y.dtype).tiny)
        count = state["count"] + 1
        if self.output_normalized:
            out = out * (count / self.head_dim).sqrt()
        return out, {"kv": kv, "count": count}


def crossover_flops(head_dim: int) -> int:
    """The paper's FLOP crossover N0 = d^2 + d + 1 (``theoretical_cutoff`` in TaylorShift's analysis code)."""
    return head_dim * head_dim + head_dim + 1
