"""Figures of the report (matplotlib, no display): PNG bytes, embedded in the page as data URIs.

Every figure colours a backend the same way (``BACKEND_COLOURS``, the one list of colours), and draws a line only
through two points or more.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from PIL import Image  # noqa: E402

from lra.results.bench import BenchPoint  # noqa: E402
from lra.tables import published  # noqa: E402
from lra.tables.compact import CompactRow  # noqa: E402
from lra.tables.efficiency import Entry  # noqa: E402
from lra.tables.published import TASK_TITLES, TASKS  # noqa: E402

Figure = tuple[str, str]  # (title, data URI)
MAX_BENCH_FIGURES = 8
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
LENGTH = FuncFormatter(lambda n, _: f"{n / 1024:g}K" if n >= 8192 else f"{n:g}")  # 16K, not 16384, where ticks crowd
TIMES = FuncFormatter(lambda value, _: f"{value:g}×")

# One colour per backend in every figure; the LRA models share the colour of the backend compared with them.
BACKEND_COLOURS = {
    "softmax": "#1f77b4", "linear": "#2ca02c", "performer": "#d62728", "taylorshift": "#9467bd",
    "elementwise": "#ff7f0e", "nystrom": "#8c564b", "linformer": "#e377c2", "local": "#17becf",
    "reformer": "#bcbd22", "sinkhorn": "#7f7f7f", "synthesizer": "#aec7e8", "bigbird": "#98df8a",
    "longformer": "#ffbb78", "sparse": "#c5b0d5",
}
SPARE_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354")
LRA_MODEL_BACKEND = {model: backend for backend, model in published.LRA_ROW_FOR_BACKEND.items()}
PUBLISHED_GREY = "#9a9a9a"
FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P")  # ours: one marker shape per family of presets, in row order
MEMORY_AREA = 130.0  # marker area (pt²) of memory equal to softmax's
MEMORY_CAP = 6.0  # larger memory ratios are drawn at this size (the label gives the ratio)
CURVE_STYLES = {False: "-", True: "--"}  # preset as published | a config change


def backend_colour(backend: str) -> str:
    """The backend's fixed colour; a backend not listed gets a spare colour chosen by its name (stable)."""
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    return SPARE_COLOURS[int(hashlib.sha256(backend.encode()).hexdigest(), 16) % len(SPARE_COLOURS)]


def png_bytes(figure: plt.Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})  # no version: same bytes, same file
    plt.close(figure)
    return palette_png(buffer.getvalue())


def palette_png(png: bytes) -> bytes:
    """The PNG with its colours reduced to a 256-entry palette: plots have few colours, and the report, which
    holds its figures inside, came to over 2 MiB in full colour."""
    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------- LRA Figure 3


@dataclass
class Figure3:
    png: bytes
    title: str
    caption: str


def speed_group(entries: list[Entry], length: int, device: str | None) -> list[Entry]:
    """The benchmark's training steps at ``length`` on one device and setting: the asked device, else the one
    with the most series measured there."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        if entry.source == "bench" and entry.length == length and (device is None or entry.device == device):
            groups.setdefault((entry.device, entry.setting), []).append(entry)
    if not groups:
        return []
    return max(groups.values(), key=lambda group: (sum(e.status == "ok" for e in group), group[0].device))


@dataclass(frozen=True)
class Point:
    """One marker of the Figure 3 view: accuracy (%) against speed and peak memory, both ÷ softmax's."""

    label: str
    ours: bool
    colour: str
    speed: float
    memory: float
    accuracy: float
    std: float | None = None
    family: str = ""


def published_points(task: str, length: int) -> list[Point]:
    """LRA Table 1 accuracy (or its Avg) against LRA Table 2 steps/s and memory at ``length``, divided by the
    Transformer's; each model coloured as the backend of ours compared with it, grey if none."""
    table2 = published.LRA_TABLE2
    i = table2.lengths.index(length)
    base_speed, base_memory = table2.steps_per_s["Transformer"][i], table2.memory_gb["Transformer"][i]
    points = []
    for model, speeds in table2.steps_per_s.items():
        accuracy = (published.LRA_TABLE1.printed_avg[model] if task == "avg"
                    else published.LRA_TABLE1.rows[model][task])
        colour = backend_colour(LRA_MODEL_BACKEND[model]) if model in LRA_MODEL_BACKEND else PUBLISHED_GREY
        if isinstance(accuracy, float):
            points.append(Point(model, False, colour, speeds[i] / base_speed, table2.memory_gb[model][i] / base_memory,
                                accuracy))
    return points


def our_points(task: str, rows: list[CompactRow], group: list[Entry]) -> list[Point]:
    """Each row's accuracy for ``task`` (its cell's mean and std, or its Avg) at the speed and memory of every
    benchmarked implementation of its backend."""
    points = []
    for row in rows:
        cell = row.counted(task) if task != "avg" else None
        mean, std = (row.average, None) if task == "avg" else (cell.mean, cell.std) if cell else (None, None)
        if mean is None:
            continue
        mark = "" if cell is None else ("†" if cell.departure.differences else "") + (
            "‡" if cell.departure.shortened else "")
        family = "" if row.family == "lra" else f" ({row.family})"
        for entry in (e for e in group if e.backend == row.attention and e.status == "ok"):
            capped = f", {entry.memory_vs_softmax:.0f}× memory" if entry.memory_vs_softmax > MEMORY_CAP else ""
            points.append(Point(f"{entry.name}{family}{mark}{capped}", True, backend_colour(row.attention),
                                entry.speed_vs_softmax, entry.memory_vs_softmax, mean, std, row.family))
    return points


def _area(memory: float) -> float:
    return MEMORY_AREA * min(memory, MEMORY_CAP)


def _place_labels(axis: plt.Axes, labels: list[tuple[float, float, float, str, dict]]) -> None:
    """Each label right of its marker (past its radius), moved down until it overlaps no marker and no label
    placed before."""
    renderer = axis.figure.canvas.get_renderer()

    def radius(area: float) -> float:
        return np.sqrt(area) / 2 * axis.figure.dpi / 72  # marker area is in pt², offsets in pixels

    placed = []
    for x, y, area, _, _ in labels:
        px, py = axis.transData.transform((x, y))
        placed.append(Bbox.from_extents(px - radius(area), py - radius(area), px + radius(area), py + radius(area)))
    for x, y, area, text, style in sorted(labels, key=lambda item: (-item[1], item[0])):
        for dx, dy in _label_offsets(radius(area)):
            note = axis.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset pixels", fontsize=7, zorder=4,
                                 ha="left" if dx > 0 else "right", va="center", **style)
            box = note.get_window_extent(renderer)
            inside = Bbox.union([box, axis.bbox]).bounds == axis.bbox.bounds
            if inside and not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:  # nowhere free: beside the marker, overlapping
            note = axis.annotate(text, (x, y), xytext=(radius(area) + 3, 0), textcoords="offset pixels", fontsize=7,
                                 zorder=4, va="center", **style)
            box = note.get_window_extent(renderer)
        placed.append(box)


def _label_offsets(radius: float) -> list[tuple[float, float]]:
    """Where a label may go, nearest first: right of the marker, left of it, then a little higher or lower."""
    offsets = []
    for step in range(16):
        for dy in dict.fromkeys((-4.0 * step, 4.0 * step)):
            offsets += [(radius + 3, dy), (-radius - 3, dy)]
    return offsets


def _figure3_panel(axis: plt.Axes, task: str, rows: list[CompactRow], group: list[Entry], length: int,
                   families: list[str]) -> None:
    points = published_points(task, length) + our_points(task, rows, group)
    for point in points:
        if point.ours:
            marker = FAMILY_MARKERS[families.index(point.family) % len(FAMILY_MARKERS)]
            axis.scatter(point.speed, point.accuracy, s=_area(point.memory), color=point.colour, edgecolors="black",
                         linewidths=0.6, marker=marker, alpha=0.85, zorder=3)
            if point.std is not None:
                axis.errorbar(point.speed, point.accuracy, yerr=point.std, color=point.colour, capsize=3,
                              linewidth=1, zorder=3)
        else:
            axis.scatter(point.speed, point.accuracy, s=_area(point.memory), facecolors="none",
                         edgecolors=point.colour, linewidths=1.3, zorder=2)
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_formatter(TIMES)
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.axvline(1.0, color="#ddd", linewidth=1, zorder=1)
    axis.margins(x=0.25, y=0.12)
    axis.figure.canvas.draw()  # the axes' final limits, so that labels are placed in pixels that hold
    _place_labels(axis, [(p.speed, p.accuracy, _area(p.memory), p.label,
                          {"color": p.colour, "weight": "bold"} if p.ours else {"color": "#555", "style": "italic"})
                         for p in points])
    axis.set_title("LRA average (5 tasks)" if task == "avg" else TASK_TITLES[task], fontsize=10)
    axis.set_xlabel(f"training speed ÷ softmax's at N = {length} (log scale)")
    axis.set_ylabel("LRA score (%)" if task == "avg" else "test accuracy (%)")
    axis.grid(alpha=0.25)


def figure3(rows: list[CompactRow], entries: list[Entry], length: int, device: str | None) -> Figure3:
    """LRA Figure 3 from our runs: accuracy against training speed relative to softmax, marker area by peak
    memory relative to softmax; ours (filled) beside LRA's published points (hollow). A panel for LRA's average
    and one per task where a backend of ours has a result."""
    if length not in published.LRA_TABLE2.lengths:
        raise ValueError(f"figure3.length={length}: LRA Table 2 reports {list(published.LRA_TABLE2.lengths)}")
    group = speed_group(entries, length, device)
    tasks = ["avg", *[t for t in TASKS if any(row.counted(t) for row in rows)]]
    families = list(dict.fromkeys(row.family for row in rows))
    columns = min(3, len(tasks))
    lines = -(-len(tasks) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(5.4 * columns, 4.4 * lines + 0.9), squeeze=False,
                                layout="constrained")
    for axis, task in zip(axes.flat, tasks, strict=False):
        _figure3_panel(axis, task, rows, group, length, families)
    for axis in list(axes.flat)[len(tasks):]:
        axis.set_visible(False)
    figure.legend(handles=_figure3_legend(families), loc="outside lower center", ncols=6, fontsize=8, frameon=False)
    where = f"{group[0].device}" if group else "no benchmark of ours"
    title = f"Accuracy against speed and memory, in the manner of LRA Figure 3 (ours: {where})"
    figure.suptitle(title, fontsize=11)
    return Figure3(png_bytes(figure), title, _figure3_caption(rows, group, length))


def _figure3_legend(families: list[str]) -> list[Line2D]:
    handles = [Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor=PUBLISHED_GREY,
                      markersize=8, label="LRA (Tables 1 and 2, TPU v3)")]
    handles += [Line2D([], [], linestyle="", marker=FAMILY_MARKERS[i % len(FAMILY_MARKERS)], color="#777",
                       markeredgecolor="black", markersize=8, label=f"ours, {family}/* presets")
                for i, family in enumerate(families)]
    handles += [Line2D([], [], linestyle="", marker="o", color="#ccc", markeredgecolor="#777",
                       markersize=np.sqrt(_area(ratio)), label=f"memory {ratio:g}× softmax") for ratio in (0.25, 1, 4)]
    return handles


def _figure3_caption(rows: list[CompactRow], group: list[Entry], length: int) -> str:
    timed = {e.backend for e in group if e.status == "ok"}
    with_result = [row.attention for row in rows if any(row.counted(t) for t in TASKS)]
    untimed = sorted({b for b in with_result if b not in timed})
    failed = sorted({f"{e.name} ({e.status})" for e in group if e.status != "ok"})
    ours = (f"Ours (filled): the accuracy of the compact table's cells (mean, bar: std over seeds; † a config "
            f"change, ‡ shortened), placed at the speed and peak memory of one training step of LRA's Text model at "
            f"N = {length} from lra.bench ({group[0].device}, {group[0].setting}; results/bench/), each divided by "
            "softmax's there; one point per benchmarked implementation of a backend." if group else
            f"Ours: no benchmark at N = {length} yet (python -m lra.bench bench.level=model "
            "'bench.lengths=[1024,2048,3072,4096]'), so no point of ours can be placed.")
    theirs = (f"LRA (hollow): {published.LRA_TABLE1.title} accuracy against LRA Table 2 steps/s and memory at "
              f"{length // 1024}K ({published.LRA_TABLE2.citation}; {published.LRA_TABLE2.setup}), divided by its "
              "Transformer's; a published model has the colour of the backend of ours compared with it, grey if none.")
    size = (f"Marker area: peak memory ÷ softmax's (areas capped at {MEMORY_CAP:g}×; the label gives larger "
            "ratios).")
    missing = ([f"Not timed at this length: {', '.join(untimed)}."] if untimed and group else []) + (
        [f"No time at this length: {', '.join(failed)}."] if failed else [])
    return " ".join([ours, theirs, size, *missing])


# ---------------------------------------------------------------- training curves


def _mean_curve(histories: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, min and max over runs, on the steps of the sparsest run within the span every run reached."""
    start = max(h[0][0] for h in histories)
    end = min(h[-1][0] for h in histories)
    grid = np.array([s for s, _ in min(histories, key=len) if start <= s <= end], dtype=float)
    values = np.array([np.interp(grid, [s for s, _ in h], [v for _, v in h]) for h in histories])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


@dataclass
class CurveLine:
    row: CompactRow
    task: str
    runs: int
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def curve_lines(rows: list[CompactRow]) -> list[CurveLine]:
    """Per task and compact-table row, the validation accuracy (%) of its cell's seeds as one mean with a band
    from the lowest to the highest seed; rows whose runs recorded fewer than two common points are left out."""
    lines = []
    for task in TASKS:
        for row in rows:
            cell = row.counted(task)
            histories = [[(p["step"], 100 * p["val/acc"]) for p in run.history if p.get("val/acc") is not None]
                         for run in cell.counted] if cell else []
            histories = [h for h in histories if h]
            if histories:
                steps, mean, low, high = _mean_curve(histories)
                if len(steps) > 1:
                    lines.append(CurveLine(row, task, len(histories), steps, mean, low, high))
    return lines


def curve_figures(rows: list[CompactRow]) -> list[Figure]:
    """Validation accuracy against step, one panel per task, one line per backend (``curve_lines``)."""
    lines = curve_lines(rows)
    if not lines:
        return []
    columns = list(dict.fromkeys(line.task for line in lines))
    figure, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.6), squeeze=False,
                                layout="constrained")
    for axis, task in zip(axes[0], columns, strict=True):
        for line in (line for line in lines if line.task == task):
            colour = backend_colour(line.row.attention)
            variant = bool(line.row.cells[task].departure.differences)
            family = "" if line.row.family == "lra" else f", {line.row.family}"
            axis.plot(line.steps, line.mean, color=colour, linestyle=CURVE_STYLES[variant], linewidth=1.4,
                      label=f"{line.row.attention}{family} (n={line.runs}){' †' if variant else ''}")
            if line.runs > 1:
                axis.fill_between(line.steps, line.low, line.high, color=colour, alpha=0.18, linewidth=0)
        axis.legend(fontsize=7)
        axis.set_title(TASK_TITLES[task])
        axis.set_xlabel("training step")
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.25)
    title = ("Training curves: validation accuracy, mean over seeds (band: lowest to highest seed, over the steps "
             "every seed reached); the runs of each compact-table cell; dashed (†): a config change")
    return [(title, data_uri(png_bytes(figure)))]


# ---------------------------------------------------------------- benchmark


def _log_axis(axis: plt.Axes, label: str) -> None:
    """Lengths on a log2 axis; the drawn values on a log10 axis with labelled ticks however narrow their span
    (a linear axis below a factor of 3, where a log scale would show no tick at all)."""
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_formatter(LENGTH)
    axis.xaxis.set_minor_formatter(NullFormatter())
    low, high = axis.get_ylim()
    if high < 3 * low:
        axis.yaxis.set_major_formatter(PLAIN)
    else:
        axis.set_yscale("log")
        subs = tuple(range(1, 10)) if high < 30 * low else (1, 2, 5) if high < 1000 * low else (1,)
        axis.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.yaxis.set_major_formatter(PLAIN)  # plain numbers: mathtext tick labels are slow and unneeded
        axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("sequence length N")
    axis.set_ylabel(label)
    axis.grid(alpha=0.25, which="major")


def bench_figures(points: list[BenchPoint]) -> list[Figure]:
    """Time per step and peak memory against length, log-log, one line per series of two lengths or more (a
    setting with none is not drawn); at most a few settings, the whole-model training step first."""
    order = {("model", "fwd_bwd"): 0, ("core", "fwd_bwd"): 1, ("layer", "fwd_bwd"): 2}
    settings = sorted({p.setting for p in points}, key=lambda s: (order.get((s[1], s[2]), 9), s))
    figures = []
    for setting in settings:
        group = [p for p in points if p.setting == setting and p.status == "ok"]
        lines = {series: sorted((p for p in group if p.series == series), key=lambda p: p.length)
                 for series in sorted({p.series for p in group})}
        lines = {series: line for series, line in lines.items() if len(line) > 1}
        if lines and len(figures) < MAX_BENCH_FIGURES:
            figures.append(_bench_figure(setting, lines))
    return figures


def _bench_figure(setting: tuple, lines: dict[str, list[BenchPoint]]) -> Figure:
    device, level, mode, dtype, batch, heads, head_dim = setting
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained")
    styles: dict[str, int] = {}
    for series, line in lines.items():
        backend = line[0].backend
        style = ("-", "--", ":", "-.")[_next_style(styles, backend)]
        kwargs = {"color": backend_colour(backend), "linestyle": style, "marker": "o", "markersize": 3,
                  "label": series}
        time_axis.plot([p.length for p in line], [p.time_ms for p in line], **kwargs)
        memory = [(p.length, p.peak_mib) for p in line if p.peak_mib is not None]
        if len(memory) > 1:
            memory_axis.plot(*zip(*memory, strict=True), **kwargs)
    _log_axis(time_axis, "time per step (ms)")
    _log_axis(memory_axis, "peak memory (MiB)")
    time_axis.legend(fontsize=7)
    title = f"{device}: {level} {mode}, {dtype}, B={batch}, H={heads}, d={head_dim}"
    figure.suptitle(title, fontsize=9)
    return (f"Time and memory vs length, {title}", data_uri(png_bytes(figure)))


def _next_style(styles: dict[str, int], backend: str) -> int:
    """0 for a backend's first series, 1 for its second...: its implementations differ by line style."""
    styles[backend] = styles.get(backend, -1) + 1
    return styles[backend] % 4
