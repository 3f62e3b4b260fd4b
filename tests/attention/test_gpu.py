"""On a CUDA GPU: every backend (generated from the registry, GPU-only paths included) runs forward and backward
in bf16 at N = 4096 without NaN or Inf.

Run on the GPU machine: ``python -m pytest tests/attention/test_gpu.py -v -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

import lra.attention
from tests.attention.cases import form_id, gpu_forms, suffix_padding

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

LENGTH, BATCH, HEADS = 4096, 2, 4
# Every registered backend's defaults and GPU-only paths (its gpu_paths), and the forms of cases.GPU_EXTRAS.
GPU_CASES = gpu_forms()


def inputs(head_dim: int, dtype: torch.dtype, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    tensors = [torch.randn(BATCH, HEADS, LENGTH, head_dim, device="cuda", generator=generator).to(dtype)
               for _ in range(3)]
    return [t.requires_grad_() for t in tensors], suffix_padding([LENGTH, 3 * LENGTH // 4], LENGTH).cuda()


def forward_backward(backend, head_dim: int, dtype: torch.dtype, autocast: bool):
    (q, k, v), mask = inputs(head_dim, dtype)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = backend(q, k, v, key_padding_mask=mask)
    out.float().pow(2).mean().backward()
    return out, [q.grad, k.grad, v.grad, *(p.grad for p in backend.parameters())]


@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize("precision", ["bf16-weights", "bf16-autocast"])
@pytest.mark.parametrize("case", GPU_CASES, ids=form_id)
def test_bf16_forward_backward_at_4096_is_finite(case, precision, head_dim):
    name, options = case
    torch.manual_seed(0)
    backend = lra.attention.create(name, num_heads=HEADS, head_dim=head_dim, max_length=LENGTH, **options).cuda()
    backend.train()
    if precision == "bf16-weights":
        backend = backend.to(torch.bfloat16)
    out, grads = forward_backward(backend, head_dim, torch.bfloat16, autocast=precision == "bf16-autocast")
    assert out.dtype == torch.bfloat16 and out.shape == (BATCH, HEADS, LENGTH, head_dim)
    assert torch.isfinite(out).all(), "NaN/Inf in the output"
    for grad in grads:
        assert grad is not None and torch.isfinite(grad).all(), "NaN/Inf in a gradient"


@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize("case", GPU_CASES, ids=form_id)
def test_bf16_stays_close_to_float32(case, head_dim):
    """bf16 output of each backend against its own float32 output (same weights and features)."""
    name, options = case
    torch.manual_seed(0)
    backend = lra.attention.create(name, num_heads=HEADS, head_dim=head_dim, max_length=LENGTH, **options)
    backend = backend.cuda().eval()
    with torch.no_grad():
        (q, k, v), mask = inputs(head_dim, torch.float32)
        try:
            reference = backend(q, k, v, key_padding_mask=mask)
        except RuntimeError as error:  # a half-precision path (softmax padding=varlen): compared in its own test
            pytest.skip(f"no float32 form to compare with: {error}")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = backend(q.bfloat16(), k.bfloat16(), v.bfloat16(), key_padding_mask=mask).float()
    real = ~mask[:, None, :, None].expand_as(reference)
    error = ((low - reference)[real].norm() / reference[real].norm()).item()
    assert error < 0.05, f"relative error of bf16 vs float32: {error:.4f}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_softmax_varlen_equals_the_masked_path(dtype):
    varlen = lra.attention.create("softmax", num_heads=HEADS, head_dim=64, padding="varlen").cuda()
    masked = lra.attention.create("softmax", num_heads=HEADS, head_dim=64, padding="mask").cuda()
    results = []
    for backend in (varlen, masked):
        (q, k, v), mask = inputs(64, dtype, seed=1)
        out = backend(q, k, v, key_padding_mask=mask).masked_fill(mask[:, None, :, None], 0)
        out.float().pow(2).sum().backward()
        results.append([out, q.grad, k.grad, v.grad])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_local_flex_equals_the_chunked_path():
    """On real positions: outputs at padded queries are unspecified (the paths differ there), so the loss
    and the compared gradients leave them out."""
    outputs = []
    for impl in ("flex", "chunked"):
        backend = lra.attention.create("local", num_heads=HEADS, head_dim=64, window=256, sliding=True,
                                       impl=impl).cuda()
        (q, k, v), mask = inputs(64, torch.bfloat16, seed=2)
        out = backend(q, k, v, key_padding_mask=mask)
        real = ~mask[:, None, :, None].expand_as(out)
        out.float().masked_fill(~real, 0).pow(2).sum().backward()
        outputs.append([out[real], q.grad[real], k.grad[real], v.grad[real]])
    for a, b in zip(*outputs, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_taylorshift_efficient_on_gpu_matches_float64_direct():
    """The efficient form in bf16 at N = 4096, d = 64 (where N < N0, so auto would pick direct)."""
    (q, k, v), mask = inputs(64, torch.float64, seed=3)
    direct = lra.attention.create("taylorshift", num_heads=HEADS, head_dim=64, mode="direct").cuda().double()
    efficient = lra.attention.create("taylorshift", num_heads=HEADS, head_dim=64, mode="efficient").cuda()
    with torch.no_grad():
        reference = direct(q, k, v, key_padding_mask=mask)
        low = efficient.bfloat16()(q.bfloat16(), k.bfloat16(), v.bfloat16(), key_padding_mask=mask).double()
    real = ~mask[:, None, :, None].expand_as(reference)
    error = ((low - reference)[real].norm() / reference[real].norm()).item()
    assert error < 0.02, f"relative error {error:.4f}"


def has_causal_form(case: tuple[str, dict]) -> bool:
    """Whether the backend builds with causal=True and these options (GPU paths without a causal mode refuse)."""
    name, options = case
    try:
        lra.attention.create(name, num_heads=HEADS, head_dim=8, max_length=LENGTH, causal=True, **options)
    except ValueError:
        return False
    return True


CAUSAL_GPU_CASES = [case for case in GPU_CASES if has_causal_form(case)]


@pytest.mark.parametrize("case", CAUSAL_GPU_CASES, ids=form_id)
def test_causal_bf16_forward_backward_is_finite_and_close_to_float32(case):
    """Causal forms at N = 4096, d = 64, padded: finite in bf16 (with gradients) and near their float32 output."""
    name, options = case
    torch.manual_seed(0)
    backend = lra.attention.create(name, num_heads=HEADS, head_dim=64, max_length=LENGTH, causal=True, **options)
    backend = backend.cuda().eval()
    (q, k, v), mask = inputs(64, torch.float32, seed=4)
    with torch.no_grad():
        reference = backend(q, k, v, key_padding_mask=mask)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = backend(q, k, v, key_padding_mask=mask)
    real = ~mask[:, None, :, None].expand_as(reference)
    low.float().masked_fill(~real, 0).pow(2).mean().backward()
    assert torch.isfinite(low).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))
    error = ((low.float() - reference)[real].norm() / reference[real].norm()).item()
    assert error < 0.05, f"relative error of bf16 vs float32: {error:.4f}"


def test_causal_packed_flash_attention_gives_the_padded_causal_states():
    """model.unpad on CUDA: packed varlen FlashAttention with is_causal against the masked causal path."""
    from lra.data.base import TaskSpec
    from lra.model import LRAClassifier, ModelConfig

    torch.manual_seed(8)
    spec = TaskSpec(name="toy", num_classes=3, max_length=512, vocab_size=100)
    config = dict(d_model=64, num_layers=2, num_heads=2, mlp_dim=128, dropout=0.0, pooling="mean", causal=True)
    padded = LRAClassifier(spec, ModelConfig(**config, unpad=False), "softmax").cuda().eval()
    packed = LRAClassifier(spec, ModelConfig(**config, unpad=True), "softmax").cuda().eval()
    packed.load_state_dict(padded.state_dict())
    padding = (torch.arange(512) >= torch.tensor([[512], [300]])).cuda()
    tokens = torch.randint(1, 100, (2, 512), device="cuda").masked_fill(padding, 0)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        states, _ = padded.encoder(tokens, padding)
        packed_states, _ = packed.encoder(tokens, padding, packed.encoder.packing_for(padding))
    real = ~padding
    torch.testing.assert_close(packed_states[real].float(), states[real].float(), rtol=3e-2, atol=3e-2)
