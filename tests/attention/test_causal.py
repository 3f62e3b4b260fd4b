"""Causal attention and the recurrent step, for every registered backend (generated from the registry).

Causal means: the output at i is what the non-causal backend gives at i on the sequence cut after i.
The recurrent step, token by token, gives the causal forward's outputs.
"""

from __future__ import annotations

import pytest
import torch

import lra.attention
from lra.attention import contract
from lra.attention.causal import causal_sum
from lra.data.base import TaskSpec
from lra.model import LRAClassifier, ModelConfig
from tests.attention.cases import build, forms, qkv

CAUSAL = forms("supports_causal")
RECURRENT = [case for case in forms("supports_recurrent")
             if build(case[1], case[2], causal=True).recurrent_unavailable() is None]
NOT_CAUSAL = [name for name in lra.attention.available() if not lra.attention.backend_class(name).supports_causal]


def test_capability_flags_are_consistent():
    """Recurrent implies causal; a backend that claims a recurrent form steps with its default options."""
    for name in lra.attention.available():
        cls = lra.attention.backend_class(name)
        assert isinstance(cls.supports_causal, bool) and isinstance(cls.supports_recurrent, bool), name
        assert cls.supports_causal or not cls.supports_recurrent, name
        if cls.supports_recurrent:
            assert build(name, {}, causal=True).recurrent_unavailable() is None, name


def test_the_backends_of_the_issue_have_causal_and_recurrent_forms():
    causal = {name for name in lra.attention.available() if lra.attention.backend_class(name).supports_causal}
    recurrent = {case[1] for case in RECURRENT}
    assert {"softmax", "linear", "taylorshift", "performer", "elementwise"} <= causal
    assert {"linear", "taylorshift", "performer", "elementwise"} <= recurrent


@pytest.mark.parametrize("name", NOT_CAUSAL)
def test_a_backend_without_a_causal_form_refuses_by_name(name):
    with pytest.raises(ValueError, match=f"'{name}' has no causal form.*can be causal: .*softmax"):
        lra.attention.create(name, num_heads=2, head_dim=8, max_length=16, causal=True)


@pytest.mark.parametrize(("case", "name", "options"), CAUSAL, ids=[case[0] for case in CAUSAL])
def test_causal_output_is_the_output_on_the_prefix(case, name, options):
    """Padded batch, causal: each real position equals the non-causal backend on that example's prefix."""
    contract.check_causal_prefix(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), CAUSAL, ids=[case[0] for case in CAUSAL])
def test_later_tokens_have_no_influence_in_float32(case, name, options):
    """Large later keys and values (which could overflow a shared stabiliser) leave earlier outputs as they are."""
    contract.check_later_tokens_have_no_influence(contract.factory(name, options))


@pytest.mark.parametrize(("case", "name", "options"), CAUSAL, ids=[case[0] for case in CAUSAL])
def test_causal_gradients_are_finite_with_leading_and_trailing_padding(case, name, options):
    contract.check_gradients(contract.factory(name, options), causal=True)


@pytest.mark.parametrize(("case", "name", "options"), RECURRENT, ids=[case[0] for case in RECURRENT])
def test_recurrent_steps_equal_the_causal_forward(case, name, options):
    """init_state, then one token at a time: the causal parallel form's outputs, to 1e-6 in float64."""
    contract.check_recurrent_steps(contract.factory(name, options))


def test_the_state_keeps_the_precision_it_is_given():
    backend = build("linear", {}, dtype=torch.float64, causal=True)
    state = backend.init_state(2, dtype=torch.float64)
    _, state = backend.step(state, *(torch.randn(2, 2, 8, dtype=torch.float64) for _ in range(3)))
    assert all(tensor.dtype == torch.float64 for tensor in state.values())


@pytest.mark.parametrize("name", NOT_CAUSAL)
def test_a_backend_without_a_causal_form_is_refused_by_the_contract_check(name):
    contract.check_causal_refused(contract.factory(name))


@pytest.mark.parametrize(("case", "name", "options"), RECURRENT[:1] + RECURRENT[-1:],
                         ids=[case[0] for case in RECURRENT[:1] + RECURRENT[-1:]])
def test_step_leaves_the_state_it_is_given(case, name, options):
    backend = build(name, options, dtype=torch.float64, causal=True)
    q, k, v = qkv(1, 2, 2, 8, dtype=torch.float64)
    first = backend.init_state(1, dtype=torch.float64)
    _, second = backend.step(first, q[:, :, 0], k[:, :, 0], v[:, :, 0])
    copies = {key: tensor.clone() for key, tensor in second.items()}
    once, _ = backend.step(second, q[:, :, 1], k[:, :, 1], v[:, :, 1])
    again, _ = backend.step(second, q[:, :, 1], k[:, :, 1], v[:, :, 1])
    assert torch.equal(once, again)
    assert all(torch.equal(second[key], copies[key]) for key in copies)


def test_step_refuses_clearly():
    q = torch.randn(1, 2, 8)
    with pytest.raises(RuntimeError, match="causal=True"):
        build("linear", {}).init_state(1)
    with pytest.raises(RuntimeError, match="'softmax' has no recurrent form"):
        build("softmax", {}, causal=True).init_state(1)
    with pytest.raises(RuntimeError, match="mode=direct .* has no recurrent form"):
        build("elementwise", {"mode": "direct"}, causal=True).init_state(1)
    backend = build("linear", {}, causal=True)
    with pytest.raises(ValueError, match=r"one token, k of shape \(batch, 2, 8\)"):
        backend.step(backend.init_state(1), q, torch.randn(1, 2, 3, 8), q)


def test_step_keeps_float32_state_and_returns_the_values_dtype():
    backend = build("performer", {}, causal=True)
    state = backend.init_state(1, dtype=torch.bfloat16)
    q, k, v = (torch.randn(1, 2, 8, dtype=torch.bfloat16) for _ in range(3))
    out, state = backend.step(state, q, k, v)
    assert out.dtype == torch.bfloat16 and all(t.dtype == torch.float32 for t in state.values())


@pytest.mark.parametrize(("name", "options", "message"), [
    ("softmax", {"padding": "varlen"}, "padding=varlen has no causal path"),
    ("taylorshift", {"impl": "triton"}, "impl=triton has no causal mode"),
])
def test_causal_refuses_paths_that_have_no_causal_mode(name, options, message):
    with pytest.raises(ValueError, match=message):
        lra.attention.create(name, num_heads=1, head_dim=4, causal=True, **options)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
@pytest.mark.parametrize("shifted", [False, True], ids=["plain", "shifted"])
def test_causal_sum_is_the_masked_pairwise_sum(chunk_size, shifted):
    """sum_{j<=i} exp(s_i - s_j) (f_i . g_j) v_j, with a shift falling by ~1000 over the sequence (no overflow)."""
    torch.manual_seed(5)
    fq, fk = (torch.rand(2, 3, 37, 6, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, 37, 4, dtype=torch.float64)
    shift = -(30 * torch.rand(2, 3, 37, dtype=torch.float64)).cumsum(-1) if shifted else None
    weights = (fq @ fk.transpose(-1, -2)).tril()
    if shifted:
        weights = weights * (shift[..., :, None] - shift[..., None, :]).tril().exp().tril()
    torch.testing.assert_close(causal_sum(fq, fk, v, shift, chunk_size), weights @ v, rtol=1e-12, atol=1e-12)


def test_the_encoder_passes_causal_to_every_block():
    """model.causal: an encoder state at position i does not change when a later token does."""
    torch.manual_seed(6)
    config = ModelConfig(d_model=16, num_layers=2, num_heads=2, mlp_dim=32, dropout=0.0, pooling="mean",
                         causal=True)
    spec = TaskSpec(name="toy", num_classes=3, max_length=12, vocab_size=10)
    model = LRAClassifier(spec, config, "linear").eval()
    assert all(block.attn.core.causal for block in model.encoder.blocks)
    tokens = torch.randint(1, 10, (1, 12))
    changed = tokens.clone()
    changed[0, 8:] = (tokens[0, 8:] % 9) + 1
    with torch.no_grad():
        states, _ = model.encoder(tokens, None)
        changed_states, _ = model.encoder(changed, None)
    torch.testing.assert_close(states[:, :8], changed_states[:, :8])
    assert not torch.allclose(states[:, 8:], changed_states[:, 8:])


def test_causal_model_refuses_cls_pooling():
    with pytest.raises(ValueError, match="causal=true needs model.pooling=mean"):
        ModelConfig(causal=True, pooling="cls")


@pytest.mark.parametrize("name", [name for name in lra.attention.available()
                                  if lra.attention.backend_class(name).packs_sequences
                                  and lra.attention.backend_class(name).supports_causal])
def test_causal_packed_sequences_give_the_padded_causal_states(name):
    """model.unpad=true (every layer on the real tokens, packed) keeps attention causal."""
    torch.manual_seed(7)
    spec = TaskSpec(name="toy", num_classes=3, max_length=20, vocab_size=10)
    config = dict(d_model=16, num_layers=2, num_heads=2, mlp_dim=32, dropout=0.0, pooling="mean", causal=True)
    padded = LRAClassifier(spec, ModelConfig(**config, unpad=False), name).eval()
    packed = LRAClassifier(spec, ModelConfig(**config, unpad=True), name).eval()
    packed.load_state_dict(padded.state_dict())
    padding = torch.arange(20) >= torch.tensor([[20], [9]])
    tokens = torch.randint(1, 10, (2, 20)).masked_fill(padding, 0)
    with torch.no_grad():
        states, _ = padded.encoder(tokens, padding)
        packed_states, _ = packed.encoder(tokens, padding, packed.encoder.packing_for(padding))
    real = ~padding
    torch.testing.assert_close(packed_states[real], states[real], rtol=1e-5, atol=1e-5)
