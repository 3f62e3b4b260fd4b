"""TaylorShift: the efficient form is the direct form; auto switches at N0; the definition holds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lra.attention
import lra.attention.taylorshift as taylorshift_module
from lra.attention.taylorshift import FUSED_CROSSOVER, crossover_flops, fused_crossover
from tests.attention.cases import qkv, suffix_padding


def taylorshift(mode: str, heads: int, head_dim: int, **options) -> lra.attention.AttentionBackend:
    backend = lra.attention.create("taylorshift", num_heads=heads, head_dim=head_dim, mode=mode, **options)
    with torch.no_grad():  # a non-trivial temperature per head, so that it is tested too
        backend.temperature.copy_(torch.linspace(0.5, 3.0, heads).view(1, heads, 1, 1))
    return backend.double()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(("length", "head_dim", "heads"), [(7, 4, 1), (50, 8, 3), (130, 16, 2), (33, 5, 4)])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_efficient_equals_direct_with_gradients(length, head_dim, heads, padded):
    torch.manual_seed(length + head_dim)
    direct = taylorshift("direct", heads, head_dim)
    efficient = taylorshift("efficient", heads, head_dim)
    mask = suffix_padding([length, max(1, length // 3)], length) if padded else None
    outputs, grads = [], []
    for backend in (direct, efficient):
        torch.manual_seed(0)
        q, k, v = qkv(2, heads, length, head_dim, dtype=torch.float64, requires_grad=True)
        out = backend(q, k, v, key_padding_mask=mask)
        if mask is not None:
            out = out.masked_fill(mask[:, None, :, None], 0.0)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outputs.append(out)
        grads.append([q.grad, k.grad, v.grad, backend.temperature.grad])
    assert relative_error(outputs[1], outputs[0]) < 1e-10
    for grad_efficient, grad_direct in zip(grads[1], grads[0], strict=True):
        assert relative_error(grad_efficient, grad_direct) < 1e-10


def test_direct_form_is_the_definition():
    """out_i = sqrt(N_real/d) sum_j w_ij v_j / sum_j w_ij, w = a s^2 + b s + c, s = tau cos(q_i, k_j)."""
    torch.manual_seed(4)
    a, b, c, heads, head_dim, length = 0.7, -0.4, 0.9, 2, 6, 11
    backend = taylorshift("direct", heads, head_dim, a=a, b=b, c=c)
    q, k, v = qkv(1, heads, length, head_dim, dtype=torch.float64)
    mask = suffix_padding([8], length)
    out = backend(q, k, v, key_padding_mask=mask)
    for h in range(heads):
        tau = backend.temperature[0, h, 0, 0].item()
        for i in range(8):
            weights = []
            for j in range(8):
                s = tau * torch.dot(q[0, h, i], k[0, h, j]) / (q[0, h, i].norm() * k[0, h, j].norm())
                weights.append(a * s * s + b * s + c)
            weights = torch.stack(weights)
            expected = math.sqrt(8 / head_dim) * (weights[:, None] * v[0, h, :8]).sum(0) / weights.sum()
            torch.testing.assert_close(out[0, h, i], expected, rtol=1e-12, atol=1e-12)


def test_default_coefficients_match_softmax_for_small_scores():
    """With a, b, c = 1/2, 1, 1 and a small temperature, the weights approach exp(s) (2nd-order Taylor)."""
    torch.manual_seed(5)
    backend = taylorshift("direct", 1, 8, output_normalized=False)
    with torch.no_grad():
        backend.temperature.fill_(0.05)
    q, k, v = qkv(1, 1, 20, 8, dtype=torch.float64)
    scores = backend.temperature * torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(
        k, dim=-1).transpose(-1, -2)
    softmax = torch.softmax(scores, -1) @ v
    assert relative_error(backend(q, k, v), softmax) < 1e-4


@pytest.mark.parametrize("head_dim", [4, 8, 32, 64])
def test_auto_switches_at_the_papers_crossover(head_dim):
    backend = lra.attention.create("taylorshift", num_heads=1, head_dim=head_dim)
    n0 = head_dim**2 + head_dim + 1
    assert crossover_flops(head_dim) == n0 and backend.crossover is None
    assert backend.form_for(n0) == "direct"
    assert backend.form_for(n0 + 1) == "efficient"


@pytest.mark.parametrize(("head_dim", "measured_at"), [(16, 32), (32, 32), (48, 64), (64, 64), (128, 64)])
def test_auto_with_the_fused_kernels_switches_at_the_crossover_measured_nearest_above(head_dim, measured_at):
    crossover = FUSED_CROSSOVER[measured_at]
    assert fused_crossover(head_dim) == crossover
    backend = lra.attention.create("taylorshift", num_heads=1, head_dim=head_dim)
    assert backend.form_for(crossover, fused=True) == "direct"
    assert backend.form_for(crossover + 1, fused=True) == "efficient"
    explicit = lra.attention.create("taylorshift", num_heads=1, head_dim=head_dim, crossover=100)
    assert explicit.form_for(101, fused=True) == explicit.form_for(101, fused=False) == "efficient"


def test_auto_runs_the_form_it_announces(monkeypatch):
    """Around a measured crossover, auto's output is computed by the form on that side (the other is not run)."""
    backend = taylorshift("auto", 1, 4, crossover=20)
    calls = []
    for form in ("_direct", "_efficient"):
        original = getattr(backend, form)
        monkeypatch.setattr(backend, form, lambda *args, _f=original, _n=form: calls.append(_n) or _f(*args))
    for length, expected in ((20, "_direct"), (21, "_efficient")):
        calls.clear()
        backend(*qkv(1, 1, length, 4, dtype=torch.float64))
        assert calls == [expected]


def test_the_form_description_names_the_form_its_kernel_and_where_dropout_applies():
    backend = lra.attention.create("taylorshift", num_heads=1, head_dim=8, crossover=100, dropout=0.1)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert backend.form_description(100, cpu) == "PyTorch direct form at N=100; attention dropout 0.1 on the weights"
    assert backend.form_description(101, cpu) == ("PyTorch efficient form at N=101; no attention dropout (the "
                                                  "efficient form has no attention matrix)")
    if not isinstance(taylorshift_module._kernels(), ImportError):  # CUDA names the fused kernels (nothing runs)
        assert backend.form_description(100, cuda).startswith("fused Triton direct form at N=100")
    assert lra.attention.create("softmax", num_heads=1, head_dim=8).form_description(100, cpu) is None


def test_direct_and_efficient_modes_ignore_the_crossover():
    for mode in ("direct", "efficient"):
        backend = lra.attention.create("taylorshift", num_heads=1, head_dim=4, mode=mode, crossover=10)
        assert backend.form_for(5) == backend.form_for(500) == mode


def test_output_normalisation_counts_real_keys_only():
    torch.manual_seed(6)
    plain = taylorshift("efficient", 1, 4, output_normalized=False)
    scaled = taylorshift("efficient", 1, 4)
    q, k, v = qkv(2, 1, 12, 4, dtype=torch.float64)
    mask = suffix_padding([12, 3], 12)
    ratio = scaled(q, k, v, key_padding_mask=mask) / plain(q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(ratio[0], torch.full_like(ratio[0], math.sqrt(12 / 4)))
    torch.testing.assert_close(ratio[1, :, :3], torch.full_like(ratio[1, :, :3], math.sqrt(3 / 4)))


def test_temperature_is_a_learnable_per_head_parameter():
    backend = lra.attention.create("taylorshift", num_heads=3, head_dim=4)
    assert backend.temperature.requires_grad
    assert backend.temperature.shape == (1, 3, 1, 1)
    assert torch.equal(backend.temperature.detach(), torch.ones(1, 3, 1, 1))


def test_triton_impl_explains_why_it_cannot_run_here():
    backend = lra.attention.create("taylorshift", num_heads=1, head_dim=4, mode="efficient", impl="triton")
    with pytest.raises(RuntimeError, match="impl=triton cannot run"):
        backend(*qkv(1, 1, 8, 4))


def test_auto_impl_uses_pytorch_on_cpu():
    torch.manual_seed(7)
    auto = taylorshift("efficient", 2, 4, impl="auto")
    reference = taylorshift("efficient", 2, 4, impl="torch")
    q, k, v = qkv(1, 2, 9, 4, dtype=torch.float64)
    assert torch.equal(auto(q, k, v), reference(q, k, v))


def test_efficient_form_keeps_low_precision_in_range():
    """bf16 at N = 4096 (where the unscaled sums would reach N * alpha^4 * (a+b+c)): finite, close to float64."""
    torch.manual_seed(8)
    backend = taylorshift("efficient", 2, 16)
    q, k, v = qkv(1, 2, 4096, 16, dtype=torch.float64)
    reference = backend(q, k, v)
    low = backend.to(torch.bfloat16)(q.bfloat16(), k.bfloat16(), v.bfloat16()).double()
    assert torch.isfinite(low).all()
    assert relative_error(low, reference) < 0.05


def authors_taylorshift(q, k, v, temperature, a, b, c, efficient: bool) -> torch.Tensor:
    """The authors' attention core, rewritten from ``TaylorSoftmaxAttention`` (github.com/tobna/TaylorShift,
    ``training/architectures/taylor_shift_vit.py``, ``_linear_attention`` / ``_squared_attention`` with
    ``xcit_version`` and ``output_normalized``, as in their LRA models). It has no mask: N counts every token."""
    batch, heads, length, d = q.shape
    if not efficient:
        scores = (F.normalize(q, dim=-1) * temperature) @ F.normalize(k, dim=-1).transpose(-2, -1)
        largest = scores.abs().amax(-1, keepdim=True)
        top = a * largest**2 + b * largest + c
        weights = a * (scores / top.sqrt()) ** 2 + b * (scores / top) + c / top
        return weights / weights.sum(-1, keepdim=True) @ (math.sqrt(length / d) * v)
    scale = d**0.25
    values = torch.cat([math.sqrt(d / length) * torch.ones_like(v[..., :1]), v], dim=-1) / length
    q_n, k_n = F.normalize(q, dim=-1) * (scale * temperature), F.normalize(k, dim=-1) * scale
    square = lambda x: (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)  # noqa: E731
    y = (a * square(q_n) @ (square(k_n).transpose(-1, -2) @ values)
         + scale**2 * b * q_n @ (k_n.transpose(-1, -2) @ values)
         + scale**4 * c * values.sum(-2, keepdim=True))
    return y[..., 1:] / y[..., :1]


@pytest.mark.parametrize("mode", ["direct", "efficient"])
def test_padded_batch_equals_the_authors_function_on_each_unpadded_sequence(mode):
    """To 1e-15 in float64. The authors' code, given the padded batch, attends to the pad tokens: it differs."""
    torch.manual_seed(12)
    a, b, c, lengths, total = 0.5, 1.0, 1.0, [29, 11], 29
    backend = taylorshift(mode, 3, 8, a=a, b=b, c=c)
    q, k, v = qkv(2, 3, total, 8, dtype=torch.float64)
    with torch.no_grad():
        ours = backend(q, k, v, key_padding_mask=suffix_padding(lengths, total))
        theirs_padded = authors_taylorshift(q, k, v, backend.temperature, a, b, c, mode == "efficient")
        for example, length in enumerate(lengths):
            real = slice(example, example + 1), slice(None), slice(0, length)
            theirs = authors_taylorshift(q[real], k[real], v[real], backend.temperature, a, b, c, mode == "efficient")
            torch.testing.assert_close(ours[real], theirs, rtol=1e-15, atol=1e-15)
    assert torch.allclose(ours[0], theirs_padded[0], rtol=1e-13, atol=1e-13)  # the unpadded example
    assert not torch.allclose(ours[1, :, :11], theirs_padded[1, :, :11], rtol=1e-2, atol=1e-2)


def test_records_state_how_taylorshift_treats_padding():
    protocol = lra.attention.backend_class("taylorshift").padding_protocol
    assert "padded keys masked" in protocol and "authors' code has no mask" in protocol
