"""Element-wise attention: the linear form is its quadratic Taylor form, and nears the exact form as t grows."""

from __future__ import annotations

import math

import pytest
import torch

import lra.attention
from tests.attention.cases import qkv, suffix_padding


def elementwise(mode: str, order: int = 2, **options) -> lra.attention.AttentionBackend:
    return lra.attention.create("elementwise", num_heads=2, head_dim=6, mode=mode, order=order, **options).double()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("order", [0, 2, 4, 6, 10])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_linear_form_equals_quadratic_taylor_form(order, padded):
    torch.manual_seed(order)
    q, k, v = qkv(2, 2, 31, 6, dtype=torch.float64)
    mask = suffix_padding([31, 12], 31) if padded else None
    linear = elementwise("linear", order)(q, k, v, key_padding_mask=mask)
    quadratic = elementwise("quadratic", order)(q, k, v, key_padding_mask=mask)
    real = slice(None) if mask is None else ~mask[:, None, :, None].expand_as(linear)
    assert relative_error(linear[real], quadratic[real]) < 1e-10


def test_default_is_the_abstracts_polynomial_of_exp_qk():
    """scale 1/2: w_ijc = exp(-k_jc^2 / 2) P_t(q_ic k_jc), o_ic = sum_j w_ijc v_jc / sum_j w_ijc."""
    torch.manual_seed(9)
    q, k, v = qkv(1, 1, 5, 3, dtype=torch.float64)
    out = elementwise("quadratic", 4)(q, k, v)
    for i in range(5):
        for c in range(3):
            x = q[0, 0, i, c] * k[0, 0, :, c]
            w = torch.exp(-k[0, 0, :, c] ** 2 / 2) * sum(x**n / math.factorial(n) for n in range(5))
            torch.testing.assert_close(out[0, 0, i, c], (w * v[0, 0, :, c]).sum() / w.sum(), rtol=1e-12, atol=0)


def test_scale_one_is_the_earlier_polynomial_of_exp_2qk():
    """scale 1 (what the ListOps records of 2026-11-23 ran): w_ijc = exp(-k_jc^2) P_t(2 q_ic k_jc)."""
    torch.manual_seed(9)
    q, k, v = qkv(1, 1, 5, 3, dtype=torch.float64)
    out = elementwise("linear", 4, scale=1.0)(q, k, v)
    for i in range(5):
        for c in range(3):
            x = 2 * q[0, 0, i, c] * k[0, 0, :, c]
            w = torch.exp(-k[0, 0, :, c] ** 2) * sum(x**n / math.factorial(n) for n in range(5))
            torch.testing.assert_close(out[0, 0, i, c], (w * v[0, 0, :, c]).sum() / w.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_direct_form_is_a_per_channel_softmax_of_negative_squared_distance(scale):
    torch.manual_seed(10)
    q, k, v = qkv(1, 1, 6, 4, dtype=torch.float64)
    out = elementwise("direct", scale=scale)(q, k, v)
    for c in range(4):
        weights = torch.softmax(-scale * (q[0, 0, :, c, None] - k[0, 0, None, :, c]) ** 2, dim=-1)
        torch.testing.assert_close(out[0, 0, :, c], weights @ v[0, 0, :, c], rtol=1e-12, atol=1e-12)


def test_linear_form_approaches_the_exact_form_as_the_order_grows():
    """Averaged over seeds, the error to exp(-(q-k)^2/2) falls with each even order (|qk| mostly below 1)."""
    errors = {order: 0.0 for order in (0, 2, 4, 8, 16)}
    for seed in range(5):
        torch.manual_seed(seed)
        q, k, v = qkv(2, 2, 64, 6, dtype=torch.float64)
        q, k = 0.6 * q, 0.6 * k
        exact = elementwise("direct")(q, k, v)
        for order in errors:
            errors[order] += relative_error(elementwise("linear", order)(q, k, v), exact) / 5
    values = list(errors.values())
    assert all(later < earlier for earlier, later in zip(values, values[1:], strict=False)), errors
    assert errors[16] < 1e-3, errors


def test_even_orders_keep_weights_positive_for_any_scores():
    """P_t(x) > 0 for even t: with large q and k of opposite signs the normaliser stays positive."""
    q = torch.full((1, 1, 4, 2), 6.0, dtype=torch.float64)
    k = -torch.linspace(1, 8, 4, dtype=torch.float64).view(1, 1, 4, 1).expand(1, 1, 4, 2)
    v = torch.randn(1, 1, 4, 2, dtype=torch.float64)
    out = elementwise("linear", 2)(q, k, v)
    assert torch.isfinite(out).all()
    assert (out.abs() <= v.abs().max() + 1e-9).all()  # a convex combination of values


def test_odd_orders_warn():
    with pytest.warns(UserWarning, match="odd order 3"):
        lra.attention.create("elementwise", num_heads=1, head_dim=4, order=3)


def test_causal_shift_is_a_running_minimum():
    """float32, causal: large early keys (k^2/2 near 112), then a key at 0. A minimum over all keys would scale the
    early weights by about exp(-112), below float32; the running minimum keeps each prefix's largest weight at 1."""
    torch.manual_seed(11)
    q, k, v = qkv(1, 1, 8, 2)
    k[:, :, :5] = 15.0 + 0.1 * torch.arange(5.0).view(1, 1, 5, 1)
    k[:, :, 5] = 0.0
    causal = lra.attention.create("elementwise", num_heads=1, head_dim=2, causal=True)
    reference = lra.attention.create("elementwise", num_heads=1, head_dim=2).double()
    out = causal(q, k, v)
    for i in range(8):
        alone = reference(q[:, :, :i + 1].double(), k[:, :, :i + 1].double(), v[:, :, :i + 1].double())
        torch.testing.assert_close(out[:, :, i].double(), alone[:, :, i], rtol=1e-5, atol=1e-6)
    state = causal.init_state(1)
    for t in range(8):
        step, state = causal.step(state, q[:, :, t], k[:, :, t], v[:, :, t])
        torch.testing.assert_close(step, out[:, :, t], rtol=1e-5, atol=1e-6)
    # The inputs reach the underflow: shifted by the minimum over all keys (0, at position 5), every early weight is 0.
    assert torch.exp(0.0 - (k[:, :, :5] ** 2 / 2)).max() == 0


def test_scale_must_be_positive():
    with pytest.raises(ValueError, match="scale must be positive"):
        lra.attention.create("elementwise", num_heads=1, head_dim=4, scale=0.0)
