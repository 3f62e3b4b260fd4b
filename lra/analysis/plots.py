"""The analysis's figures, written as PNG files (matplotlib, no display)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

from lra.analysis.sweep import DMin, ErrorPoint, Fit  # noqa: E402
from lra.results.files import write_figure  # noqa: E402

METHOD_STYLES = {"projection": ("--", "s"), "solve": ("-", "o"), "learned": (":", "^")}
LABELS = {"tv": "mean total variation", "max_abs": "max |error|", "ratio": "ratio error (log ratio, leak)"}


def save(figure: plt.Figure, path: Path) -> Path:
    write_figure(path, figure, dpi=110)
    plt.close(figure)
    return path


def error_curves(points: Sequence[ErrorPoint], metric: str, thresholds: Sequence[float], path: Path) -> Path:
    """Error against d for the random targets: one panel per s, one colour per L, one line style per method
    (mean over seeds)."""
    curves: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        if p.metric == metric and p.pattern == "random":
            curves[(p.nonzeros, p.method, p.length)][p.dim].append(p.error)
    sizes = sorted({key[0] for key in curves})
    lengths = sorted({key[2] for key in curves})
    colours = dict(zip(lengths, plt.cm.viridis([i / max(1, len(lengths) - 1) for i in range(len(lengths))]),
                       strict=True))
    figure, axes = plt.subplots(1, max(1, len(sizes)), figsize=(3.4 * max(1, len(sizes)), 3.4), sharey=True,
                                layout="constrained", squeeze=False)
    for axis, s in zip(axes[0], sizes, strict=False):
        for (size, method, length), by_dim in sorted(curves.items()):
            if size != s:
                continue
            dims = sorted(by_dim)
            values = [max(sum(by_dim[d]) / len(by_dim[d]), 1e-12) for d in dims]
            style, marker = METHOD_STYLES.get(method, ("-", "."))
            axis.plot(dims, values, style, marker=marker, markersize=3, color=colours[length],
                      label=f"{method} L={length}")
        for threshold in thresholds:
            axis.axhline(threshold, color="grey", linewidth=0.8)
        dims = sorted({d for key, by_dim in curves.items() if key[0] == s for d in by_dim})
        axis.set(xscale="log", yscale="log", title=f"random, s={s}", xlabel="d")
        labelled = [d for d in dims if d & (d - 1) == 0]  # powers of 2 labelled, the grid's other d as ticks
        axis.set_xticks(labelled, [str(d) for d in labelled], fontsize=7)
        axis.set_xticks([d for d in dims if d not in labelled], minor=True)
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0][0].set_ylabel(f"{LABELS.get(metric, metric)} (floor 1e-12)")
    axes[0][-1].legend(fontsize=6, ncols=1, loc="lower left")
    figure.suptitle(f"Fixed attention vs sparse targets: {LABELS.get(metric, metric)} against d (grey: threshold)")
    return save(figure, path)


def d_min_plot(rows: Sequence[DMin], fits: Sequence[Fit], criteria: dict[str, list[float]], path: Path) -> Path:
    """The smallest d reaching each threshold against ln L (mean over seeds, lengths where every seed reached
    it), random targets as lines with their fits, structured ones as open markers."""
    metrics = list(criteria)
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2, 3.8), layout="constrained",
                                squeeze=False)
    sizes = sorted({r.nonzeros for r in rows})
    colours = dict(zip(sizes, plt.cm.plasma([0.1 + 0.8 * i / max(1, len(sizes) - 1) for i in range(len(sizes))]),
                       strict=True))
    means = _mean_d_min(rows)
    for axis, metric in zip(axes[0], metrics, strict=True):
        threshold = criteria[metric][0]
        for (method, pattern, s, m, t), by_length in sorted(means.items()):
            if m != metric or t != threshold:
                continue
            xs = [math.log(n) for n in by_length]
            style, marker = METHOD_STYLES.get(method, ("-", "."))
            if pattern == "random":
                axis.plot(xs, list(by_length.values()), marker + style, color=colours[s], markersize=4,
                          linewidth=0.4, label=f"{method} s={s}")
            else:
                axis.plot(xs, list(by_length.values()), marker, markerfacecolor="none", color=colours[s],
                          markersize=7, label=f"{method} {pattern} s={s}")
        for fit in fits:
            if fit.metric == metric and fit.threshold == threshold and fit.pattern == "random":
                xs = [math.log(n) for n in fit.lengths]
                axis.plot(xs, [fit.intercept + fit.slope * x for x in xs], METHOD_STYLES[fit.method][0],
                          color=colours[fit.nonzeros], linewidth=1.6, alpha=0.5)
        lengths = sorted({r.length for r in rows})
        axis.set(yscale="log", xlabel="L (axis: ln L)", ylabel="smallest d",
                 title=f"{LABELS.get(metric, metric)} <= {threshold}")
        axis.set_xticks([math.log(n) for n in lengths], [str(n) for n in lengths])
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    handles = {label: handle for axis in axes[0] for handle, label in zip(*axis.get_legend_handles_labels(),
                                                                          strict=True)}
    figure.legend(handles.values(), handles.keys(), fontsize=6.5, loc="outside right center")
    figure.suptitle("Smallest d against ln L (thick lines: least-squares d = a + b ln L; open markers: structured)")
    return save(figure, path)


def _mean_d_min(rows: Sequence[DMin]) -> dict[tuple, dict[int, float]]:
    groups: dict[tuple, dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r.method, r.pattern, r.nonzeros, r.metric, r.threshold)][r.length].append(r.d_min)
    return {key: {n: sum(v) / len(v) for n, v in sorted(by_length.items()) if None not in v}
            for key, by_length in groups.items()}


def sparsity_plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per checkpoint: median and 90th percentile of k (keys holding the mass) per layer and head, with the
    regime's bound and the mean number of real keys."""
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
    figure, axes = plt.subplots(1, len(checkpoints), figsize=(4.5 * len(checkpoints), 3.6), layout="constrained",
                                squeeze=False)
    for axis, checkpoint in zip(axes[0], checkpoints, strict=True):
        mine = [r for r in rows if r["checkpoint"] == checkpoint]
        heads = max(r["head"] for r in mine) + 1
        xs = [r["layer"] + (r["head"] + 0.5) / heads - 0.5 for r in mine]
        axis.scatter(xs, [r["k_median"] for r in mine], s=12, label="median k")
        axis.scatter(xs, [r["k_p90"] for r in mine], s=12, marker="^", label="p90 k")
        axis.scatter(xs, [r["column_p90"] for r in mine], s=12, marker="x", label="p90 column load")
        axis.axhline(mine[0]["max_nonzeros"], color="grey", linewidth=0.8, label="regime bound")
        axis.axhline(sum(r["mean_length"] for r in mine) / len(mine), color="black", linestyle=":", linewidth=0.8,
                     label="mean real keys")
        first = mine[0]
        axis.set(yscale="log", xlabel="layer (heads side by side)", ylabel=f"keys for {first['mass']:.0%} of a row",
                 title=f"{first['task']} / {first['attention']}, step {first['step']}",
                 xticks=range(mine[-1]["layer"] + 1))
        axis.legend(fontsize=6)
    return save(figure, path)
