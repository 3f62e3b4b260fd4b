"""Benchmark rows (``lra.results.bench``: the CSV columns) -> the tables of the markdown summary (and of wandb)."""

from __future__ import annotations

from dataclasses import dataclass

from lra.bench import analytic, reference
from lra.bench.crossover import Crossover, measured_crossover
from lra.bench.series import Series
from lra.results.bench import Row
from lra.results.table import Table, markdown

ROLE_PAIRS = (("efficient", "direct"), ("fused", "direct"), ("efficient", "softmax"), ("fused", "softmax"))


def groups(rows: list[Row]) -> list[tuple[int, str]]:
    """The (head_dim, dtype) combinations present, in the order they were run."""
    seen: dict[tuple[int, str], None] = {}
    for row in rows:
        seen.setdefault((int(row["head_dim"]), str(row["dtype"])), None)
    return list(seen)


def series_values(rows: list[Row], label: str, head_dim: int, dtype: str,
                  key: str) -> dict[int, float | None]:
    """length -> value for one series; None where the point did not run (oom, error, skipped)."""
    values: dict[int, float | None] = {}
    for row in rows:
        if row["series"] == label and row["head_dim"] == head_dim and row["dtype"] == dtype:
            ok = row["status"] == "ok" and row.get(key) is not None
            values[int(row["length"])] = float(row[key]) if ok else None
    return values


def _cell(row: Row) -> str:
    if row["status"] == "ok":
        memory = "" if row.get("peak_mib") is None else f" / {row['peak_mib']:.0f} MiB"
        return f"{row['time_ms']:.3g} ms{memory}"
    return {"oom": "OOM", "error": "error", "skipped": "skipped"}[str(row["status"])]


def sweep_table(rows: list[Row], series: list[Series], head_dim: int, dtype: str) -> Table:
    """Rows N, columns series: time and peak memory per point."""
    picked = [r for r in rows if r["head_dim"] == head_dim and r["dtype"] == dtype]
    lengths = sorted({int(r["length"]) for r in picked})
    by_key = {(r["series"], int(r["length"])): r for r in picked}
    body = [[n] + [_cell(by_key[s.label, n]) if (s.label, n) in by_key else "" for s in series]
            for n in lengths]
    errors = sorted({f"{r['series']} N={r['length']}: {r['note']}" for r in picked if r["status"] == "error"})
    caption = "Errors: " + "; ".join(errors) if errors else ""
    return Table(f"Time and peak memory, d={head_dim}, {dtype}", ["N", *[s.label for s in series]], body,
                 caption=caption)


@dataclass(frozen=True)
class CrossoverRow:
    cheaper: str
    than: str
    metric: str  # time | memory
    predicted: float | None
    measured: Crossover | None  # None: the metric was not measured (memory on CPU)


def crossovers(rows: list[Row], series: list[Series], head_dim: int, dtype: str,
               mode: str) -> list[CrossoverRow]:
    """Predicted (cost model) and measured crossovers for every TaylorShift/softmax pair present."""
    found = []
    for faster_role, slower_role in ROLE_PAIRS:
        for faster in [s for s in series if s.role() == faster_role]:
            for slower in [s for s in series if s.role() == slower_role]:
                for metric, key in (("time", "time_ms"), ("memory", "peak_mib")):
                    a = series_values(rows, faster.label, head_dim, dtype, key)
                    b = series_values(rows, slower.label, head_dim, dtype, key)
                    lengths = sorted(set(a) & set(b))
                    if not lengths:
                        continue
                    a_values, b_values = [a[n] for n in lengths], [b[n] for n in lengths]
                    measured = None
                    if any(x is not None for x in a_values + b_values):
                        measured = measured_crossover(lengths, a_values, b_values)
                    predicted = analytic.predicted_crossover(faster.cost_kind(), slower.cost_kind(), metric,
                                                             head_dim, mode)
                    if metric == "memory" and faster_role == "fused":
                        predicted = None  # the fused kernel holds O(N d): the entry model does not apply
                    found.append(CrossoverRow(faster.label, slower.label, metric, predicted, measured))
    return found


def crossover_table(rows: list[Row], series: list[Series], head_dim: int, dtype: str,
                    mode: str) -> Table | None:
    body = [[c.cheaper, c.than, c.metric, "—" if c.predicted is None else f"{c.predicted:.0f}",
             "not measured" if c.measured is None else c.measured.describe()]
            for c in crossovers(rows, series, head_dim, dtype, mode)]
    if not body:
        return None
    caption = ("N from which the first series is cheaper than the second. Predicted: the TaylorShift paper's "
               "cost model (lra/bench/analytic.py); measured: interpolated on the log-log sweep.")
    columns = ["cheaper", "than", "metric", "predicted N", "measured N"]
    return Table(f"Crossovers, d={head_dim}, {dtype}", columns, body, caption=caption)


def reference_table(rows: list[Row], series: list[Series]) -> Table | None:
    """Our core fwd+bwd bf16 points beside the reference figures at the same (d, N)."""
    setup = reference.REFERENCE_SETUP
    ours = [r for r in rows if all(r[key] == value for key, value in setup.items())]
    if not ours:
        return None
    keys = sorted({key for figures in reference.ATTENTION_CORE.values() for key in figures})
    by_key = {(r["series"], int(r["head_dim"]), int(r["length"])): r for r in ours}
    names = list(reference.ATTENTION_CORE)
    body = []
    for head_dim, length in keys:
        refs = [reference.ATTENTION_CORE[name].get((head_dim, length), "") for name in names]
        cells = ["OOM" if ref is None else (f"{ref[0]:.3g} ms / {ref[1]:.0f} MiB" if ref else "")
                 for ref in refs]
        mine = [_cell(by_key[s.label, head_dim, length]) if (s.label, head_dim, length) in by_key else ""
                for s in series]
        body.append([head_dim, length, *cells, *mine])
    caption = ("Reference: H100 80GB, torch 2.11, fwd+bwd of the attention core, B=32, H=4, bf16 "
               "(shared/README.md). Ours: this run.")
    return Table("Beside the reference figures", ["d", "N", *[f"ref: {n}" for n in names],
                                                   *[f"ours: {s.label}" for s in series]], body, caption=caption)


def throughput_table(rows: list[Row], series: list[Series], head_dim: int, dtype: str) -> Table:
    """Layer/model levels, as LRA Table 2: speed and memory relative to softmax, with LRA's ratios."""
    baseline = next((s.label for s in series if s.backend == "softmax"), None)
    picked = [r for r in rows if r["head_dim"] == head_dim and r["dtype"] == dtype]
    by_key = {(r["series"], int(r["length"])): r for r in picked}
    lra_rows = {backend: (name, figures) for name, (backend, figures) in reference.LRA_TABLE2.items()}
    lra_base = reference.LRA_TABLE2["Transformer"][1]
    body = []
    for s in series:
        for n in sorted({int(r["length"]) for r in picked}):
            row = by_key.get((s.label, n))
            if row is None:
                continue
            base = by_key.get((baseline, n)) if baseline else None
            speed, memory = _ratio(base, row, "time_ms"), _ratio(row, base, "peak_mib")
            lra_name, figures = lra_rows.get(s.backend, ("", {}))
            lra = figures.get(n)
            lra_speed = f"{lra[0] / lra_base[n][0]:.2f}x" if lra and n in lra_base else ""
            lra_memory = f"{lra[1] / lra_base[n][1]:.2f}x" if lra and n in lra_base else ""
            ok = row["status"] == "ok"
            body.append([s.label, n,
                         f"{1000 / row['time_ms']:.3g}" if ok else _cell(row), speed,
                         f"{row['tokens_per_s']:.3g}" if ok else "",
                         f"{row['peak_mib']:.0f}" if ok and row.get("peak_mib") is not None else "", memory,
                         lra_speed, lra_memory, lra_name])
    caption = ("Speed and memory relative to softmax attention at the same N (LRA Table 2's presentation); "
               "LRA columns: the paper's ratios to its Transformer (TPU v3, Text, batch 32).")
    return Table(f"Throughput, d={head_dim}, {dtype}",
                 ["series", "N", "steps/s", "speed vs softmax", "tokens/s", "peak MiB", "memory vs softmax",
                  "LRA speed vs Transformer", "LRA memory vs Transformer", "LRA model"], body, caption=caption)


def _ratio(numerator: Row | None, denominator: Row | None, key: str) -> str:
    if not numerator or not denominator or numerator["status"] != "ok" or denominator["status"] != "ok":
        return ""
    if numerator.get(key) is None or denominator.get(key) is None or not denominator[key]:
        return ""
    return f"{float(numerator[key]) / float(denominator[key]):.2f}x"


def render_markdown(title: str, header: list[str], tables: list[Table]) -> str:
    """The summary: a title, the setup as a list, then each table with its caption below it."""
    tables_text = [markdown(table, caption_first=False) for table in tables]
    return "\n".join([f"# {title}", "", *[f"- {line}" for line in header], "", *tables_text])
