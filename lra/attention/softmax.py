"""Softmax attention through PyTorch's fused kernels: SDPA, or variable-length FlashAttention for padding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lra.attention.base import AttentionBackend, causal_mask
from lra.attention.packing import PackedSequences
from lra.attention.registry import register

PADDING_PATHS = ("auto", "mask", "varlen")
# SDPA's kernels a backend can be held to (``sdpa``); auto leaves the choice to SDPA (flash first, cuDNN last).
# ``python -m lra.bench bench.level=sdpa_kernels`` times each at every preset's attention shape.
SDPA_KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
FLASH_DTYPES = (torch.float16, torch.bfloat16)
# From this length auto packs padded batches for FlashAttention varlen: on an H100 (bf16, fwd+bwd, B=32,
# H=4, real lengths spread over N/4..N) varlen beat the masked SDPA kernel at 4K and 8K (d = 32 and 64)
# and lost below, by up to 2.3x at 1K (results/bench/nvidia-h100-80gb-hbm3/softmax_padding/).
VARLEN_FROM_LENGTH = 4096
# FlashAttention and the memory-efficient kernel take half-precision head dims in multiples of 8 only; a
# smaller one (LRA's Pathfinder-32 model: 16 wide over 4 heads, d = 4) drops SDPA to its math path, which
# writes the N x N weights. Zeros appended to q, k and v change no score and no output, so such heads are
# padded to the next multiple (with the softmax scale of the real d) and the output cut back.
HEAD_DIM_MULTIPLE = 8

try:  # torch >= 2.10 on CUDA; absent before
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None


@register("softmax")
class SoftmaxAttention(AttentionBackend):
    """Standard attention (Vaswani et al. 2017, "Attention Is All You Need").

    ``out = softmax(q k^T / sqrt(d) + M) v`` with ``M = -inf`` on padded keys.

    Time O(N^2 d); memory O(N) with the flash / memory-efficient kernels (PyTorch has a flash kernel for
    CPU too), O(N^2) with the math fallback. Without a padding mask SDPA takes FlashAttention. A boolean mask rules
    FlashAttention out, so with padding SDPA falls back to the memory-efficient kernel, which reads the
    mask for every score. ``padding`` chooses the path for a batch with padding:

    * ``mask``: SDPA with the boolean mask (any device, any dtype, dropout supported).
    * ``varlen``: pack the real tokens of every example into one (tokens, heads, d) tensor and run
      variable-length FlashAttention (``torch.nn.attention.varlen.varlen_attn``) on it, so padded
      positions cost nothing; outputs at padded queries are 0. Needs CUDA, fp16/bf16, and no attention
      dropout in training (the varlen kernel has none); costs one device-to-host sync (the longest
      length) per call.
    * ``auto``: ``varlen`` where it can run and the sequence has at least ``VARLEN_FROM_LENGTH``
      positions (where it was measured faster), else ``mask``.

    Packed sequences (``forward_packed``, ``packs_sequences``): the encoder can hand over the real tokens of
    a padded batch packed end to end (``lra.attention.packing``); on CUDA in fp16/bf16 they go through
    variable-length FlashAttention with attention dropout (``aten._flash_attention_forward``, whose backward
    replays the dropout mask from its saved random state), elsewhere through SDPA sequence by sequence.

    ``causal``: ``M = -inf`` also for keys after the query. Without padding SDPA runs with ``is_causal``
    (FlashAttention's causal kernel), and so do packed sequences; a padded batch that is not packed takes
    one (B, N, N) boolean mask of the allowed pairs, so ``auto`` keeps the ``mask`` path and
    ``padding=varlen`` is refused.

    ``sdpa``: ``auto`` lets SDPA pick its kernel; ``flash``, ``cudnn``, ``efficient`` or ``math`` holds every
    SDPA call to that one (an error names a shape it cannot take). Packed sequences always run FlashAttention's
    varlen kernel. The kernels compute the same function; dropout draws its mask differently in each.
    """

    complexity = "O(N^2 d)"
    gpu_paths = {"varlen": {"padding": "varlen"}}
    permutation_equivariant = True
    packs_sequences = True
    supports_causal = True

    def __init__(
        self,
        *,
        padding: str = "auto",
        sdpa: str = "auto",
        **common: Any,
    ):
        super().__init__(**common)
        if padding not in PADDING_PATHS:
            raise ValueError(f"softmax padding={padding!r}; valid: {', '.join(PADDING_PATHS)}")
        if sdpa != "auto" and sdpa not in SDPA_KERNELS:
            raise ValueError(f"softmax sdpa={sdpa!r}; valid: auto, {', '.join(SDPA_KERNELS)}")
        if self.causal and padding == "varlen":
            raise ValueError("softmax padding=varlen has no causal path; with causal=True use padding=auto or "
                             "padding=mask")
        self.padding = padding
        self.sdpa = sdpa

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, padding={self.padding}, sdpa={self.sdpa}"

    def form_description(self, length: int, device: torch.device) -> str | None:
        if self.sdpa == "auto":
            return None
        return f"SDPA held to its {self.sdpa} kernel (packed batches: FlashAttention varlen)"

    def forward(self, q, k, v, key_padding_mask=None):
        if self.sdpa == "auto":
            return self._forward(q, k, v, key_padding_mask)
        try:
            with sdpa_kernel(SDPA_KERNELS[self.sdpa]):
                return self._forward(q, k, v, key_padding_mask)
        except RuntimeError as error:
            if "No available kernel" not in str(error) and "No viable backend" not in str(error):
                raise
            raise RuntimeError(
                f"softmax sdpa={self.sdpa} cannot take this call ({q.device}, {q.dtype}, head dim "
                f"{q.shape[-1]}, {'a padding mask' if key_padding_mask is not None else 'no mask'}, dropout "
                f"{self.dropout if self.training else 0.0}); use attention.sdpa=auto") from None

    def _forward(self, q, k, v, key_padding_mask):
        dropout = self.dropout if self.training else 0.0
        if key_padding_mask is None:
            return _sdpa(q, k, v, dropout_p=dropout, is_causal=self.causal)
        if not self.causal and self._use_varlen(q, dropout):
            return _varlen(q, k, v, key_padding_mask)
        mask = ~key_padding_mask[:, None, None, :]  # True = may attend
        if self.causal:
            mask = mask & ~causal_mask(q.shape[-2], q.device)
            mask = mask | ~mask.any(-1, keepdim=True)  # a query with nothing to see (padding) would get NaN
        return _sdpa(q, k, v, attn_mask=mask, dropout_p=dropout)

    def forward_packed(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       packing: PackedSequences) -> torch.Tensor:
        """``q``, ``k``, ``v`` ``(tokens, heads, d)`` of packed sequences -> the output, same shape."""
        dropout = self.dropout if self.training else 0.0
        if q.is_cuda and q.dtype in FLASH_DTYPES:
            return _flash_packed(q, k, v, packing, dropout, self.causal).to(v.dtype)
        outputs = [_sdpa(*(t.transpose(0, 1)[None] for t in parts), dropout_p=dropout,
                         is_causal=self.causal)[0].transpose(0, 1)
                   for parts in zip(*(packing.sequences(t) for t in (q, k, v)), strict=True)]
        return torch.cat(outputs).to(v.dtype)

    def _use_varlen(self, q: torch.Tensor, dropout: float) -> bool:
        usable = varlen_attn is not None and q.is_cuda and q.dtype in FLASH_DTYPES and dropout == 0
        if self.padding == "varlen" and not usable:
            raise RuntimeError(
                "softmax padding=varlen needs torch.nn.attention.varlen (torch >= 2.10), CUDA tensors in "
                f"fp16/bf16 and no attention dropout in training; got torch {torch.__version__}, "
                f"{q.device}, {q.dtype}, dropout {dropout}. Use padding=auto or padding=mask"
            )
        if self.padding == "auto":
            return usable and q.shape[-2] >= VARLEN_FROM_LENGTH
        return self.padding == "varlen"


def _pad_head_dim(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, -x.shape[-1] % HEAD_DIM_MULTIPLE))


def _needs_head_padding(q: torch.Tensor) -> bool:
    return q.is_cuda and q.dtype in FLASH_DTYPES and q.shape[-1] % HEAD_DIM_MULTIPLE != 0


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
    """SDPA, with half-precision head dims padded to a multiple of 8 so that its fused kernels take them."""
    if not _needs_head_padding(q):
        return F.scaled_dot_product_attention(q, k, v, **options)
    head_dim = q.shape[-1]
    out = F.scaled_dot_product_attention(_pad_head_dim(q), _pad_head_dim(k), _pad_head_dim(v),
                                         scale=head_dim**-0.5, **options)
    return out[..., :head_dim]


def _flash_packed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: PackedSequences,
                  dropout: float, causal: bool = False) -> torch.Tensor:
    head_dim = q.shape[-1]
    if _needs_head_padding(q):
        q, k, v = (_pad_head_dim(t) for t in (q, k, v))
    out = torch.ops.aten._flash_attention_forward(
        q.contiguous(), k.contiguous(), v.contiguous(), packing.cu_seqlens, packing.cu_seqlens,
        packing.longest, packing.longest, dropout, causal, False, scale=head_dim**-0.5,
    )[0]
    return out[..., :head_dim]


def _varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Attention over each example's real tokens, packed end to end (padded outputs are 0)."""
    batch, heads, length, head_dim = q.shape
    real = ~padding
    lengths = real.sum(-1, dtype=torch.int32)
    starts = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    longest = int(lengths.max())
    rows = real.flatten().nonzero().squeeze(-1)

    def pack(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, d) -> (real tokens, H, d)
        return x.transpose(1, 2).reshape(batch * length, heads, head_dim).index_select(0, rows)

    packed = varlen_attn(pack(q), pack(k), pack(v), starts, starts, longest, longest)
    out = packed.new_zeros(batch * length, heads, head_dim).index_copy(0, rows, packed)
    return out.view(batch, length, heads, head_dim).transpose(1, 2)
