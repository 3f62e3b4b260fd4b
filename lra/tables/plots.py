"""Figures of the report as inline PNG data URIs (matplotlib, no display, no files)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from lra.tables import published  # noqa: E402
from lra.tables.accuracy import AccuracyResult, lra_reference_row  # noqa: E402
from lra.tables.efficiency import BenchPoint  # noqa: E402
from lra.tables.published import TASK_TITLES, TASKS  # noqa: E402

Figure = tuple[str, str]  # (title, data URI)
MAX_BENCH_FIGURES = 8
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


def data_uri(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def accuracy_figures(result: AccuracyResult) -> list[Figure]:
    """Per family of presets: bars of mean test accuracy per task and backend (error bars: std over seeds);
    black ticks: the LRA Table 1 value each backend is compared with."""
    figures = []
    for family in dict.fromkeys(row.family for row in result.rows):
        rows = [row for row in result.rows if row.family == family and not row.label and row.cells]
        columns = [t for t in TASKS if any(t in row.cells and row.cells[t].counted for row in rows)]
        if not columns:
            continue
        figure, axis = plt.subplots(figsize=(2.2 + 1.5 * len(columns), 3.8), layout="constrained")
        width = 0.8 / max(1, len(rows))
        for i, row in enumerate(rows):
            xs, means, stds, lra = [], [], [], []
            for j, task in enumerate(columns):
                cell = row.cells.get(task)
                if cell is not None and cell.counted:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    means.append(cell.mean)
                    stds.append(cell.std or 0.0)
                    lra.append(published.LRA_TABLE1.rows[lra_reference_row(row.attention)][task])
            axis.bar(xs, means, width, yerr=stds, capsize=2, label=row.attention)
            ticks = [(x, value) for x, value in zip(xs, lra, strict=True) if isinstance(value, float)]
            if ticks:
                axis.scatter(*zip(*ticks, strict=True), marker="_", s=200, color="black", zorder=3)
        axis.set_xticks(range(len(columns)), [TASK_TITLES[t] for t in columns])
        axis.set_ylabel(f"test accuracy (%), {result.checkpoint} checkpoint")
        axis.set_title(f"{family}/* presets (black: LRA Table 1)")
        axis.legend(fontsize=8, ncols=2)
        figures.append((f"Accuracy per backend and task, {family} presets", data_uri(figure)))
    return figures


def curve_figures(result: AccuracyResult) -> list[Figure]:
    """Validation accuracy against step, one panel per task, one colour per backend, one line per run."""
    panels: dict[str, list] = {}
    for row in result.rows:
        for column, cell in row.cells.items():
            for run in cell.counted:
                points = [(p["step"], 100 * p["val/acc"]) for p in run.history if p.get("val/acc") is not None]
                if points:
                    panels.setdefault(column, []).append((row, run, points))
    if not panels:
        return []
    columns = [t for t in TASKS if t in panels]
    figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), squeeze=False,
                                layout="constrained")
    colours = {}
    for axis, column in zip(axes[0], columns, strict=True):
        for row, _run, points in panels[column]:
            colour = colours.setdefault(row.attention, f"C{len(colours) % 10}")
            axis.plot(*zip(*points, strict=True), color=colour, linestyle="--" if row.label else "-", linewidth=1,
                      label=row.attention)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(unique.values(), unique.keys(), fontsize=7)
        axis.set_title(TASK_TITLES[column])
        axis.set_xlabel("step")
        axis.set_ylabel("validation accuracy (%)")
    return [("Training curves (validation accuracy; dashed: runs that depart from the preset)", data_uri(figure))]


def bench_figures(points: list[BenchPoint]) -> list[Figure]:
    """Time per step and peak memory against length, log-log, one line per series; at most a few settings,
    the whole-model training step first."""
    order = {("model", "fwd_bwd"): 0, ("core", "fwd_bwd"): 1, ("layer", "fwd_bwd"): 2}
    settings = sorted({p.setting for p in points}, key=lambda s: (order.get((s[1], s[2]), 9), s))
    figures = []
    for setting in settings[:MAX_BENCH_FIGURES]:
        device, level, mode, dtype, batch, heads, head_dim = setting
        group = [p for p in points if p.setting == setting and p.status == "ok"]
        if not group:
            continue
        figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
        for series in sorted({p.series for p in group}):
            line = sorted((p.length, p.time_ms, p.peak_mib) for p in group if p.series == series)
            time_axis.plot([n for n, _, _ in line], [t for _, t, _ in line], marker="o", markersize=3, label=series)
            memory = [(n, m) for n, _, m in line if m is not None]
            if memory:
                memory_axis.plot(*zip(*memory, strict=True), marker="o", markersize=3, label=series)
        for axis, label in ((time_axis, "time per step (ms)"), (memory_axis, "peak memory (MiB)")):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            for ticks in (axis.xaxis, axis.yaxis):  # plain numbers: mathtext tick labels are slow and unneeded
                ticks.set_major_formatter(PLAIN)
                ticks.set_minor_formatter(NullFormatter())
            axis.set_xlabel("sequence length N")
            axis.set_ylabel(label)
        time_axis.legend(fontsize=7)
        title = f"{device}: {level} {mode}, {dtype}, B={batch}, H={heads}, d={head_dim}"
        figure.suptitle(title, fontsize=9)
        figures.append((f"Throughput and memory vs length, {title}", data_uri(figure)))
    return figures
