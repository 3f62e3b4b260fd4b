"""The benchmark row schema: the CSV ``lra.bench`` writes (``results/bench/<device>/*.csv``) and the tables read.

CSV columns (one row per series x length x head_dim x dtype):
    backend, series, options   the registry name, the series label, its options as ``key=value;...``
    level, mode                core | layer | model | loop, and fwd | fwd_bwd
    dtype, batch, heads, head_dim, length
    time_ms                    median time of one step (core/layer: the pass; model/loop: a training step)
    peak_mib                   peak allocated memory above the baseline (see ``lra.bench.measure``);
                               empty on CPU
    tokens_per_s               batch * length / time
    status                     ok | oom | error | skipped (longer lengths after an oom or a step slower
                               than ``bench.stop_above_ms``, or past ``bench.time_budget_s``)
    note                       the error message, or why the point was skipped
    repeats, timer             timed steps behind the median; cuda_events, or wall_clock (CPU, loop level)
    device, torch, date, commit, command   where, with what, when, from which commit, by which command
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

from lra.results.records import RecordError

COLUMNS = ("backend", "series", "options", "level", "mode", "dtype", "batch", "heads", "head_dim", "length",
           "time_ms", "peak_mib", "tokens_per_s", "status", "note", "repeats", "timer", "device", "torch",
           "date", "commit", "command")

Row = dict[str, object]  # one CSV row as the benchmark builds it, keyed by COLUMNS


@dataclass(frozen=True)
class Point:
    """What one row measures: level, mode, dtype and the shape (batch, heads, head_dim, length)."""

    level: str
    mode: str
    dtype: str
    batch: int
    heads: int
    head_dim: int
    length: int

    @property
    def tokens(self) -> int:
        return self.batch * self.length


@dataclass(frozen=True)
class BenchPoint(Point):
    """One row read back: the point, which series measured it where, and what came out."""

    device: str  # the results/bench/<device> folder
    series: str
    backend: str
    status: str
    time_ms: float | None
    peak_mib: float | None
    date: str

    @property
    def setting(self) -> tuple:
        return (self.device, self.level, self.mode, self.dtype, self.batch, self.heads, self.head_dim)

    @property
    def steps_per_s(self) -> float | None:
        return 1000.0 / self.time_ms if self.status == "ok" and self.time_ms else None


POINT_COLUMNS = tuple(f.name for f in fields(Point))
REQUIRED = ("backend", "series", *POINT_COLUMNS, "time_ms", "peak_mib", "status")  # what a reader needs


def load_bench(bench_dir: Path) -> list[BenchPoint]:
    """Every point of every ``results/bench/<device>/*.csv``; for a repeated point the newest date wins."""
    points: dict[tuple, BenchPoint] = {}
    for path in sorted(Path(bench_dir).glob("*/*.csv")):
        for point in read_bench_csv(path):
            key = (*point.setting, point.series, point.length)
            if key not in points or point.date >= points[key].date:
                points[key] = point
    return list(points.values())


def read_bench_csv(path: Path) -> list[BenchPoint]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise RecordError(f"{path}: not a benchmark CSV of lra.bench (no column {', '.join(missing)})")
        rows = list(reader)
    try:
        return [BenchPoint(level=row["level"], mode=row["mode"], dtype=row["dtype"], batch=int(row["batch"]),
                           heads=int(row["heads"]), head_dim=int(row["head_dim"]), length=int(row["length"]),
                           device=path.parent.name, series=row["series"], backend=row["backend"],
                           status=row["status"], time_ms=_number(row["time_ms"]), peak_mib=_number(row["peak_mib"]),
                           date=row.get("date") or "") for row in rows]
    except ValueError as error:
        raise RecordError(f"{path}: unreadable benchmark row ({error})") from None


def _number(text: str | None) -> float | None:
    return float(text) if text not in ("", None) else None
