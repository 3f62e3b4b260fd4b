import math

import pytest

from lra.bench import analytic


@pytest.mark.parametrize("head_dim, expected", [(16, 273), (32, 1057), (64, 4161)])
def test_speed_crossover_is_d_squared_plus_d_plus_one_and_equalises_flops(head_dim, expected):
    n0 = analytic.speed_crossover(head_dim)
    assert n0 == head_dim**2 + head_dim + 1 == expected
    for mode in ("fwd", "fwd_bwd"):
        assert analytic.flops("efficient", n0, head_dim, mode) == pytest.approx(
            analytic.flops("direct", n0, head_dim, mode))
        for n, efficient_cheaper in ((n0 // 2, False), (2 * n0, True)):
            efficient, direct = (analytic.flops(kind, n, head_dim, mode) for kind in ("efficient", "direct"))
            assert (efficient < direct) == efficient_cheaper


@pytest.mark.parametrize("head_dim, expected", [(16, 158), (32, 574), (64, 2174)])
def test_memory_crossover_matches_the_authors_formula_and_the_entry_counts(head_dim, expected):
    n1 = analytic.memory_crossover(head_dim)
    assert n1 == expected
    # the entry model changes sign at the authors' (rounded) root
    below, above = n1 - 1, n1 + 1
    for n, efficient_smaller in ((below, False), (above, True)):
        efficient, direct = (analytic.memory_entries(kind, n, head_dim) for kind in ("efficient", "direct"))
        assert (efficient < direct) == efficient_smaller


def test_forward_backward_flops_of_efficient_taylorshift_match_the_floor_in_the_shared_notes():
    # shared/README.md: 12 N F (d+1) per head; N=16384, d=32, B*H=128 -> 0.88 TFLOP
    total = 128 * analytic.flops("efficient", 16384, 32, "fwd_bwd")
    assert total == pytest.approx(12 * 16384 * 1057 * 33 * 128)
    assert total / 1e12 == pytest.approx(0.88, abs=0.005)


@pytest.mark.parametrize("head_dim, expected", [(32, 934), (64, 3622)])
def test_softmax_crossover_in_forward_backward_matches_the_kernel_issue(head_dim, expected):
    # issue 6: efficient TaylorShift overtakes softmax near 0.9k (d=32) and 3.6k (d=64) at equal efficiency
    n = analytic.softmax_speed_crossover(head_dim, "fwd_bwd")
    assert round(n) == expected
    assert analytic.flops("efficient", n, head_dim, "fwd_bwd") == pytest.approx(
        analytic.flops("softmax", n, head_dim, "fwd_bwd"))
    forward = analytic.softmax_speed_crossover(head_dim, "fwd")
    assert analytic.forward_flops("efficient", forward, head_dim) == pytest.approx(
        analytic.forward_flops("softmax", forward, head_dim))


def test_predicted_crossover_per_pair():
    assert analytic.predicted_crossover("efficient", "direct", "time", 32, "fwd_bwd") == 1057
    assert analytic.predicted_crossover("efficient", "direct", "memory", 32, "fwd_bwd") == 574
    forward = analytic.predicted_crossover("efficient", "softmax", "time", 32, "fwd")
    assert math.isclose(forward, 1057 * 33 / 32)
    assert analytic.predicted_crossover("efficient", "softmax", "memory", 32, "fwd") is None
    assert analytic.predicted_crossover("direct", "softmax", "time", 32, "fwd") is None


def test_unknown_kind_and_mode_fail_clearly():
    with pytest.raises(ValueError, match="known: softmax, direct, efficient"):
        analytic.forward_flops("performer", 10, 4)
    with pytest.raises(ValueError, match="fwd or fwd_bwd"):
        analytic.flops("softmax", 10, 4, "bwd")
