"""LRA Table 1 from our runs, as tables: cells of mean +/- std over seeds (``lra.tables.cells``) beside the published
rows, with the difference, the protocol of each cell, the parameter counts and every run read; and as CSV.
Missing cells read "not run".
"""

from __future__ import annotations

from collections.abc import Mapping

from lra.results.table import Table
from lra.tables import published
from lra.tables.cells import CHANCE_MARGIN, CHECKPOINTS, AccuracyResult, Cell, Row, in_column_order
from lra.tables.published import TASK_TITLES, TASKS

PARAMETER_RULE = 1.10  # LRA README: at most 10% more parameters than the Transformer of the same task


def lra_reference_row(attention: str) -> str:
    return published.LRA_ROW_FOR_BACKEND.get(attention, published.BASELINE_ROW)


def cell_text(cell: Cell) -> str:
    """A cell as the main table shows it: mean ± std (n, the steps of a shortened cell, chance) [its note]."""
    if not cell.counted:
        reasons = sorted({reason for _, reason in cell.not_counted})
        return f"no result ({len(cell.not_counted)} {'/'.join(reasons)}) [{cell.note}]"
    spread = "" if cell.std is None else f" ± {cell.std:.2f}"
    short = f"; {cell.step_span()} of {cell.departure.preset_steps:,} steps" if cell.departure.shortened else ""
    chance = f"; at chance: {cell.chance:.2f}" if cell.at_chance else ""
    return f"{cell.mean:.2f}{spread} (n={len(cell.counted)}{short}{chance}) [{cell.note}]"


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


def main_table(result: AccuracyResult, not_run: Mapping[str, str] | None = None) -> Table:
    """LRA Table 1 with our rows; ``not_run``: why a task has no run of ours (task -> reason), a note under the
    table while none of our rows has a cell for it."""
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
                                                  published.LRA_TABLE1.avg_notes.items()],
                   *_not_run_notes(result, not_run or {})]
    return table


def _not_run_notes(result: AccuracyResult, not_run: Mapping[str, str]) -> list[str]:
    covered = {task for row in result.rows for task in row.cells}
    unknown = sorted(set(not_run) - set(TASKS))
    if unknown:
        raise ValueError(f"tables not_run names unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    return [f"{TASK_TITLES[task]}: no run of ours: {reason}." for task, reason in not_run.items()
            if task not in covered]


def _our_rows(table: Table, result: AccuracyResult, row: Row) -> None:
    cells = [cell_text(row.cells[t]) if t in row.cells else "not run" for t in TASKS]
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
        for cell in in_column_order(row):
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
    if cell.timed:
        times = ", ".join(f"{run.fit_seconds / 60:.1f} min ({run.run_id}, {run.device})"
                          for run in cell.timed)
        parts.append(f"training and validation took {times}")
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
               "difference", "fit_minutes")


def cell_rows(result: AccuracyResult) -> list[list[object]]:
    rows = []
    for row in result.rows:
        for cell in in_column_order(row):
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
                " ".join(f"{run.fit_seconds / 60:.2f}" for run in cell.timed),
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
