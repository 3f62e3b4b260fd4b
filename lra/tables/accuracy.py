"""LRA Table 1 from our runs: cells of mean +/- std over seeds, beside the published rows, with the difference.

A *cell* is every run of one (task, backend, preset) that shares a protocol: the same departure from the
preset (``lra.tables.variants``), validation split and data source. Only finished runs with the chosen test
metric count (``test/acc@best``, the best-validation checkpoint, by default; ``test/acc@last`` on request),
one run per seed (the one with the most steps); failed and running runs are listed beside the cell, never
averaged. A *row* is one backend under one family of presets (``lra/*``): for each task its cell without
config changes (full schedule first), and further rows for every other protocol. Missing cells read "not run".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from lra.results.table import Table
from lra.tables import published
from lra.tables.published import AVERAGED_TASKS, TASK_TITLES, TASKS
from lra.tables.runs import Run
from lra.tables.variants import Departure, PresetConfigs

CHECKPOINTS = {"best": "test accuracy of the best-validation checkpoint (test/acc@best)",
               "last": "test accuracy of the last checkpoint (test/acc@last)"}
PARAMETER_RULE = 1.10  # LRA README: at most 10% more parameters than the Transformer of the same task
CHANCE_MARGIN = 1.0  # points above the majority-class accuracy within which a cell reads "at chance"
FAMILY_ORDER = ("lra", "taylorshift")


@dataclass
class Cell:
    column: str
    attention: str
    preset: str
    departure: Departure
    validation_split: str
    data_source: str
    checkpoint: str
    counted: list[Run] = field(default_factory=list)
    not_counted: list[tuple[Run, str]] = field(default_factory=list)
    note: str = ""  # its reference in the protocol notes, e.g. "c3"

    @property
    def family(self) -> str:
        return self.preset.split("/", 1)[0]

    @property
    def values(self) -> list[float]:
        return [run.accuracy(self.checkpoint) for run in self.counted]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.counted else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None for a single run)."""
        return statistics.stdev(self.values) if len(self.counted) > 1 else None

    def step_span(self) -> str:
        """The steps its counted runs trained: "3,351" or "2,551–4,609"."""
        steps = sorted(run.steps for run in self.counted if run.steps is not None)
        if not steps:
            return "?"
        return f"{steps[0]:,}" if steps[0] == steps[-1] else f"{steps[0]:,}–{steps[-1]:,}"

    @property
    def chance(self) -> float | None:
        """The majority-class test accuracy its runs recorded (one data set per cell), in percent."""
        return max((run.chance for run in self.counted if run.chance is not None), default=None)

    @property
    def at_chance(self) -> bool:
        return self.mean is not None and self.chance is not None and self.mean <= self.chance + CHANCE_MARGIN

    @property
    def params(self) -> int | None:
        counts = [run.params for run in self.counted if run.params is not None]
        return int(statistics.median(counts)) if counts else None

    def text(self) -> str:
        if not self.counted:
            reasons = sorted({reason for _, reason in self.not_counted})
            return f"no result ({len(self.not_counted)} {'/'.join(reasons)}) [{self.note}]"
        spread = "" if self.std is None else f" ± {self.std:.2f}"
        short = f"; {self.step_span()} of {self.departure.preset_steps:,} steps" if self.departure.shortened else ""
        chance = f"; at chance: {self.chance:.2f}" if self.at_chance else ""
        return f"{self.mean:.2f}{spread} (n={len(self.counted)}{short}{chance}) [{self.note}]"


@dataclass
class Row:
    attention: str
    family: str
    label: str  # "" for the row of the presets as published
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.attention} · {self.family}" + (f" · {self.label}" if self.label else "")

    @property
    def average(self) -> float | None:
        means = [self.cells[task].mean if task in self.cells else None for task in AVERAGED_TASKS]
        return None if any(m is None for m in means) else statistics.fmean(means)


@dataclass
class Excluded:
    run: Run
    reason: str


@dataclass
class AccuracyResult:
    checkpoint: str
    cells: list[Cell]
    rows: list[Row]
    excluded: list[Excluded]
    reference_params: dict[tuple[str, str, tuple[str, ...]], int]  # (family, column, differences) -> softmax's

    def parameter_ratio(self, cell: Cell) -> float | None:
        same_setting = (cell.family, cell.column, cell.departure.differences)
        reference = self.reference_params.get(same_setting) or self.reference_params.get((cell.family, cell.column, ()))
        return None if reference is None or cell.params is None else cell.params / reference


def build(runs: list[Run], presets: PresetConfigs, checkpoint: str = "best") -> AccuracyResult:
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    cells, excluded = collect_cells(runs, presets, checkpoint)
    rows = assign_rows(cells)
    for number, cell in enumerate((c for row in rows for c in _in_column_order(row)), start=1):
        cell.note = f"c{number}"
    return AccuracyResult(checkpoint, cells, rows, excluded, reference_parameters(rows))


def collect_cells(runs: list[Run], presets: PresetConfigs, checkpoint: str) -> tuple[list[Cell], list[Excluded]]:
    cells: dict[tuple, Cell] = {}
    excluded = []
    for run in runs:
        if run.preset is None:
            excluded.append(Excluded(run, "no preset: not a published setup"))
            continue
        if run.column is None:
            excluded.append(Excluded(run, f"task {run.task} at this setting is not a Table 1 column"))
            continue
        finished = run.status == "finished"
        departure = presets.departure(run.preset, run.attention, run.config, run.steps if finished else None)
        key = (run.column, run.attention, run.preset, departure, run.validation_split, run.data_source)
        cell = cells.setdefault(key, Cell(run.column, run.attention, run.preset, departure, run.validation_split,
                                          run.data_source, checkpoint))
        if finished and run.accuracy(checkpoint) is not None:
            cell.counted.append(run)
        elif finished:
            cell.not_counted.append((run, f"without test/acc@{checkpoint}"))
        else:
            cell.not_counted.append((run, run.status))
    for cell in cells.values():
        keep_one_run_per_seed(cell)
        cell.counted.sort(key=lambda run: (run.seed if run.seed is not None else -1, run.run_id))
    return list(cells.values()), excluded


def keep_one_run_per_seed(cell: Cell) -> None:
    """A seed counts once: a rerun of a seed (a shortened run begun again, say) would otherwise weigh twice in
    the mean. The run that trained the most steps stands, the latest of those where several did (the current
    code, chosen without looking at results); the others are listed as not counted."""
    by_seed: dict[int, list[Run]] = {}
    for run in cell.counted:
        if run.seed is not None:
            by_seed.setdefault(run.seed, []).append(run)
    for seed, runs in by_seed.items():
        kept = max(runs, key=lambda run: (run.steps or 0, run.created, run.run_id))
        for run in runs:
            if run is not kept:
                cell.counted.remove(run)
                longer = (kept.steps or 0) > (run.steps or 0)
                why = "trained more steps" if longer else "is a later run of as many steps"
                cell.not_counted.append((run, f"seed {seed} counts once: run {kept.run_id} {why}"))


def primary_order(cell: Cell) -> tuple:
    """Which cell stands in a row of published presets: a result, the full schedule, most seeds."""
    most_steps = max((run.steps or 0 for run in cell.counted), default=0)
    return (not cell.counted, cell.departure.shortened, -most_steps, -len(cell.counted),
            cell.data_source, cell.validation_split)


def assign_rows(cells: list[Cell]) -> list[Row]:
    rows: list[Row] = []
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.attention, cell.family), []).append(cell)
    for (attention, family), members in sorted(groups.items(), key=lambda item: _row_order(*item[0])):
        main = Row(attention, family, "")
        rest = []
        for column in TASKS:
            candidates = sorted((c for c in members if c.column == column and not c.departure.differences),
                                key=primary_order)
            if candidates:
                main.cells[column] = candidates[0]
            rest += [c for c in members if c.column == column and c is not main.cells.get(column)]
        rows.append(main)
        rows += _variant_rows(attention, family, rest)
    return rows


def _variant_rows(attention: str, family: str, cells: list[Cell]) -> list[Row]:
    rows: dict[str, Row] = {}
    for cell in sorted(cells, key=lambda c: (c.departure.label(), TASKS.index(c.column), primary_order(c))):
        label = cell.departure.label() or _protocol_label(cell)
        for extra in (_protocol_label(cell), f"preset {cell.preset}"):
            if label in rows and cell.column in rows[label].cells:
                label = f"{label}; {extra}"
        rows.setdefault(label, Row(attention, family, label)).cells[cell.column] = cell
    return list(rows.values())


def _protocol_label(cell: Cell) -> str:
    return f"validation {cell.validation_split}, data {cell.data_source}"


def _row_order(attention: str, family: str) -> tuple:
    family_rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (family_rank, family, attention != "softmax", attention)


def _in_column_order(row: Row) -> list[Cell]:
    return [row.cells[task] for task in TASKS if task in row.cells]


def reference_parameters(rows: list[Row]) -> dict[tuple[str, str, tuple[str, ...]], int]:
    """The softmax Transformer's parameter count per (family, task, departure from the preset).

    A variant (``task.max_length=1000``) is compared with softmax under the same variant where there is one,
    since the variant may change the parameters (a learned position table); else with the preset as published.
    """
    return {(row.family, column, cell.departure.differences): cell.params for row in rows
            if row.attention == "softmax" for column, cell in row.cells.items() if cell.params is not None}


def lra_reference_row(attention: str) -> str:
    return published.LRA_ROW_FOR_BACKEND.get(attention, published.BASELINE_ROW)


# ---------------------------------------------------------------- tables


def _published_cell(value: published.Value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else f"{value:.2f}"


def _published_rows(table: Table, source: published.PublishedTable) -> None:
    for model, values in source.rows.items():
        avg = f"{source.printed_avg[model]:.2f}" + (" *" if model in source.avg_notes else "")
        table.add([model, source.title, *[_published_cell(values[t]) for t in TASKS], avg], "published")


def _difference(ours: float | None, theirs: published.Value) -> str:
    if ours is None:
        return ""
    if not isinstance(theirs, float):
        return f"(published {theirs})" if theirs else ""
    return f"{ours - theirs:+.2f}"


def format_params(count: int | None) -> str:
    if count is None:
        return "—"
    return f"{count / 1e6:.2f}M" if count >= 1e6 else f"{count / 1e3:.1f}k"


def parameter_verdict(result: AccuracyResult, row: Row) -> str:
    broken, unknown = [], []
    for column, cell in row.cells.items():
        ratio = result.parameter_ratio(cell)
        if ratio is None:
            unknown.append(TASK_TITLES[column])
        elif ratio > PARAMETER_RULE:
            broken.append(f"{TASK_TITLES[column]} {ratio:.2f}×")
    if broken:
        return "⚠ over LRA's 10% rule: " + ", ".join(broken)
    if unknown:
        return "10% rule: no softmax run for " + ", ".join(unknown)
    return "10% rule: ok"


def main_table(result: AccuracyResult) -> Table:
    title = "LRA Table 1: test accuracy (%), published and ours"
    table = Table(title, ["Model", "Source", *[TASK_TITLES[t] for t in TASKS], "Avg"])
    table.caption = (f"Ours: {CHECKPOINTS[result.checkpoint]}, mean ± sample std over seeds (n = finished runs); "
                     f"'at chance' where the mean is within {CHANCE_MARGIN:g} point of always answering the test "
                     "split's most common label (recorded since 2026-11-23); "
                     "[cN] points to the cell's protocol below. Published: "
                     f"{published.LRA_TABLE1.citation} ({published.LRA_TABLE1.source}). Avg: mean of the five "
                     "tasks without Path-X, as LRA; ours only where all five cells have a result.")
    _published_rows(table, published.LRA_TABLE1)
    for row in result.rows:
        _our_rows(table, result, row)
    table.notes = [*published.LRA_TABLE1.notes, *[f"* {model}: {note}" for model, note in
                                                  published.LRA_TABLE1.avg_notes.items()]]
    return table


def _our_rows(table: Table, result: AccuracyResult, row: Row) -> None:
    cells = [row.cells[t].text() if t in row.cells else "not run" for t in TASKS]
    shortened = any(c.departure.shortened for c in row.cells.values())
    avg = "" if row.average is None else f"{row.average:.2f}" + (" (incl. shortened)" if shortened else "")
    table.add([row.name, f"ours ({row.family}/* presets)", *cells, avg], "ours")
    if not any(cell.counted for cell in row.cells.values()):
        return
    params = [_params_cell(result, row.cells[t]) if t in row.cells else "" for t in TASKS]
    table.add(["↳ parameters (× softmax)", "ours", *params, parameter_verdict(result, row)], "params")
    reference = lra_reference_row(row.attention)
    lra_values = published.LRA_TABLE1.rows[reference]
    deltas = [_difference(row.cells[t].mean, lra_values[t]) if t in row.cells else "" for t in TASKS]
    lra_avg = published.LRA_TABLE1.printed_avg[reference]
    table.add([f"↳ Δ vs LRA {reference}", "ours − LRA Table 1", *deltas, _difference(row.average, lra_avg)],
              "delta")


def _params_cell(result: AccuracyResult, cell: Cell) -> str:
    ratio = result.parameter_ratio(cell)
    if ratio is None:
        return format_params(cell.params)
    flag = " ⚠" if ratio > PARAMETER_RULE else ""
    return f"{format_params(cell.params)} ({ratio:.2f}×){flag}"


def reference_table() -> Table:
    """The PyTorch re-runs (Nyströmformer, Skyformer): a second reference, not mixed with LRA's rows."""
    sources = (published.NYSTROMFORMER_TABLE1, published.SKYFORMER_TABLE1)
    table = Table("Second reference: PyTorch re-runs of LRA (small 2-layer models)",
                  ["Model", "Source", *[TASK_TITLES[t] for t in TASKS], "Avg"])
    table.caption = " ".join(f"{s.title}: {s.citation}; read from {s.source}; {s.protocol}." for s in sources)
    for source in sources:
        _published_rows(table, source)
    table.notes = [note for source in sources for note in source.notes]
    return table


def protocol_notes(result: AccuracyResult) -> list[str]:
    """One line per cell: exactly which runs, checkpoint, validation split, data and schedule it stands for."""
    lines = []
    for row in result.rows:
        for cell in _in_column_order(row):
            lines.append(f"[{cell.note}] {describe_cell(cell)}")
    return lines


def describe_cell(cell: Cell) -> str:
    parts = [f"{TASK_TITLES[cell.column]}, {cell.attention}, preset {cell.preset}",
             CHECKPOINTS[cell.checkpoint], f"validation split: {cell.validation_split}",
             f"data: {cell.data_source}"]
    if cell.departure.shortened:
        parts.append(f"SHORTENED: {cell.step_span()} of the preset's {cell.departure.preset_steps:,} steps")
    if cell.departure.differences:
        parts.append("differs from the preset: " + ", ".join(cell.departure.differences))
    if cell.chance is not None:
        parts.append(f"chance (always the test split's most common label): {cell.chance:.2f}"
                     + (f"; AT CHANCE (within {CHANCE_MARGIN:g} point)" if cell.at_chance else ""))
    if cell.counted:
        seeds = ", ".join(str(run.seed) for run in cell.counted)
        values = ", ".join(f"{v:.2f}" for v in cell.values)
        ids = ", ".join(run.run_id for run in cell.counted)
        steps = ", ".join("?" if run.steps is None else f"{run.steps:,}" for run in cell.counted)
        at = f" at {steps} steps" if cell.departure.shortened else ""
        parts.append(f"{len(cell.counted)} finished run(s), seeds {seeds}: {values}{at} (runs {ids})")
    for run, reason in cell.not_counted:
        parts.append(f"not counted: run {run.run_id} ({reason}{': ' + run.error if run.error else ''})")
    return "; ".join(parts)


def parameter_table(result: AccuracyResult) -> Table:
    table = Table("Parameter counts (LRA's rule: at most 10% above the Transformer of the same task)",
                  ["Row", *[TASK_TITLES[t] for t in TASKS], "Rule"])
    table.caption = ("Trainable parameters from the run records; in brackets the ratio to our softmax Transformer "
                     "with the same family of presets. ⚠ marks a model more than 10% larger (LRA README, "
                     "'Apples-to-Apples setting').")
    for row in result.rows:
        cells = [_params_cell(result, row.cells[t]) if t in row.cells else "" for t in TASKS]
        table.add([row.name, *cells, parameter_verdict(result, row)], "params")
    return table


def runs_table(result: AccuracyResult) -> Table:
    """Every run read, with where it counted or why not."""
    placement: dict[str, str] = {}
    for row in result.rows:
        for cell in row.cells.values():
            for run in cell.counted:
                placement[run.run_id] = f"counted in [{cell.note}]"
            for run, reason in cell.not_counted:
                placement[run.run_id] = f"not counted ({reason}), listed in [{cell.note}]"
    for item in result.excluded:
        placement[item.run.run_id] = f"not in Table 1: {item.reason}"
    runs = [run for cell in result.cells for run in cell.counted + [r for r, _ in cell.not_counted]]
    runs += [item.run for item in result.excluded]
    table = Table("Runs read", ["Run", "Status", "Task", "Attention", "Preset", "Seed", "Steps",
                                "test/acc@best", "test/acc@last", "Placement"])
    for run in sorted(runs, key=lambda r: (r.task, r.attention, str(r.preset), str(r.seed), r.run_id)):
        accuracy = [f"{run.accuracy(c):.2f}" if run.accuracy(c) is not None else "" for c in CHECKPOINTS]
        table.add([run.run_id, run.status, run.task, run.attention, run.preset or "", str(run.seed),
                   "" if run.steps is None else str(run.steps), *accuracy, placement[run.run_id]], run.status)
    return table


# ---------------------------------------------------------------- CSV


CELL_FIELDS = ("row", "task", "attention", "preset", "checkpoint_metric", "validation_split", "data_source",
               "shortened", "steps", "preset_steps", "differences", "n", "mean", "std", "values", "seeds",
               "run_ids", "not_counted", "chance", "at_chance", "params", "params_ratio", "lra_reference", "lra_value",
               "difference")


def cell_rows(result: AccuracyResult) -> list[list[object]]:
    rows = []
    for row in result.rows:
        for cell in _in_column_order(row):
            reference = lra_reference_row(cell.attention)
            lra_value = published.LRA_TABLE1.rows[reference][cell.column]
            ratio = result.parameter_ratio(cell)
            rows.append([
                row.name, cell.column, cell.attention, cell.preset, f"test/acc@{cell.checkpoint}",
                cell.validation_split, cell.data_source, cell.departure.shortened,
                cell.step_span().replace(",", "") if cell.departure.shortened else None,
                cell.departure.preset_steps, "; ".join(cell.departure.differences), len(cell.counted),
                _round(cell.mean), _round(cell.std), " ".join(f"{v:.4f}" for v in cell.values),
                " ".join(str(run.seed) for run in cell.counted), " ".join(run.run_id for run in cell.counted),
                " ".join(f"{run.run_id}:{reason}" for run, reason in cell.not_counted), _round(cell.chance),
                cell.at_chance, cell.params,
                _round(ratio, 4), reference, lra_value,
                _round(cell.mean - lra_value) if cell.mean is not None and isinstance(lra_value, float) else None,
            ])
    return rows


WIDE_FIELDS = ("row", "kind", "source", *[f"{t}{suffix}" for t in TASKS for suffix in ("", "_std", "_n")], "avg")


def wide_rows(result: AccuracyResult) -> list[list[object]]:
    """The main table as numbers: published rows, ours (mean, std, n; "not run"), and the differences."""
    rows = []
    for source in published.ACCURACY_TABLES:
        for model, values in source.rows.items():
            cells = [x for t in TASKS for x in (values[t], None, None)]
            rows.append([model, "published", source.citation, *cells, source.printed_avg[model]])
    for row in result.rows:
        cells = []
        for task in TASKS:
            cell = row.cells.get(task)
            if cell is None or not cell.counted:
                cells += ["not run" if cell is None else "no result", None, 0 if cell is None else None]
            else:
                cells += [_round(cell.mean), _round(cell.std), len(cell.counted)]
        rows.append([row.name, "ours", f"{row.family}/* presets, test/acc@{result.checkpoint}", *cells,
                     _round(row.average)])
        reference = lra_reference_row(row.attention)
        theirs = published.LRA_TABLE1.rows[reference]
        deltas = []
        for task in TASKS:
            cell = row.cells.get(task)
            ok = cell is not None and cell.mean is not None and isinstance(theirs[task], float)
            deltas += [_round(cell.mean - theirs[task]) if ok else None, None, None]
        avg = published.LRA_TABLE1.printed_avg[reference]
        rows.append([row.name, "difference", f"ours - LRA Table 1 {reference}", *deltas,
                     _round(row.average - avg) if row.average is not None else None])
    return rows


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
