"""The rebuilt attention weights are the ones each backend averages its values under."""

from __future__ import annotations

import pytest
import torch

import lra.attention
from lra.analysis.weights import NoWeightsError, weight_function

BATCH, HEADS, LENGTH, DIM = 2, 3, 24, 8


def _inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, LENGTH, DIM, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.zeros(BATCH, LENGTH, dtype=torch.bool)
    mask[1, 17:] = True  # the second example has 17 real tokens
    return q, k, v, mask


@pytest.mark.parametrize(("name", "options"), [("softmax", {"padding": "mask"}), ("taylorshift", {"mode": "direct"}),
                                               ("taylorshift", {"mode": "efficient", "impl": "torch"}),
                                               ("linear", {})])
def test_weights_times_values_is_the_backends_output(name: str, options: dict) -> None:
    core = lra.attention.create(name, num_heads=HEADS, head_dim=DIM, **options).double().eval()
    if name == "taylorshift":
        with torch.no_grad():
            core.temperature.copy_(torch.tensor([0.7, 1.0, 2.5]).view(1, HEADS, 1, 1))
    q, k, v, mask = _inputs()
    weights = weight_function(core)(core, q, k, mask)
    expected = core(q, k, v, key_padding_mask=mask)
    if name == "taylorshift":  # its output factor sqrt(N_real / d), on top of the average
        expected = expected / (torch.tensor([LENGTH, 17.0], dtype=torch.float64) / DIM).sqrt().view(BATCH, 1, 1, 1)
    real = ~mask
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    assert (weights.masked_select(mask[:, None, None, :].expand_as(weights)) == 0).all()
    for b in range(BATCH):
        assert torch.allclose((weights @ v)[b][:, real[b]], expected[b][:, real[b]], atol=1e-5 if name == "linear"
                              else 1e-10)


def test_a_backend_without_one_attention_matrix_is_refused_by_name() -> None:
    core = lra.attention.create("performer", num_heads=HEADS, head_dim=DIM)
    with pytest.raises(NoWeightsError, match="PerformerAttention has no single attention matrix.*supported: "
                                             "LinearAttention, SoftmaxAttention, TaylorShiftAttention"):
        weight_function(core)
