"""Time and memory against sequence length, log-log, one line per series, crossovers marked.

Per pair (cheaper series, the series it beats), in the colour of the series beaten: a dashed vertical
line at the cost model's predicted crossover (``lra.bench.analytic``), a dotted one at the crossover
measured in this sweep (``lra.bench.crossover``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; the GPU machine has no display
import matplotlib.pyplot as plt  # noqa: E402

from lra.bench.report import CrossoverRow, Row, series_values, write_atomic  # noqa: E402
from lra.bench.series import Series  # noqa: E402

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
    write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
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
