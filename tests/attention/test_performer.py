"""Performer: FAVOR+ approximates softmax attention, better with more (and orthogonal) features; redraws."""

from __future__ import annotations

import math

import pytest
import torch

import lra.attention
from lra.attention.performer import ScaledExp, random_features
from tests.attention.cases import qkv, suffix_padding

SEEDS = range(8)


def performer(head_dim: int = 16, **options) -> lra.attention.AttentionBackend:
    return lra.attention.create("performer", num_heads=2, head_dim=head_dim, **options).double().eval()


def softmax_error(backend, seed: int) -> float:
    """Relative error against exact softmax attention on fresh inputs of typical scale."""
    generator = torch.Generator().manual_seed(1000 + seed)
    q, k, v = qkv(1, 2, 96, backend.head_dim, dtype=torch.float64, generator=generator)
    q, k = 0.5 * q, 0.5 * k
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return ((backend(q, k, v) - exact).norm() / exact.norm()).item()


def mean_error(features: int, orthogonal: bool, seeds: range = SEEDS) -> float:
    errors = []
    for seed in seeds:
        torch.manual_seed(seed)
        errors.append(softmax_error(performer(nb_features=features, orthogonal=orthogonal), seed))
    return sum(errors) / len(errors)


def test_error_falls_as_features_grow():
    errors = [mean_error(features, orthogonal=True) for features in (64, 256, 1024)]
    assert errors[2] < errors[1] < errors[0], errors


def test_orthogonal_features_beat_iid_on_average():
    """The gain is a few percent of the error, so it takes more seeds to see than the feature count."""
    for features in (16, 64):
        seeds = range(40)
        assert mean_error(features, True, seeds) < mean_error(features, False, seeds)


def test_orthogonal_directions_are_orthogonal_within_blocks_with_gaussian_norms():
    torch.manual_seed(11)
    w = random_features(40, 16, orthogonal=True)
    assert w.shape == (40, 16)
    for block in (w[:16], w[16:32], w[32:]):
        gram = block @ block.T
        torch.testing.assert_close(gram - torch.diag(gram.diag()), torch.zeros_like(gram), atol=1e-4, rtol=0)
    norms = random_features(4000, 16, orthogonal=True).norm(dim=1)
    assert abs(norms.pow(2).mean().item() - 16) < 0.5  # E|w|^2 = d, as for w ~ N(0, I_d)


def test_default_feature_count_is_d_log_d():
    for head_dim in (16, 32, 64):
        backend = lra.attention.create("performer", num_heads=1, head_dim=head_dim)
        assert backend.nb_features == round(head_dim * math.log(head_dim))
        assert backend.projection.shape == (backend.nb_features, head_dim)


def test_features_are_redrawn_only_at_the_interval():
    torch.manual_seed(12)
    backend = performer(nb_features=8, redraw_interval=3).train()
    inputs = qkv(1, 2, 5, 16, dtype=torch.float64)
    drawn = [backend.projection.clone()]
    for _ in range(7):
        backend(*inputs)
        drawn.append(backend.projection.clone())
    changed = [not torch.equal(before, after) for before, after in zip(drawn, drawn[1:], strict=False)]
    assert changed == [False, False, False, True, False, False, True]  # before the 4th and 7th training call
    backend.eval()
    for _ in range(5):
        backend(*inputs)
    assert torch.equal(backend.projection, drawn[-1])  # evaluation calls neither count nor redraw


def test_no_redraw_when_the_interval_is_null():
    backend = performer(nb_features=8, redraw_interval=None).train()
    before = backend.projection.clone()
    for _ in range(5):
        backend(*qkv(1, 2, 5, 16, dtype=torch.float64))
    assert torch.equal(backend.projection, before)


def test_redraw_schedule_survives_a_checkpoint():
    source = performer(nb_features=8, redraw_interval=4).train()
    for _ in range(3):
        source(*qkv(1, 2, 5, 16, dtype=torch.float64))
    restored = performer(nb_features=8, redraw_interval=4).train()
    restored.load_state_dict(source.state_dict())
    assert torch.equal(restored.projection, source.projection)
    restored(*qkv(1, 2, 5, 16, dtype=torch.float64))
    assert torch.equal(restored.projection, source.projection)  # 4th call: no redraw yet
    restored(*qkv(1, 2, 5, 16, dtype=torch.float64))
    assert not torch.equal(restored.projection, source.projection)  # 5th call redraws


@pytest.mark.parametrize("kernel", ["softmax", "relu"])
def test_chunked_computation_equals_the_unchunked_one(kernel):
    torch.manual_seed(13)
    whole = performer(nb_features=24, kernel=kernel)
    chunked = performer(nb_features=24, kernel=kernel, chunk_size=10)
    chunked.load_state_dict(whole.state_dict())
    mask = suffix_padding([47, 20], 47)
    results = []
    for backend in (whole, chunked):
        torch.manual_seed(0)
        q, k, v = qkv(2, 2, 47, 16, dtype=torch.float64, requires_grad=True)
        out = backend(q, k, v, key_padding_mask=mask).masked_fill(mask[:, None, :, None], 0.0)
        out.pow(2).sum().backward()
        results.append([out, q.grad, k.grad, v.grad])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_relu_kernel_is_the_generalized_attention_formula():
    torch.manual_seed(14)
    backend = performer(nb_features=12, kernel="relu")
    q, k, v = qkv(1, 2, 9, 16, dtype=torch.float64)
    w = backend.projection.double()
    phi_q = torch.relu(q * 16**-0.25 @ w.T) / math.sqrt(12) + 1e-3
    phi_k = torch.relu(k * 16**-0.25 @ w.T) / math.sqrt(12) + 1e-3
    weights = phi_q @ phi_k.transpose(-1, -2)
    expected = weights @ v / weights.sum(-1, keepdim=True)
    torch.testing.assert_close(backend(q, k, v), expected, rtol=1e-10, atol=1e-12)


def test_scaled_exp_gradient_matches_finite_differences():
    u = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: ScaledExp.apply(u, 0.3, 1e-6, torch.float64), (u,))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_gradients_equal_those_of_autograds_own_exp(monkeypatch, chunk_size):
    # Not finite differences: the detached stabiliser shifts move the small additive constant, so FAVOR+'s
    # gradient (here and in Google's code) is that of the features with the shifts held fixed.
    torch.manual_seed(15)
    backend = performer(head_dim=8, nb_features=12, chunk_size=chunk_size)
    mask = suffix_padding([9, 5], 9)
    q, k, v = qkv(2, 2, 9, 8, dtype=torch.float64)

    def gradients():
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        backend(*inputs, key_padding_mask=mask).pow(2).sum().backward()
        return [t.grad for t in inputs]

    ours = gradients()
    plain = staticmethod(lambda u, scale, eps, dtype: (scale * (torch.exp(u) + eps)).to(dtype))
    monkeypatch.setattr(ScaledExp, "apply", plain)
    for a, b in zip(ours, gradients(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_bf16_features_keep_no_float32_copy_for_the_backward():
    """The features are computed in float32 but only their bf16 cast is kept for the backward."""
    length, features = 64, 24
    backend = lra.attention.create("performer", num_heads=2, head_dim=16, nb_features=features).train()
    q, k, v = (t.bfloat16().requires_grad_() for t in qkv(2, 2, length, 16))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        backend(q, k, v)
    feature_maps = [t for t in saved if t.shape[-2:] == (length, features)]
    assert feature_maps and all(t.dtype == torch.bfloat16 for t in feature_maps)
