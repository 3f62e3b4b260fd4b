"""Measured crossovers: the length from which one series is cheaper than another, read off a sweep.

Between the last measured length where ``a`` is not cheaper than ``b`` and the next one, the crossing
is interpolated linearly in log N against log(a / b), i.e. on the log-log plot. A point where ``b`` ran
out of memory (or was skipped after doing so) while ``a`` ran counts as ``a`` cheaper; the crossing is
then only bracketed, not interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Crossover:
    """``estimate``: interpolated N (None when only bracketed or absent); ``low``/``high``: bracket."""

    estimate: float | None
    low: float | None
    high: float | None

    def describe(self) -> str:
        if self.estimate is not None:
            return f"{self.estimate:.0f}"
        if self.low is None and self.high is not None:
            return f"< {self.high:.0f} (cheaper at every length)"
        if self.high is None and self.low is not None:
            return f"> {self.low:.0f} (not reached)"
        if self.low is not None and self.high is not None:
            return f"{self.low:.0f}..{self.high:.0f} (other side out of memory)"
        return "no common lengths"


def measured_crossover(lengths: list[int], a: list[float | None], b: list[float | None]) -> Crossover:
    """From which N on ``a`` < ``b``. ``None`` in a list marks a length where that series did not run
    (out of memory); a length where neither ran is ignored."""
    points = []
    for n, x, y in zip(lengths, a, b, strict=True):
        if x is None and y is None:
            continue
        if x is None:
            ratio = math.inf
        elif y is None:
            ratio = -math.inf
        else:
            ratio = math.log(x / y)
        points.append((n, ratio))
    points.sort()
    if not points:
        return Crossover(None, None, None)
    not_cheaper = [i for i, (_, r) in enumerate(points) if r >= 0]
    if not not_cheaper:
        return Crossover(None, None, points[0][0])
    last = not_cheaper[-1]
    if last == len(points) - 1:
        return Crossover(None, points[-1][0], None)
    (n0, r0), (n1, r1) = points[last], points[last + 1]
    if math.isinf(r0) or math.isinf(r1):
        return Crossover(None, n0, n1)
    fraction = r0 / (r0 - r1)
    estimate = math.exp(math.log(n0) + fraction * (math.log(n1) - math.log(n0)))
    return Crossover(estimate, n0, n1)
