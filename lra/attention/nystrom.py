"""Nyströmformer: softmax attention through a Nyström approximation with segment-mean landmarks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lra.attention.base import AttentionBackend
from lra.attention.registry import register

LOW_PRECISION = (torch.float16, torch.bfloat16)


@register("nystrom")
class NystromAttention(AttentionBackend):
    """Nyströmformer (Xiong et al., AAAI 2021; code: github.com/mlpen/Nystromformer).

    With ``q, k`` scaled by ``d^(-1/4)`` each and ``m`` landmarks ``q~, k~`` (means of m contiguous
    segments of the real tokens),

        out = softmax(q k~^T) pinv(softmax(q~ k~^T)) softmax(q~ k^T) v  [+ conv(v)]

    where ``pinv`` is the iterative Moore-Penrose approximation of the paper (``pinv_iterations``
    Newton-Schulz steps from ``Z0 = A^T / (max col sum * max row sum)``) and ``conv`` is the optional
    depthwise convolution of the values along the sequence (kernel ``conv_kernel_size``, per head).

    Differences from the reference code, each so that padding has no influence on real outputs: the
    landmarks are the means of m segments of each example's *real* tokens (the reference averages fixed
    segments of the padded sequence); when an example has fewer real tokens than landmarks, each token
    is its own landmark and the unused landmarks drop out (then the result is exact softmax attention up
    to the pinv iteration); the pinv scaling uses per-(example, head) maxima (the reference takes them
    over the whole batch, which couples examples).

    No causal form: every landmark averages a segment of the whole sequence, so every query sees later
    tokens through the landmarks.

    Time O(N m d + m^3), memory O(N m). Not permutation-equivariant (segments follow positions).
    Dropout does not apply: the three factors are not attention weights.
    """

    complexity = "O(N m d + m^3)"
    forms_attention_matrix = False
    permutation_equivariant = False

    def __init__(
        self,
        *,
        num_landmarks: int = 64,
        pinv_iterations: int = 6,
        conv_kernel_size: int | None = 35,
        **common: Any,
    ):
        super().__init__(**common)
        if num_landmarks < 1 or pinv_iterations < 1:
            raise ValueError(f"nystrom needs num_landmarks >= 1 and pinv_iterations >= 1, "
                             f"got {num_landmarks} and {pinv_iterations}")
        if conv_kernel_size is not None and (conv_kernel_size < 1 or conv_kernel_size % 2 == 0):
            raise ValueError(f"nystrom conv_kernel_size must be odd (same-length output) or null, "
                             f"got {conv_kernel_size}")
        self.num_landmarks = num_landmarks
        self.pinv_iterations = pinv_iterations
        self.conv = None
        if conv_kernel_size is not None:
            self.conv = nn.Conv2d(self.num_heads, self.num_heads, (conv_kernel_size, 1),
                                  padding=(conv_kernel_size // 2, 0), groups=self.num_heads, bias=False)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, "
                f"pinv_iterations={self.pinv_iterations}")

    def forward(self, q, k, v, key_padding_mask=None):
        batch, _, length, head_dim = q.shape
        real = q.new_ones(batch, length, dtype=torch.bool) if key_padding_mask is None else ~key_padding_mask
        q, k = q * head_dim**-0.25, k * head_dim**-0.25
        segments = self._segments(real).to(q.dtype)  # (B, N, m)
        counts = segments.sum(1)[:, None, :, None]  # (B, 1, m, 1)
        used = counts > 0
        q_landmarks = segments.transpose(1, 2).unsqueeze(1) @ q / counts.clamp_min(1)
        k_landmarks = segments.transpose(1, 2).unsqueeze(1) @ k / counts.clamp_min(1)
        unused_column = ~used.transpose(-1, -2)  # (B, 1, 1, m)

        kernel_1 = _masked_softmax(q @ k_landmarks.transpose(-1, -2), unused_column)
        kernel_2 = _masked_softmax(q_landmarks @ k_landmarks.transpose(-1, -2), unused_column)
        # Unused landmarks become an identity block: pinv stays block-diagonal and their columns of
        # kernel_1 are zero, so they contribute nothing.
        identity = torch.eye(self.num_landmarks, dtype=q.dtype, device=q.device)
        kernel_2 = torch.where(used, kernel_2, identity)
        kernel_3 = _masked_softmax(q_landmarks @ k.transpose(-1, -2), ~real[:, None, None, :])

        out = (kernel_1 @ self._pinv(kernel_2).to(kernel_1.dtype)) @ (kernel_3 @ v)
        if self.conv is not None:
            out = out + self.conv(v.masked_fill(~real[:, None, :, None], 0.0))
        return out

    def _segments(self, real: torch.Tensor) -> torch.Tensor:
        """One-hot (B, N, m): real token -> the landmark segment of its rank among the real tokens."""
        lengths = real.sum(-1, keepdim=True).clamp_min(1)
        rank = real.cumsum(-1) - 1
        segment = torch.where(real, rank * self.num_landmarks // lengths, self.num_landmarks)
        return F.one_hot(segment, self.num_landmarks + 1)[..., : self.num_landmarks]

    def _pinv(self, matrix: torch.Tensor) -> torch.Tensor:
        """Newton-Schulz pseudo-inverse, in at least float32: the m x m iteration is cheap, and diverges in bf16."""
        with torch.autocast(matrix.device.type, enabled=False):
            return self._newton_schulz(matrix.float() if matrix.dtype in LOW_PRECISION else matrix)

    def _newton_schulz(self, matrix: torch.Tensor) -> torch.Tensor:
        identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        column_max = matrix.abs().sum(-2).amax(-1, keepdim=True).unsqueeze(-1)
        row_max = matrix.abs().sum(-1).amax(-1, keepdim=True).unsqueeze(-1)
        z = matrix.transpose(-1, -2) / (column_max * row_max)
        for _ in range(self.pinv_iterations):
            kz = matrix @ z
            z = 0.25 * z @ (13 * identity - kz @ (15 * identity - kz @ (7 * identity - kz)))
        return z


def _masked_softmax(scores: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis without the ``masked`` entries; all-masked rows give zeros, not NaN."""
    return torch.softmax(scores.masked_fill(masked, -torch.inf), -1).nan_to_num(0.0)
