"""Speed and memory relative to softmax, in the manner of LRA Table 2 (steps/s and peak memory at 1K..4K on Text).

Two sources, never mixed in one ratio:
- the benchmark's CSVs (``results/bench/<device>/*.csv``, columns in ``lra/results/bench.py``): the ``model``
  level with ``fwd_bwd`` is a whole training step of LRA's Text model at each length, as LRA timed it;
- the training runs' ``efficiency`` fields (steps/s and peak memory over the measured steps of a real run).
A ratio compares a backend with softmax on the same device and settings only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from lra.results.bench import BenchPoint
from lra.results.table import Table
from lra.tables import published
from lra.tables.cells import AccuracyResult
from lra.tables.published import TASK_TITLES

TABLE2_LENGTHS = (1000, 4096)  # the span LRA Table 2 reports (1K..4K)
@dataclass(frozen=True)
class Entry:
    """One measured (backend, length) under one setting, with its ratios to softmax there."""

    source: str  # bench | training
    device: str
    setting: str
    name: str  # the bench series, or the attention of the training runs
    length: int | None
    status: str
    steps_per_s: float | None
    peak_mib: float | None
    speed_vs_softmax: float | None
    memory_vs_softmax: float | None
    runs: int | None = None
    tokens_per_s: float | None = None
    memory_kind: str = "cuda_max_allocated"
    backend: str = ""  # the attention backend the series or the runs use


FIELDS = ("source", "device", "setting", "name", "length", "status", "steps_per_s", "speed_vs_softmax",
          "peak_mib", "memory_vs_softmax", "runs", "tokens_per_s", "memory_kind", "backend")


def _divide(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def bench_entries(points: list[BenchPoint]) -> list[Entry]:
    """Training steps (model level, fwd_bwd) at 1K..4K, each with its ratio to softmax at the same length."""
    entries = []
    picked = [p for p in points if p.level == "model" and p.mode == "fwd_bwd"
              and TABLE2_LENGTHS[0] <= p.length <= TABLE2_LENGTHS[1]]
    baselines = {(p.setting, p.length): p for p in picked if p.backend == "softmax" and p.status == "ok"}
    for p in sorted(picked, key=lambda p: (p.setting, p.backend != "softmax", p.series, p.length)):
        base = baselines.get((p.setting, p.length))
        _, _, _, dtype, batch, heads, head_dim = p.setting
        setting = f"training step (model level), {dtype}, batch {batch}, {heads} heads × {head_dim}"
        ok = p.status == "ok"
        entries.append(Entry("bench", p.device, setting, p.series, p.length, p.status,
                             p.steps_per_s, p.peak_mib if ok else None,
                             _divide(p.steps_per_s, base.steps_per_s if base else None),
                             _divide(p.peak_mib if ok else None, base.peak_mib if base else None),
                             backend=p.backend))
    return entries


def training_entries(result: AccuracyResult) -> list[Entry]:
    """Mean steps/s and peak memory of the counted runs per (device, task, preset + changes, length, backend)."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for row in result.rows:
        for cell in row.cells.values():
            changes = "; ".join(d for d in cell.departure.differences if not d.startswith("attention."))
            setting = f"{TASK_TITLES[cell.column]}, preset {cell.preset}" + (f" ({changes})" if changes else "")
            for run in cell.counted:
                key = (run.device, setting, run.sequence_length, run.efficiency.get("memory_kind", "?"))
                groups.setdefault(key, {}).setdefault(run.attention, []).append(run.efficiency)
    entries = []
    for (device, setting, length, kind), by_attention in sorted(groups.items(), key=str):
        base = by_attention.get("softmax", [])
        base_speed, base_memory = _mean(_alone(base), "steps_per_s"), _mean(base, "peak_memory_mib")
        for attention in sorted(by_attention, key=lambda a: (a != "softmax", a)):
            measured = by_attention[attention]
            speed, memory = _mean(_alone(measured), "steps_per_s"), _mean(measured, "peak_memory_mib")
            entries.append(Entry("training", device, setting, attention, length, "ok", speed, memory,
                                 _divide(speed, base_speed), _divide(memory, base_memory), len(measured),
                                 _mean(_alone(measured), "tokens_per_s"), kind, attention))
    return entries


def _alone(efficiencies: list[dict]) -> list[dict]:
    """The measurements whose speed means something: CPU runs, and GPU runs known to have had the GPU alone.

    Peak memory is per process, so every run counts for it; a GPU run without ``device_processes`` (older
    records) or with other processes on its GPU has no speed here.
    """
    return [e for e in efficiencies if e.get("memory_kind") == "cpu_peak_rss" or e.get("device_processes") == 1]


def _mean(efficiencies: list[dict], key: str) -> float | None:
    values = [e[key] for e in efficiencies if e.get(key) is not None]
    return statistics.fmean(values) if values else None


def _with_ratio(value: float | None, ratio: float | None, digits: str = ".3g") -> str:
    if value is None:
        return "—"
    return f"{value:{digits}}" + ("" if ratio is None else f" ({ratio:.2f}×)")


def bench_tables(entries: list[Entry]) -> list[Table]:
    """One table per device and setting: rows series, columns steps/s and peak MiB at each length."""
    tables = []
    for device, setting in dict.fromkeys((e.device, e.setting) for e in entries if e.source == "bench"):
        group = [e for e in entries if e.source == "bench" and (e.device, e.setting) == (device, setting)]
        lengths = sorted({e.length for e in group})
        by_key = {(e.name, e.length): e for e in group}
        table = Table(f"Speed and memory vs softmax (benchmark): {device}, {setting}",
                      ["Series", *[f"steps/s @{n}" for n in lengths], *[f"peak MiB @{n}" for n in lengths]])
        table.caption = ("From lra.bench (results/bench/): one training step of LRA's Text model (4 layers, MLP "
                         "1024, byte tokens) at each length; in brackets the ratio to softmax at that length "
                         "(speed: above 1 is faster; memory: below 1 is smaller), as LRA Table 2 presents them.")
        for name in dict.fromkeys(e.name for e in group):
            points = [by_key.get((name, n)) for n in lengths]
            speeds = [_bench_cell(e, e.steps_per_s if e else None, e.speed_vs_softmax if e else None)
                      for e in points]
            memories = [_bench_cell(e, e.peak_mib if e else None, e.memory_vs_softmax if e else None, ".0f")
                        for e in points]
            table.add([name, *speeds, *memories], "ours")
        tables.append(table)
    return tables


def _bench_cell(entry: Entry | None, value: float | None, ratio: float | None, digits: str = ".3g") -> str:
    if entry is None:
        return "not run"
    if entry.status != "ok":
        return entry.status.upper()
    return _with_ratio(value, ratio, digits)


def training_table(entries: list[Entry]) -> Table:
    table = Table("Speed and memory of the training runs",
                  ["Device", "Setting", "Length", "Attention", "Runs", "steps/s (× softmax)", "tokens/s (real)",
                   "peak MiB (× softmax)", "memory kind"])
    table.caption = ("From the run records' efficiency fields (the steps after measure_warmup_steps). Peak memory "
                     "by its kind: cuda_max_allocated_training, CUDA max allocated over the training steps; "
                     "cuda_max_allocated (older records), the same over the whole fit, "
                     "validation at its own batch size included; cpu_peak_rss, the process's peak RSS. Ratios "
                     "to softmax on the same device, task, preset (with the same changes), length and memory kind. "
                     "Speeds only from runs that had their GPU to themselves (efficiency.device_processes = 1); "
                     "memory from every run.")
    for e in (e for e in entries if e.source == "training"):
        table.add([e.device, e.setting, str(e.length), e.name, str(e.runs), _with_ratio(e.steps_per_s,
                   e.speed_vs_softmax, ".4g"), _with_ratio(e.tokens_per_s, None, ".4g"),
                   _with_ratio(e.peak_mib, e.memory_vs_softmax, ".0f"), e.memory_kind], "ours")
    return table


def published_table2() -> Table:
    source = published.LRA_TABLE2
    lengths = [f"{n // 1024}K" for n in source.lengths]
    table = Table("LRA Table 2 (published): steps/s and peak memory (GB per TPU device) on Text",
                  ["Model", *[f"steps/s {n}" for n in lengths], *[f"memory GB {n}" for n in lengths]])
    table.caption = f"{source.citation}; read from {source.source}. Setup: {source.setup}."
    base = source.steps_per_s["Transformer"]
    for model, speeds in source.steps_per_s.items():
        cells = [f"{s}" if model == "Transformer" else f"{s} ({s / b:.1f}×)" for s, b in zip(speeds, base,
                                                                                              strict=True)]
        table.add([model, *cells, *[f"{m}" for m in source.memory_gb[model]]], "published")
    table.notes = list(source.notes)
    return table


def entry_rows(entries: list[Entry]) -> list[list[object]]:
    return [[getattr(e, name) for name in FIELDS] for e in entries]
