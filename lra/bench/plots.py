"""Time and memory against sequence length, log-log, one line per series, crossovers marked.

Per pair (cheaper series, the series it beats), in the colour of the series beaten: a dashed vertical
line at the cost model's predicted crossover (``lra.bench.analytic``), a dotted one at the crossover
measured in this sweep (``lra.bench.crossover``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; the GPU machine has no display
import matplotlib.pyplot as plt  # noqa: E402

from lra.bench.report import CrossoverRow, series_values  # noqa: E402
from lra.bench.series import Series  # noqa: E402
from lra.results.bench import Row  # noqa: E402
from lra.results.files import write_figure  # noqa: E402

PANELS = (("time", "time_ms", "time per step (ms)"), ("memory", "peak_mib", None))


def plot_group(path: Path, rows: list[Row], series: list[Series], head_dim: int, dtype: str, title: str,
               crossings: list[CrossoverRow], memory_label: str) -> None:
    """One figure for one (d, dtype): time (left) and peak memory (right) against N."""
    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.9, wspace=0.18)
    lengths = sorted({int(r["length"]) for r in rows if r["head_dim"] == head_dim and r["dtype"] == dtype})
    for axis, (metric, key, ylabel) in zip(axes, PANELS, strict=True):
        colours = {}
        for s in series:
            values = series_values(rows, s.label, head_dim, dtype, key)
            points = sorted((n, v) for n, v in values.items() if v is not None and v > 0)
            if points:
                (line,) = axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=s.label)
                colours[s.label] = line.get_color()
        if colours:
            _mark_crossings(axis, [c for c in crossings if c.metric == metric], colours)
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "not measured (CPU run)" if metric == "memory" else "no successful points",
                      transform=axis.transAxes, ha="center")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        if lengths:
            axis.set_xlim(lengths[0] / 1.2, lengths[-1] * 1.2)
        axis.set_xlabel("sequence length N")
        axis.set_ylabel(ylabel or memory_label)
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    write_figure(path, figure, dpi=120)
    plt.close(figure)


def _mark_crossings(axis, crossings: list[CrossoverRow], colours: dict[str, str]) -> None:
    for c in crossings:
        colour = colours.get(c.than, "grey")
        if c.predicted is not None:
            parity = "FLOPs" if c.metric == "time" else "memory"
            axis.axvline(c.predicted, linestyle="--", linewidth=1, color=colour,
                         label=f"predicted {parity} parity {c.cheaper} / {c.than}: N={c.predicted:.0f}")
        if c.measured is not None and c.measured.estimate is not None:
            text = f"measured: {c.cheaper} cheaper than {c.than} from N={c.measured.estimate:.0f}"
            axis.axvline(c.measured.estimate, linestyle=":", linewidth=1.5, color=colour, label=text)


def plot_loop(path: Path, medians: dict[str, dict[str, float]], title: str) -> None:
    """Grouped bars, one group per preset: each runner's steps/s relative to the lean loop (the bare loop
    where no lean runner ran), its absolute steps/s written on the bar."""
    presets = list(medians)
    runners = list(dict.fromkeys(runner for by_runner in medians.values() for runner in by_runner))
    reference = "lean" if all("lean" in by_runner for by_runner in medians.values()) else "bare"
    width = 0.8 / max(len(runners), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.6 * len(presets) * max(len(runners), 1) / 3), 4.8))
    for index, runner in enumerate(runners):
        xs, heights, labels = [], [], []
        for position, preset in enumerate(presets):
            ms, base = medians[preset].get(runner), medians[preset].get(reference)
            if ms is None or base is None:
                continue
            xs.append(position + (index - (len(runners) - 1) / 2) * width)
            heights.append(base / ms)
            labels.append(f"{1000 / ms:.1f}")
        bars = axis.bar(xs, heights, width=width * 0.95, label=runner)
        axis.bar_label(bars, labels=labels, fontsize=6, padding=1)
    axis.axhline(1.0, color="grey", linewidth=0.8)
    names = [textwrap.shorten(p.removeprefix("preset="), 90, placeholder=" ...") for p in presets]
    axis.set_xticks(range(len(presets)), [textwrap.fill(n, 30) for n in names], fontsize=6)
    axis.set_ylabel(f"steps/s relative to the {reference} loop (bars: steps/s)")
    axis.set_xlabel("task preset")
    axis.legend(fontsize=7)
    axis.grid(True, axis="y", alpha=0.3)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    write_figure(path, figure, dpi=120)
    plt.close(figure)
