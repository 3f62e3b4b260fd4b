"""The contract every backend keeps: shapes, finite gradients, padding invariance, equivariance, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import lra.attention
from tests.attention.cases import CASE_IDS, CASES, PERMUTATION_EQUIVARIANT, build, qkv, suffix_padding

CONF = Path(__file__).resolve().parents[2] / "conf" / "attention"


@pytest.mark.parametrize(("case", "name", "options"), CASES, ids=CASE_IDS)
def test_shape_and_finite_gradients(case, name, options):
    torch.manual_seed(0)
    backend = build(name, options, heads=3, head_dim=8, max_length=40).train()
    q, k, v = qkv(2, 3, 37, 8, requires_grad=True)
    mask = suffix_padding([37, 30], 37)
    out = backend(q, k, v, key_padding_mask=mask)
    assert out.shape == q.shape
    assert torch.isfinite(out).all()
    (out[~mask[:, None, :, None].expand_as(out)] ** 2).sum().backward()
    for tensor in (q, k, v, *backend.parameters()):
        assert torch.isfinite(tensor.grad).all()
    assert all(t.grad.abs().sum() > 0 for t in (q, k, v))


@pytest.mark.parametrize(("case", "name", "options"), CASES, ids=CASE_IDS)
def test_padding_has_no_influence_on_real_outputs(case, name, options):
    """Each example of a padded batch gives what it gives alone, unpadded (float32, 1e-6)."""
    torch.manual_seed(1)
    lengths, total = [29, 18], 40
    backend = build(name, options, heads=2, head_dim=8, max_length=total)
    q, k, v = qkv(2, 2, total, 8)
    with torch.no_grad():  # padded positions get values a leak would show: large and varied
        for t in (q, k, v):
            t.masked_fill_(suffix_padding(lengths, total)[:, None, :, None], 0.0)
            t.add_(1e3 * torch.randn_like(t) * suffix_padding(lengths, total)[:, None, :, None])
        padded = backend(q, k, v, key_padding_mask=suffix_padding(lengths, total))
        for b, length in enumerate(lengths):
            alone = backend(q[b:b + 1, :, :length], k[b:b + 1, :, :length], v[b:b + 1, :, :length])
            torch.testing.assert_close(padded[b:b + 1, :, :length], alone, rtol=1e-6, atol=1e-6)
        assert torch.isfinite(padded).all()  # padded query positions: unspecified, but finite


@pytest.mark.parametrize(("case", "name", "options"), CASES, ids=CASE_IDS)
def test_permutation_equivariance_where_it_holds(case, name, options):
    torch.manual_seed(2)
    backend = build(name, options, dtype=torch.float64, max_length=24)
    q, k, v = qkv(2, 2, 24, 8, dtype=torch.float64)
    mask = suffix_padding([24, 19], 24)
    order = torch.randperm(24)
    with torch.no_grad():
        out = backend(q, k, v, key_padding_mask=mask)
        shuffled = backend(q[:, :, order], k[:, :, order], v[:, :, order], key_padding_mask=mask[:, order])
    real = ~mask[:, order][:, None, :, None].expand_as(out)
    equal = torch.allclose(shuffled[real], out[:, :, order][real], rtol=1e-9, atol=1e-9)
    assert equal == (name in PERMUTATION_EQUIVARIANT)


def test_every_backend_has_a_config_with_exactly_its_options_and_defaults():
    for name in lra.attention.available():
        path = CONF / f"{name}.yaml"
        assert path.is_file(), f"missing {path}"
        config = OmegaConf.to_container(OmegaConf.load(path))
        assert config.pop("name") == name
        assert config == lra.attention.options(name), f"{path} differs from {name}'s keyword options"


def test_every_config_names_a_registered_backend():
    assert sorted(path.stem for path in CONF.glob("*.yaml")) == lra.attention.available()


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(lra.attention.UnknownBackendError, match="taylorshift"):
        lra.attention.create("taylorshfit", num_heads=1, head_dim=4)
    with pytest.raises(lra.attention.UnknownBackendError, match="nb_features"):
        lra.attention.create("performer", num_heads=1, head_dim=4, nb_feature=8)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("taylorshift", {"a": 0.5, "b": 1.0, "c": 0.4}, "c >= b"),
    ("taylorshift", {"mode": "fast"}, "valid: auto, direct, efficient"),
    ("taylorshift", {"impl": "cuda"}, "valid: auto, torch, triton"),
    ("performer", {"kernel": "exp"}, "valid: softmax, relu"),
    ("elementwise", {"mode": "exact"}, "valid: linear, quadratic, direct"),
    ("nystrom", {"conv_kernel_size": 4}, "odd"),
    ("local", {"window": 0}, "positive"),
    ("softmax", {"padding": "nested"}, "valid: auto, mask, varlen"),
])
def test_bad_options_say_what_is_wrong(name, options, message):
    with pytest.raises(ValueError, match=message):
        lra.attention.create(name, num_heads=1, head_dim=4, max_length=8, **options)


def test_linformer_needs_and_enforces_max_length():
    with pytest.raises(ValueError, match="max_length"):
        lra.attention.create("linformer", num_heads=1, head_dim=4)
    backend = lra.attention.create("linformer", num_heads=1, head_dim=4, max_length=8, proj_dim=2)
    with pytest.raises(ValueError, match="at most 8 tokens"):
        backend(*qkv(1, 1, 9, 4))


@pytest.mark.parametrize("name", ["performer", "linear", "elementwise", "nystrom"])
def test_backends_without_attention_matrix_say_dropout_does_not_apply(name):
    with pytest.warns(UserWarning, match="does not apply"):
        lra.attention.create(name, num_heads=1, head_dim=4, dropout=0.1)


@pytest.mark.parametrize(("name", "options"), [("softmax", {}), ("taylorshift", {"mode": "direct"}),
                                               ("linformer", {"proj_dim": 4}), ("local", {"window": 4})])
def test_dropout_acts_in_training_only(name, options):
    torch.manual_seed(3)
    backend = build(name, options, max_length=16, dropout=0.5)
    q, k, v = qkv(1, 2, 16, 8)
    assert torch.equal(backend(q, k, v), backend(q, k, v))
    backend.train()
    assert not torch.allclose(backend(q, k, v), backend(q, k, v))
