import pytest

from lra.bench.crossover import measured_crossover

LENGTHS = [256, 512, 1024, 2048, 4096, 8192]


def test_power_laws_cross_exactly_where_they_are_equal():
    # a = 3 N (linear), b = N^2 / 500 (quadratic): equal at N = 1500, log ratio linear in log N
    a = [3.0 * n for n in LENGTHS]
    b = [n * n / 500 for n in LENGTHS]
    found = measured_crossover(LENGTHS, a, b)
    assert found.estimate == pytest.approx(1500, rel=1e-9)
    assert (found.low, found.high) == (1024, 2048)


def test_always_and_never_cheaper():
    cheaper = measured_crossover(LENGTHS, [1.0] * 6, [2.0] * 6)
    assert cheaper.estimate is None and cheaper.high == 256 and cheaper.describe().startswith("< 256")
    never = measured_crossover(LENGTHS, [2.0] * 6, [1.0] * 6)
    assert never.estimate is None and never.low == 8192 and never.describe().startswith("> 8192")


def test_the_last_crossing_counts_when_noise_crosses_twice():
    a = [1.0, 0.9, 1.1, 0.5, 0.4, 0.3]  # cheaper at 512, not at 1024, cheaper from 2048 on
    b = [1.0] * 6
    found = measured_crossover(LENGTHS, a, b)
    assert 1024 < found.estimate < 2048


def test_out_of_memory_on_the_other_side_brackets_without_interpolating():
    a = [2.0, 2.0, 2.0, 2.0, 3.0, 4.0]
    b = [1.0, 1.0, 1.5, 1.9, None, None]  # b runs out of memory from 4096
    found = measured_crossover(LENGTHS, a, b)
    assert found.estimate is None and (found.low, found.high) == (2048, 4096)
    assert "out of memory" in found.describe()


def test_lengths_where_neither_ran_are_ignored():
    a = [4.0, 2.0, 1.0, None]
    b = [1.0, 1.0, 2.0, None]
    found = measured_crossover([256, 512, 1024, 2048], a, b)
    assert 512 < found.estimate < 1024
    assert measured_crossover([256], [None], [None]).describe() == "no common lengths"
