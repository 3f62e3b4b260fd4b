"""The sparse-approximation construction on CPU: targets, the fixed parameters, the error measures, the error
falling as d grows, d_min and its fit, the learned baseline."""

from __future__ import annotations

import math

import pytest
import torch

from lra.analysis import errors
from lra.analysis.construction import attention_scores, construct, fixed_projections, random_keys
from lra.analysis.learned import LearnedSettings, learn_inputs
from lra.analysis.sweep import DMin, fit_rows, measure, smallest_dim
from lra.analysis.targets import make_target

DELTAS = [2 ** (k / 2) for k in range(15)]


@pytest.mark.parametrize(("pattern", "s"), [("random", 1), ("random", 3), ("random", 8), ("banded", 4),
                                            ("block", 4), ("permutation", 1)])
def test_targets_are_row_stochastic_with_s_nonzeros_in_every_row_and_column(pattern: str, s: int) -> None:
    dense = make_target(pattern, s, 64, seed=1, weight_range=(0.25, 1.0)).dense()
    assert torch.allclose(dense.sum(1), torch.ones(64, dtype=dense.dtype))
    assert ((dense > 0).sum(1) == s).all() and ((dense > 0).sum(0) == s).all()
    weights = dense[dense > 0].view(64, s)
    assert (weights.amax(1) / weights.amin(1) <= 4 + 1e-9).all()  # the weight range's ratio


def test_random_supports_differ_by_seed_and_reject_bad_settings() -> None:
    first = make_target("random", 4, 64, seed=0, weight_range=(0.25, 1.0)).support()
    assert not torch.equal(first, make_target("random", 4, 64, seed=1, weight_range=(0.25, 1.0)).support())
    with pytest.raises(ValueError, match="must divide"):
        make_target("block", 3, 64, seed=0, weight_range=(0.25, 1.0))
    with pytest.raises(ValueError, match="valid: random, banded"):
        make_target("diagonal", 1, 64, seed=0, weight_range=(0.25, 1.0))


@pytest.mark.parametrize("rule", ["projection", "solve"])
def test_the_fixed_attention_of_the_inputs_is_linear_in_delta(rule: str) -> None:
    target = make_target("random", 3, 48, seed=0, weight_range=(0.25, 1.0))
    built = construct(target, random_keys(48, 16, seed=0, dtype=torch.float64), rule)
    w_q, w_k = fixed_projections(16, torch.float64)
    slope, offset = built.score_parts()
    for delta in (0.5, 3.0):
        inputs = built.inputs(delta)
        assert inputs.shape == (48, 32)
        scores = attention_scores(inputs, w_q, w_k)
        assert torch.allclose(scores, delta * slope + offset, atol=1e-10)
        # the fixed projections select the halves: the standard attention is softmax(X(1) X(2)^T)
        assert torch.allclose(scores, inputs[:, :16] @ inputs[:, 16:].T, atol=1e-10)


def test_solve_gives_the_support_logits_exactly() -> None:
    target = make_target("random", 4, 64, seed=0, weight_range=(0.25, 1.0))
    slope, offset = construct(target, random_keys(64, 8, seed=0, dtype=torch.float64), "solve").score_parts()
    support_logits = (5.0 * slope + offset).gather(1, target.columns)
    expected = 5.0 + torch.log(target.weights / target.weights.amax(1, keepdim=True))
    assert torch.allclose(support_logits, expected, atol=1e-8)


def test_row_errors_agree_with_the_dense_softmax() -> None:
    target = make_target("random", 3, 40, seed=2, weight_range=(0.25, 1.0))
    scores = torch.randn(40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    rows = errors.row_errors(scores, target.columns, target.weights)
    p, a, support = scores.softmax(1), target.dense(), target.support()
    assert torch.allclose(rows["tv"], 0.5 * (p - a).abs().sum(1))
    assert torch.allclose(rows["max_abs"], (p - a).abs().amax(1))
    on = p.gather(1, target.columns)
    log_ratio = (on.log() - target.weights.log()).amax(1) - (on.log() - target.weights.log()).amin(1)
    assert torch.allclose(rows["log_ratio"], log_ratio)
    assert torch.allclose(rows["leak"], p.masked_fill(support, 0).amax(1) / on.amin(1))
    assert torch.equal(rows["ratio"], torch.maximum(rows["log_ratio"], rows["leak"]))
    untouched = scores.clone()
    errors.row_errors(scores, target.columns, target.weights)
    assert torch.equal(scores, untouched)  # only overwrite=True may write over the logits


@pytest.mark.parametrize("rule", ["projection", "solve"])
def test_the_construction_error_falls_as_d_grows(rule: str) -> None:
    """L = 128, s = 2: every measure falls from d = 4 to 16 to 64, and the largest d is accurate."""
    target = make_target("random", 2, 128, seed=0, weight_range=(0.25, 1.0))
    by_dim = {}
    for dim in (4, 16, 64):
        slope, offset = construct(target, random_keys(128, dim, seed=0), rule).score_parts()
        by_dim[dim] = measure(slope, offset, target, sample=None, deltas=DELTAS)
    for metric in errors.CRITERIA:
        values = [by_dim[dim][metric][0] for dim in (4, 16, 64)]
        assert values[0] > values[1] > values[2], (metric, values)
    assert by_dim[4]["tv"][0] > 0.3 and by_dim[64]["tv"][0] < 0.05
    assert by_dim[64]["ratio"][1] > by_dim[4]["ratio"][1]  # a larger d affords a larger Delta


def test_delta_chosen_on_a_sample_of_rows_is_measured_on_every_row() -> None:
    target = make_target("random", 2, 256, seed=0, weight_range=(0.25, 1.0))
    slope, offset = construct(target, random_keys(256, 32, seed=0), "solve").score_parts()
    sample = torch.arange(0, 256, 4)
    measured = measure(slope, offset, target, sample, DELTAS)
    error, delta = measured["tv"]
    assert delta in DELTAS
    assert error == pytest.approx(errors.matrix_errors(delta * slope + offset, target.columns, target.weights)["tv"])


def test_smallest_dim_interpolates_in_log_log_between_the_grid_points() -> None:
    curve = [(4, 0.8), (8, 0.4), (16, 0.01)]
    d_min, d_grid = smallest_dim(curve, 0.1)
    assert d_grid == 16
    fraction = math.log(0.4 / 0.1) / math.log(0.4 / 0.01)
    assert d_min == pytest.approx(8 * 2**fraction)
    assert smallest_dim(curve, 1e-3) == (None, None)
    assert smallest_dim(curve, 0.9) == (4.0, 4)
    assert smallest_dim([(4, 0.5), (8, 0.0)], 0.1)[0] < 8  # an error that underflowed to 0


def test_fit_recovers_a_logarithmic_law_and_skips_unreached_lengths() -> None:
    lengths = [64, 256, 1024, 4096]
    rows = [DMin("solve", "random", 2, n, seed, "tv", 0.1, 3 + 5 * math.log(n), 8, 64)
            for n in lengths for seed in (0, 1)]
    rows.append(DMin("solve", "random", 2, 8192, 0, "tv", 0.1, None, None, 1024))  # a seed that never reached it
    (fit,) = fit_rows(rows)
    assert fit.lengths == tuple(lengths)
    assert fit.slope == pytest.approx(5) and fit.intercept == pytest.approx(3) and fit.r2 == pytest.approx(1)
    assert fit_rows(rows[:4]) == []  # two lengths: too few for a fit


def test_the_learned_inputs_approach_the_target() -> None:
    target = make_target("random", 2, 32, seed=0, weight_range=(0.25, 1.0))
    start = learn_inputs(target, 8, seed=0, settings=LearnedSettings(steps=0))
    learned = learn_inputs(target, 8, seed=0, settings=LearnedSettings(steps=200, lr=0.05))
    before = errors.matrix_errors(start, target.columns, target.weights)
    after = errors.matrix_errors(learned, target.columns, target.weights)
    assert after["tv"] < 0.1 < before["tv"]
    assert after["max_abs"] < before["max_abs"]
