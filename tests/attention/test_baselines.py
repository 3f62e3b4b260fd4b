"""softmax, linear, nystrom, linformer and local against dense reference computations of their definitions."""

from __future__ import annotations

import math

import pytest
import torch

import lra.attention
from tests.attention.cases import build, qkv, suffix_padding


def masked_softmax_attention(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    """Dense reference: softmax(q k^T / sqrt(d)) v over the ``allowed`` (.., N, N) pairs."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~allowed, -torch.inf), -1) @ v


def real_rows(out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return out[~mask[:, None, :, None].expand_as(out)]


def test_softmax_is_masked_softmax_attention():
    torch.manual_seed(20)
    q, k, v = qkv(2, 3, 19, 8, dtype=torch.float64)
    mask = suffix_padding([19, 7], 19)
    out = build("softmax", {}, dtype=torch.float64)(q, k, v, key_padding_mask=mask)
    expected = masked_softmax_attention(q, k, v, ~mask[:, None, None, :].expand(-1, -1, 19, -1))
    torch.testing.assert_close(real_rows(out, mask), real_rows(expected, mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["math", "flash"])
def test_softmax_held_to_one_sdpa_kernel_computes_the_same_function(kernel: str):
    torch.manual_seed(21)
    q, k, v = qkv(2, 3, 19, 8)
    mask = suffix_padding([19, 7], 19)
    held, auto = build("softmax", {"sdpa": kernel}), build("softmax", {})
    torch.testing.assert_close(held(q, k, v), auto(q, k, v), rtol=1e-5, atol=1e-5)
    if kernel == "math":  # the kernel every device has for a padding mask
        torch.testing.assert_close(real_rows(held(q, k, v, key_padding_mask=mask), mask),
                                   real_rows(auto(q, k, v, key_padding_mask=mask), mask), rtol=1e-5, atol=1e-5)


def test_softmax_held_to_a_kernel_that_cannot_run_says_so_in_one_line():
    q, k, v = qkv(1, 2, 8, 4)  # on the CPU, where cuDNN has no kernel
    with pytest.raises(RuntimeError, match=r"softmax sdpa=cudnn cannot take this call \(cpu, torch.float32, "
                                           r"head dim 4, no mask, dropout 0.0\); use attention.sdpa=auto"):
        build("softmax", {"sdpa": "cudnn"})(q, k, v)
    with pytest.raises(ValueError, match="softmax sdpa='fastest'; valid: auto, flash, cudnn, efficient, math"):
        build("softmax", {"sdpa": "fastest"})


def test_softmax_varlen_explains_why_it_cannot_run_here():
    backend = build("softmax", {"padding": "varlen"})
    q, k, v = qkv(2, 1, 8, 4)
    with pytest.raises(RuntimeError, match="padding=varlen needs"):
        backend(q, k, v, key_padding_mask=suffix_padding([8, 3], 8))
    assert backend(q, k, v).shape == q.shape  # without padding there is nothing to pack


def test_linear_attention_is_the_normalised_kernel_formula():
    torch.manual_seed(21)
    q, k, v = qkv(2, 2, 15, 6, dtype=torch.float64)
    mask = suffix_padding([15, 9], 15)
    out = build("linear", {}, dtype=torch.float64)(q, k, v, key_padding_mask=mask)
    weights = (torch.nn.functional.elu(q) + 1) @ (torch.nn.functional.elu(k) + 1).transpose(-1, -2)
    weights = weights.masked_fill(mask[:, None, None, :], 0.0)
    expected = weights @ v / (weights.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_linformer_is_softmax_over_projected_keys_and_values():
    torch.manual_seed(22)
    backend = build("linformer", {"proj_dim": 5}, max_length=20, dtype=torch.float64)
    q, k, v = qkv(2, 2, 17, 8, dtype=torch.float64)
    mask = suffix_padding([17, 11], 17)
    out = backend(q, k, v, key_padding_mask=mask)
    real = (~mask)[:, None, :, None].to(q.dtype)
    projected_k = backend.key_projection[..., :17] @ (k * real)
    projected_v = backend.value_projection[..., :17] @ (v * real)
    expected = torch.softmax(q @ projected_k.transpose(-1, -2) / math.sqrt(8), -1) @ projected_v
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_nystrom_is_exact_when_every_real_token_is_a_landmark():
    torch.manual_seed(23)
    backend = build("nystrom", {"num_landmarks": 16, "pinv_iterations": 30, "conv_kernel_size": None},
                    dtype=torch.float64)
    q, k, v = qkv(2, 2, 24, 8, dtype=torch.float64)
    mask = suffix_padding([16, 9], 24)  # 16 and 9 real tokens: each its own landmark
    out = backend(q, k, v, key_padding_mask=mask)
    expected = masked_softmax_attention(q, k, v, ~mask[:, None, None, :].expand(-1, -1, 24, -1))
    torch.testing.assert_close(real_rows(out, mask), real_rows(expected, mask), rtol=1e-8, atol=1e-8)


def test_nystrom_landmarks_average_contiguous_segments_of_real_tokens():
    backend = build("nystrom", {"num_landmarks": 3})
    segments = backend._segments(~suffix_padding([6, 4], 8))
    assert segments.argmax(-1)[0, :6].tolist() == [0, 0, 1, 1, 2, 2]
    assert segments.argmax(-1)[1, :4].tolist() == [0, 0, 1, 2]
    assert segments[:, 6:].sum() == 0 and segments[1, 4:].sum() == 0  # padded tokens join no segment


def test_nystrom_pinv_iteration_converges_to_the_pseudo_inverse():
    torch.manual_seed(24)
    backend = build("nystrom", {"num_landmarks": 8, "pinv_iterations": 30}, dtype=torch.float64)
    matrix = torch.softmax(torch.randn(3, 8, 8, dtype=torch.float64), -1)
    torch.testing.assert_close(backend._pinv(matrix), torch.linalg.pinv(matrix), rtol=1e-8, atol=1e-8)


def local_reference(q, k, v, mask, window: int, sliding: bool) -> torch.Tensor:
    positions = torch.arange(q.shape[-2])
    if sliding:
        near = (positions[:, None] - positions[None, :]).abs() <= window // 2
    else:
        near = (positions[:, None] // window) == (positions[None, :] // window)
    allowed = near[None, None] & ~mask[:, None, None, :]
    return masked_softmax_attention(q, k, v, allowed)


@pytest.mark.parametrize("sliding", [False, True], ids=["blocked", "sliding"])
@pytest.mark.parametrize(("length", "window"), [(23, 5), (64, 16), (37, 1), (30, 64)])
def test_local_is_windowed_softmax_attention(sliding, length, window):
    torch.manual_seed(length * window)
    backend = build("local", {"window": window, "sliding": sliding}, dtype=torch.float64)
    q, k, v = qkv(2, 2, length, 8, dtype=torch.float64)
    mask = suffix_padding([length, length // 2 + 1], length)
    out = backend(q, k, v, key_padding_mask=mask)
    expected = local_reference(q, k, v, mask, window, sliding)
    torch.testing.assert_close(real_rows(out, mask), real_rows(expected, mask), rtol=1e-12, atol=1e-12)
    unpadded = backend(q, k, v)
    expected = local_reference(q, k, v, torch.zeros_like(mask), window, sliding)
    torch.testing.assert_close(unpadded, expected, rtol=1e-12, atol=1e-12)


def test_local_flex_impl_is_for_sliding_windows_on_cuda():
    with pytest.raises(ValueError, match="sliding"):
        lra.attention.create("local", num_heads=1, head_dim=4, impl="flex")
    backend = build("local", {"window": 4, "sliding": True, "impl": "flex"})
    with pytest.raises(RuntimeError, match="needs CUDA"):
        backend(*qkv(1, 1, 8, 4))
