"""``python -m lra.analysis sparse``: settings from ``conf/analysis.yaml`` (``sparse.*``), the two parts, their
files under ``sparse.out_dir`` (default ``results/analysis/``) and a printed summary."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lra.analysis import errors, plots
from lra.analysis.construction import QUERY_RULES
from lra.analysis.files import as_row
from lra.analysis.learned import LearnedSettings
from lra.analysis.sparsity import SparsitySettings, checkpoint_sparsity
from lra.analysis.sweep import DMin, ErrorPoint, Fit, SweepSettings, TargetSpec, d_min_rows, fit_rows, run_sweep
from lra.analysis.targets import PATTERNS
from lra.results.environment import environment
from lra.results.files import write_csv, write_json_atomic
from lra.results.records import now

DTYPES = {"float32": torch.float32, "float64": torch.float64}
SPARSITY_COLUMNS = ["checkpoint", "run_id", "task", "attention", "step", "split", "head_dim", "layer", "head",
                    "rows", "mean_length", "k_mean", "k_median", "k_p90", "k_max", "k_fraction_median",
                    "column_p90", "column_max", "effective_median", "rows_within", "columns_within", "in_regime",
                    "mass", "max_nonzeros"]


@dataclass
class AnalysisConfig:
    sweep: SweepSettings | None
    checkpoints: list[str]
    sparsity: SparsitySettings
    out_dir: Path
    device: torch.device
    threads: int | None
    keep_other_runs: bool


def _positive_ints(key: str, values: Any) -> list[int]:
    values = list(values) if isinstance(values, list | tuple) else [values]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"sparse.{key} must be a list of positive integers, got {values!r}")
    return values


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"sparse.device={name!r}; valid: cpu, cuda, auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("sparse.device=cuda, but torch sees no CUDA device; use sparse.device=cpu")
    return torch.device(name)


def _targets(items: Any) -> list[TargetSpec]:
    specs = []
    for item in items or []:
        if not isinstance(item, Mapping) or set(item) != {"pattern", "s"}:
            raise ValueError(f"each sparse.targets entry is {{pattern: NAME, s: [N, ...]}}, got {item!r}")
        if item["pattern"] not in PATTERNS:
            raise ValueError(f"sparse.targets: pattern={item['pattern']!r}; valid: {', '.join(PATTERNS)}")
        specs += [TargetSpec(item["pattern"], s) for s in _positive_ints("targets[].s", item["s"])]
    if not specs:
        raise ValueError("sparse.targets is empty")
    return specs


def _deltas(spec: Mapping) -> list[float]:
    smallest, largest, per_octave = spec["smallest"], spec["largest"], spec["per_octave"]
    if not (0 < smallest <= largest) or not isinstance(per_octave, int) or per_octave < 1:
        raise ValueError(f"sparse.deltas needs 0 < smallest <= largest and an integer per_octave >= 1, got {spec}")
    count = round(per_octave * math.log2(largest / smallest)) + 1
    return [smallest * 2 ** (i / per_octave) for i in range(count)]


def _criteria(spec: Mapping) -> dict[str, list[float]]:
    criteria = {}
    for metric, thresholds in spec.items():
        if metric not in errors.CRITERIA:
            raise ValueError(f"sparse.criteria.{metric}: not a criterion; valid: {', '.join(errors.CRITERIA)}")
        values = list(thresholds) if isinstance(thresholds, list | tuple) else [thresholds]
        if not values or any(not isinstance(v, int | float) or v <= 0 for v in values):
            raise ValueError(f"sparse.criteria.{metric} must be a list of positive numbers, got {thresholds!r}")
        criteria[metric] = [float(v) for v in values]
    if not criteria:
        raise ValueError("sparse.criteria is empty")
    return criteria


def config_from(spec: Mapping) -> AnalysisConfig:
    """Checked settings from the ``sparse`` node; a ValueError names the bad key and what is valid."""
    device = _device(spec["device"])
    if spec["dtype"] not in DTYPES:
        raise ValueError(f"sparse.dtype={spec['dtype']!r}; valid: {', '.join(DTYPES)}")
    rules = list(spec["rules"])
    if any(rule not in QUERY_RULES for rule in rules):
        raise ValueError(f"sparse.rules={rules}; valid: {', '.join(QUERY_RULES)}")
    learned = spec["learned"]
    sweep = SweepSettings(
        lengths=_positive_ints("lengths", spec["lengths"]), targets=_targets(spec["targets"]),
        seeds=[int(s) for s in spec["seeds"]], dims=sorted(_positive_ints("dims", spec["dims"])),
        deltas=_deltas(spec["deltas"]), selection_rows=_positive_ints("selection_rows", spec["selection_rows"])[0],
        criteria=_criteria(spec["criteria"]), weight_range=tuple(spec["weight_range"]), rules=rules,
        learned=LearnedSettings(steps=learned["steps"], lr=learned["lr"]) if learned["enabled"] else None,
        learned_lengths=_positive_ints("learned.lengths", learned["lengths"]) if learned["enabled"] else [],
        learned_dims=sorted(_positive_ints("learned.dims", learned["dims"])) if learned["enabled"] else [],
        dtype=DTYPES[spec["dtype"]], device=device,
    ) if spec["sweep"] else None
    checkpoints = [str(path) for path in spec["ckpt"] or []]
    if sweep is None and not checkpoints:
        raise ValueError("nothing to do: sparse.sweep=false and no checkpoints (sparse.ckpt=[PATH,...])")
    sparsity = SparsitySettings(**spec["checkpoints"])
    if not 0 < sparsity.mass <= 1:
        raise ValueError(f"sparse.checkpoints.mass must be in (0, 1], got {sparsity.mass}")
    threads = spec["threads"]
    return AnalysisConfig(sweep, checkpoints, sparsity, Path(spec["out_dir"]), device, threads,
                          bool(spec["keep_other_runs"]))


def run(cfg: DictConfig, command: str) -> list[Path]:
    """Both parts as configured; returns the files written."""
    settings = config_from(OmegaConf.to_container(cfg.sparse, resolve=True))
    if settings.threads:
        torch.set_num_threads(settings.threads)
    written = []
    if settings.sweep is not None:
        written += construction_part(settings.sweep, settings.out_dir, cfg, command)
    if settings.checkpoints:
        written += checkpoint_part(settings, cfg, command)
    return written


def construction_part(sweep: SweepSettings, out: Path, cfg: DictConfig, command: str) -> list[Path]:
    start, created = time.perf_counter(), now()
    points = run_sweep(sweep)
    d_min = d_min_rows(points, sweep.criteria)
    fits = fit_rows(d_min)
    files = [
        _write(out / "construction_errors.csv", ErrorPoint, points),
        _write(out / "construction_dmin.csv", DMin, d_min),
        _write(out / "construction_fit.csv", Fit, fits),
        *[plots.error_curves(points, metric, thresholds, out / f"construction_error_vs_d_{metric}.png")
          for metric, thresholds in sweep.criteria.items()],
        plots.d_min_plot(d_min, fits, sweep.criteria, out / "construction_dmin_vs_logL.png"),
    ]
    files.append(_record(out / "construction_run.json", cfg, command, created, start, files))
    print(summary_table(d_min, fits, sweep.criteria))
    return files


def checkpoint_part(settings: AnalysisConfig, cfg: DictConfig, command: str) -> list[Path]:
    start, created = time.perf_counter(), now()
    rows = []
    for path in settings.checkpoints:
        rows += checkpoint_sparsity(path, cfg.paths, settings.sparsity, settings.device)
        print(f"{path}: {len({(r['layer'], r['head']) for r in rows})} layer-heads so far", flush=True)
    out = settings.out_dir
    if settings.keep_other_runs:
        rows = other_runs_rows(out / "attention_sparsity.csv", {r["run_id"] for r in rows}) + rows
    files = [out / "attention_sparsity.csv", plots.sparsity_plot(rows, out / "attention_sparsity.png")]
    write_csv(files[0], SPARSITY_COLUMNS, rows)
    files.append(_record(out / "attention_run.json", cfg, command, created, start, files,
                         earlier=_earlier_runs(out / "attention_run.json") if settings.keep_other_runs else []))
    print(sparsity_table(rows))
    return files


def other_runs_rows(path: Path, replaced: set[str]) -> list[dict[str, Any]]:
    """The rows of an earlier ``attention_sparsity.csv`` whose run is not analysed again now (so checkpoints
    analysed on different machines add up in one table), with their numbers and flags typed back."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["run_id"] not in replaced]
    if rows and list(rows[0]) != list(SPARSITY_COLUMNS):
        raise ValueError(f"{path} has columns {list(rows[0])}, not this version's; move it away to start afresh")
    return [{key: _typed(value) for key, value in row.items()} for row in rows]


def _typed(cell: str) -> Any:
    if cell in ("True", "False"):
        return cell == "True"
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def _earlier_runs(path: Path) -> list[dict[str, Any]]:
    """The calls whose rows the CSV keeps, oldest first: each one's command, date, machine and checkpoints."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    latest = {"command": earlier["command"], "created": earlier["created"], "wall_s": earlier["wall_s"],
              "device": earlier["environment"].get("device"), "ckpt": earlier["config"]["ckpt"]}
    return [*earlier.get("earlier_runs", []), latest]


def _write(path: Path, kind: type, items: list) -> Path:
    columns = [f.name for f in kind.__dataclass_fields__.values()]
    write_csv(path, columns, (as_row(item) for item in items))
    return path


def _record(path: Path, cfg: DictConfig, command: str, created: str, start: float, files: list[Path],
            earlier: list[dict[str, Any]] = ()) -> Path:
    extra = {"earlier_runs": list(earlier)} if earlier else {}
    write_json_atomic(path, {"command": command, **extra, "created": created, "finished": now(),
                             "wall_s": round(time.perf_counter() - start, 1), "threads": torch.get_num_threads(),
                             "config": OmegaConf.to_container(cfg.sparse, resolve=True),
                             "environment": environment(), "files": [p.name for p in files]})
    return path


def summary_table(rows: list[DMin], fits: list[Fit], criteria: dict[str, list[float]]) -> str:
    """Mean smallest d per (method, target) and length for each criterion's first threshold, and the fits."""
    lengths = sorted({r.length for r in rows})
    lines = []
    for metric, thresholds in criteria.items():
        lines += ["", f"smallest d with {metric} <= {thresholds[0]} (mean over seeds; '-': not reached by d = L "
                      "or the grid's end)",
                  f"{'method':<11}{'target':<17}" + "".join(f"{'L=' + str(n):>9}" for n in lengths)]
        groups: dict[tuple, dict[int, list]] = {}
        for r in rows:
            if r.metric == metric and r.threshold == thresholds[0]:
                groups.setdefault((r.method, r.pattern, r.nonzeros), {}).setdefault(r.length, []).append(r.d_min)
        for (method, pattern, s), by_length in groups.items():
            cells = [by_length.get(n) for n in lengths]
            lines.append(f"{method:<11}{f'{pattern} s={s}':<17}" + "".join(
                f"{'' if v is None else '-' if None in v else f'{sum(v) / len(v):.1f}':>9}" for v in cells))
    lines += ["", "fits d_min = a + b ln L (lengths where every seed reached the threshold)",
              f"{'method':<11}{'target':<17}{'criterion':<16}{'b':>8}{'a':>9}{'r2':>7}{'p':>7}  lengths"]
    for f in fits:
        lines.append(f"{f.method:<11}{f'{f.pattern} s={f.nonzeros}':<17}{f'{f.metric}<={f.threshold:g}':<16}"
                     f"{f.slope:>8.2f}{f.intercept:>9.2f}{f.r2:>7.3f}{f.exponent:>7.2f}  "
                     + " ".join(map(str, f.lengths)))
    return "\n".join(lines)


def sparsity_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'checkpoint':<40}{'layer':>6}{'head':>5}{'keys':>7}{'k med':>7}{'k p90':>7}{'col p90':>8}"
             f"{'eff med':>8}  in regime"]
    for r in rows:
        lines.append(f"{Path(r['checkpoint']).name[-40:]:<40}{r['layer']:>6}{r['head']:>5}{r['mean_length']:>7.0f}"
                     f"{r['k_median']:>7.0f}{r['k_p90']:>7.0f}{r['column_p90']:>8.0f}{r['effective_median']:>8.1f}"
                     f"  {'yes' if r['in_regime'] else 'no'}")
    return "\n".join(lines)
