"""The cell model of LRA Table 1 from our runs: which runs count, their mean and std over seeds, each cell's status.

A *cell* is every run of one (task, backend, preset) that shares a protocol: the same departure from the
preset (``lra.tables.variants``), validation split and data source. Only finished runs with the chosen test
metric count (``test/acc@best``, the best-validation checkpoint, by default; ``test/acc@last`` on request),
one run per seed (the one with the most steps); failed and running runs are listed beside the cell, never
averaged. A *row* is one backend under one family of presets (``lra/*``): for each task its cell without
config changes (full schedule first), and further rows for every other protocol. The tables that show them
are ``lra.tables.accuracy``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from lra.tables.published import AVERAGED_TASKS, TASKS
from lra.tables.runs import Run
from lra.tables.variants import Departure, PresetConfigs

CHECKPOINTS = {"best": "test accuracy of the best-validation checkpoint (test/acc@best)",
               "last": "test accuracy of the last checkpoint (test/acc@last)"}
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

    @property
    def timed(self) -> list[Run]:
        """Counted runs whose record measured their wall time of training and validation (``efficiency.fit_seconds``;
        records from before it lack it): what one more seed of the cell costs."""
        return [run for run in self.counted if run.fit_seconds]

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
    for number, cell in enumerate((c for row in rows for c in in_column_order(row)), start=1):
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


def in_column_order(row: Row) -> list[Cell]:
    return [row.cells[task] for task in TASKS if task in row.cells]


def reference_parameters(rows: list[Row]) -> dict[tuple[str, str, tuple[str, ...]], int]:
    """The softmax Transformer's parameter count per (family, task, departure from the preset).

    A variant (``task.max_length=1000``) is compared with softmax under the same variant where there is one,
    since the variant may change the parameters (a learned position table); else with the preset as published.
    """
    return {(row.family, column, cell.departure.differences): cell.params for row in rows
            if row.attention == "softmax" for column, cell in row.cells.items() if cell.params is not None}
