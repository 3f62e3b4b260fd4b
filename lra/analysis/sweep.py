"""Part 1 of ``python -m lra.analysis sparse``: the construction's error against d, the smallest d that reaches
each error, and fits of that d against log L.

For every length, seed, target and method the hidden size runs up the grid ``dims`` until every criterion is
met (or the grid ends): a curve per (method, target, L, seed). Methods: the construction's two query rules
(``lra.analysis.construction``) and the learned baseline (``lra.analysis.learned``, on its own lengths and
dims, as it costs a training run per point).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from lra.analysis import errors
from lra.analysis.construction import construct, random_keys
from lra.analysis.learned import LearnedSettings, learn_inputs
from lra.analysis.targets import Target, make_target, stable_seed

LEARNED = "learned"
ZERO_ERROR = 1e-300  # an error that underflowed to 0, for the log-log interpolation


@dataclass(frozen=True)
class TargetSpec:
    pattern: str
    nonzeros: int


@dataclass
class SweepSettings:
    lengths: list[int]
    targets: list[TargetSpec]
    seeds: list[int]
    dims: list[int]
    deltas: list[float]
    selection_rows: int
    criteria: dict[str, list[float]]
    weight_range: tuple[float, float] = (0.25, 1.0)
    rules: list[str] = field(default_factory=lambda: ["projection", "solve"])
    learned: LearnedSettings | None = None
    learned_lengths: list[int] = field(default_factory=list)
    learned_dims: list[int] = field(default_factory=list)
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass(frozen=True)
class ErrorPoint:
    method: str
    pattern: str
    nonzeros: int
    length: int
    seed: int
    dim: int
    metric: str
    error: float
    delta: float | None  # the construction's Delta for this metric; None for the learned inputs


@dataclass(frozen=True)
class DMin:
    method: str
    pattern: str
    nonzeros: int
    length: int
    seed: int
    metric: str
    threshold: float
    d_min: float | None  # interpolated in log d - log error between the grid points around the threshold
    d_grid: int | None  # the first grid d whose error is within the threshold
    d_largest: int  # the largest d measured


@dataclass(frozen=True)
class Fit:
    method: str
    pattern: str
    nonzeros: int
    metric: str
    threshold: float
    lengths: tuple[int, ...]
    d_min: tuple[float, ...]  # mean over seeds, per length
    slope: float  # d_min = intercept + slope * ln L (least squares)
    intercept: float
    r2: float
    exponent: float  # d_min ~ (ln L)^exponent (least squares in log-log)


def run_sweep(settings: SweepSettings) -> list[ErrorPoint]:
    points = []
    for length in settings.lengths:
        for seed in settings.seeds:
            for spec in settings.targets:
                target = make_target(spec.pattern, spec.nonzeros, length, seed, settings.weight_range,
                                     dtype=torch.float64, device=settings.device)
                for rule in settings.rules:
                    points += _timed(construction_points, target, seed, rule, settings)
                if settings.learned is not None and length in settings.learned_lengths:
                    points += _timed(learned_points, target, seed, settings)
    return points


def _timed(function, target: Target, seed: int, *args) -> list[ErrorPoint]:
    start = time.perf_counter()
    points = function(target, seed, *args)
    method = points[0].method if points else "?"
    print(f"{method:<10} {target.pattern:<11} s={target.nonzeros} L={target.length:<5} seed={seed}: d up to "
          f"{max((p.dim for p in points), default=0)}, {time.perf_counter() - start:.1f} s", flush=True)
    return points


def construction_points(target: Target, seed: int, rule: str, settings: SweepSettings) -> list[ErrorPoint]:
    sample = _sample_rows(target, seed, settings.selection_rows)
    points = []
    for dim in dims_up_to(settings.dims, target.length):
        keys = random_keys(target.length, dim, seed, settings.dtype, settings.device)
        slope, offset = construct(target, keys, rule).score_parts()
        measured = measure(slope, offset, target, sample, settings.deltas)
        points += [ErrorPoint(rule, target.pattern, target.nonzeros, target.length, seed, dim, metric, error, delta)
                   for metric, (error, delta) in measured.items()]
        if all_met({m: e for m, (e, _) in measured.items()}, settings.criteria):
            break
    return points


def learned_points(target: Target, seed: int, settings: SweepSettings) -> list[ErrorPoint]:
    points = []
    for dim in dims_up_to(settings.learned_dims, target.length):
        scores = learn_inputs(target, dim, seed, settings.learned, settings.dtype)
        measured = errors.matrix_errors(scores, target.columns, target.weights)
        points += [ErrorPoint(LEARNED, target.pattern, target.nonzeros, target.length, seed, dim, metric, error,
                              None) for metric, error in measured.items()]
        if all_met(measured, settings.criteria):
            break
    return points


def dims_up_to(dims: list[int], length: int) -> list[int]:
    """The grid's d up to L: at d = L orthonormal keys give the logits B exactly, so a larger d compresses
    nothing."""
    return [dim for dim in dims if dim <= length]


def _sample_rows(target: Target, seed: int, count: int) -> torch.Tensor | None:
    """The rows on which Delta is chosen; None when the sample would be every row."""
    if count >= target.length:
        return None
    generator = torch.Generator().manual_seed(stable_seed("rows", target.length, seed))
    return torch.randperm(target.length, generator=generator)[:count].sort().values.to(target.columns.device)


def measure(slope: torch.Tensor, offset: torch.Tensor, target: Target, sample: torch.Tensor | None,
            deltas: list[float]) -> dict[str, tuple[float, float]]:
    """Each metric's error on every row, with the Delta of the grid that minimises its choosing measure
    (``errors.CHOSEN_BY``) on the sample rows: ``{metric: (error, Delta)}``."""
    columns, weights = target.columns, target.weights.to(slope.dtype)
    if sample is not None:
        slope_s, offset_s, columns_s, weights_s = slope[sample], offset[sample], columns[sample], weights[sample]
    else:
        slope_s, offset_s, columns_s, weights_s = slope, offset, columns, weights
    grid = [errors.summarise(errors.row_errors(torch.add(offset_s, slope_s, alpha=delta), columns_s, weights_s,
                                               overwrite=True)) for delta in deltas]
    best = {chooser: min(range(len(deltas)), key=lambda i, c=chooser: (grid[i][c], i))
            for chooser in set(errors.CHOSEN_BY.values())}
    exact = {i: grid[i] if sample is None else errors.matrix_errors(torch.add(offset, slope, alpha=deltas[i]),
                                                                     columns, weights, overwrite=True)
             for i in set(best.values())}
    return {metric: (exact[best[chooser]][metric], deltas[best[chooser]])
            for metric, chooser in errors.CHOSEN_BY.items()}


def all_met(measured: dict[str, float], criteria: dict[str, list[float]]) -> bool:
    return all(measured[metric] <= min(thresholds) for metric, thresholds in criteria.items())


def d_min_rows(points: Iterable[ErrorPoint], criteria: dict[str, list[float]]) -> list[DMin]:
    curves: dict[tuple, list[ErrorPoint]] = defaultdict(list)
    for p in points:
        if p.metric in criteria:
            curves[(p.method, p.pattern, p.nonzeros, p.length, p.seed, p.metric)].append(p)
    rows = []
    for key, curve in curves.items():
        curve.sort(key=lambda p: p.dim)
        for threshold in criteria[key[-1]]:
            d_min, d_grid = smallest_dim([(p.dim, p.error) for p in curve], threshold)
            rows.append(DMin(*key, threshold, d_min, d_grid, curve[-1].dim))
    return rows


def smallest_dim(curve: list[tuple[int, float]], threshold: float) -> tuple[float | None, int | None]:
    """(interpolated d, first grid d) where the error first falls to ``threshold``; (None, None) if never."""
    for i, (dim, error) in enumerate(curve):
        if error <= threshold:
            if i == 0:
                return float(dim), dim
            (d0, e0), (d1, e1) = curve[i - 1], (dim, max(error, ZERO_ERROR))
            fraction = (math.log(e0) - math.log(threshold)) / (math.log(e0) - math.log(e1))
            return math.exp(math.log(d0) + fraction * (math.log(d1) - math.log(d0))), dim
    return None, None


def fit_rows(rows: Iterable[DMin], min_points: int = 3) -> list[Fit]:
    """Per (method, target, metric, threshold): the lengths at which every seed reached the threshold, their
    mean d_min against ln L; fitted when there are at least ``min_points`` lengths."""
    groups: dict[tuple, dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r.method, r.pattern, r.nonzeros, r.metric, r.threshold)][r.length].append(r.d_min)
    fits = []
    for key, by_length in groups.items():
        reached = {n: sum(v) / len(v) for n, v in sorted(by_length.items()) if None not in v}
        if len(reached) >= min_points:
            fits.append(Fit(*key, tuple(reached), tuple(reached.values()), *_line(reached)))
    return fits


def _line(d_min: dict[int, float]) -> tuple[float, float, float, float]:
    """(slope, intercept, r^2) of d = a + b ln L, and the exponent p of d ~ (ln L)^p."""
    x = torch.tensor([math.log(n) for n in d_min], dtype=torch.float64)
    y = torch.tensor(list(d_min.values()), dtype=torch.float64)
    slope, intercept = _least_squares(x, y)
    residual = ((y - intercept - slope * x) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - float(residual / total) if total > 0 else 1.0
    exponent, _ = _least_squares(x.log(), y.log())
    return slope, intercept, r2, exponent


def _least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    design = torch.stack([x, torch.ones_like(x)], 1)
    slope, intercept = torch.linalg.lstsq(design, y[:, None]).solution[:, 0].tolist()
    return slope, intercept
