"""The contract every backend keeps (``lra.attention.contract``, the functions ``python -m lra.attention check``
runs): shapes, dtype, finite gradients, padding invariance, permutation equivariance as the class states it;
and the configs of the registered backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import lra.attention
from lra.attention import contract
from tests.attention.cases import ALL_FORM_IDS, ALL_FORMS, CASE_IDS, CASES, build, qkv

CONF = Path(__file__).resolve().parents[2] / "conf" / "attention"


@pytest.mark.parametrize(("case", "name", "options"), ALL_FORMS, ids=ALL_FORM_IDS)
def test_shapes(case, name, options):
    contract.check_shapes(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), ALL_FORMS, ids=ALL_FORM_IDS)
def test_output_has_the_dtype_of_the_values(case, name, options):
    contract.check_dtype(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), ALL_FORMS, ids=ALL_FORM_IDS)
def test_finite_gradients(case, name, options):
    contract.check_gradients(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), ALL_FORMS, ids=ALL_FORM_IDS)
def test_padding_has_no_influence_on_real_outputs(case, name, options):
    """Each example of a padded batch gives what it gives alone, unpadded (float32, 1e-6)."""
    contract.check_padding_invariance(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), CASES, ids=CASE_IDS)
def test_permutation_equivariance_is_as_the_class_states(case, name, options):
    # CASES only: a window or a landmark count as long as the test sequence would make any backend equivariant
    claimed = lra.attention.backend_class(name).permutation_equivariant
    contract.check_permutation_equivariance(contract.factory(name, options), claimed)


def test_the_contract_check_names_the_failing_case():
    """A backend that lets padded keys in fails padding invariance, with the example that shows it."""
    make = contract.factory("softmax")

    def leaky(**kwargs):
        backend = make(**kwargs)
        forward = backend.forward
        backend.forward = lambda q, k, v, key_padding_mask=None: forward(q, k, v)
        return backend

    with pytest.raises(contract.ContractViolation, match=r"example 0 \(29 of 40 tokens real\).*Mismatched"):
        contract.check_padding_invariance(leaky)


def test_every_backend_has_a_config_with_exactly_its_options_and_defaults():
    for name in lra.attention.available():
        path = CONF / f"{name}.yaml"
        assert path.is_file(), f"missing {path}"
        config = OmegaConf.to_container(OmegaConf.load(path))
        assert config.pop("name") == name
        assert config == lra.attention.options(name), f"{path} differs from {name}'s keyword options"


def test_every_config_names_a_registered_backend():
    configs = sorted(path.stem for path in CONF.glob("*.yaml"))
    assert configs == sorted([*lra.attention.available(), lra.attention.registry.CUSTOM])


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
