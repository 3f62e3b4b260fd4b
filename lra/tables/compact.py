"""The compact comparison a reader meets first: one row per backend and family of presets, one column per task.

Each cell is one accuracy cell of ``lra.tables.accuracy`` (mean ± std over seeds, n): the preset as published
where it has a result, else the config change with the most training behind it (marked, e.g.
``task.max_length=1000``). It stands beside the LRA Table 1 number of the model it is compared with
(``published.LRA_ROW_FOR_BACKEND``; LRA's Transformer for backends LRA did not run) and is coloured by the
difference. Shortened schedules and cells at chance are marked; in HTML a click opens the cell's protocol.
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass, field

from lra.results.table import Table
from lra.tables import published
from lra.tables.accuracy import describe_cell, lra_reference_row
from lra.tables.cells import CHANCE_MARGIN, CHECKPOINTS, AccuracyResult, Cell, primary_order
from lra.tables.published import AVERAGED_TASKS, TASK_TITLES, TASKS

COLOUR_SPAN = 10.0  # points of difference at which a cell's colour is full
NEUTRAL = 1.0  # points within which a cell reads as matching the published number (no colour)


@dataclass
class CompactRow:
    attention: str
    family: str
    cells: dict[str, Cell] = field(default_factory=dict)  # task -> the cell that stands for it

    @property
    def reference(self) -> str:
        """The LRA Table 1 row this backend is compared with."""
        return lra_reference_row(self.attention)

    def counted(self, task: str) -> Cell | None:
        cell = self.cells.get(task)
        return cell if cell is not None and cell.counted else None

    @property
    def average(self) -> float | None:
        """LRA's Avg (five tasks, no Path-X) of the cells shown; None unless all five have a result."""
        cells = [self.counted(task) for task in AVERAGED_TASKS]
        return None if None in cells else statistics.fmean(cell.mean for cell in cells)


def _choice(cell: Cell) -> tuple:
    """A result first, then the preset as published, then the full schedule and the most steps and seeds."""
    return (not cell.counted, bool(cell.departure.differences), *primary_order(cell))


def compact_rows(result: AccuracyResult) -> list[CompactRow]:
    """One row per (backend, family of presets), in the order of the full table's rows."""
    rows: dict[tuple[str, str], CompactRow] = {}
    for row in result.rows:
        compact = rows.setdefault((row.attention, row.family), CompactRow(row.attention, row.family))
        for task, cell in row.cells.items():
            if task not in compact.cells or _choice(cell) < _choice(compact.cells[task]):
                compact.cells[task] = cell
    return list(rows.values())


def published_value(row: CompactRow, task: str) -> published.Value:
    return published.LRA_TABLE1.rows[row.reference][task]


def difference(row: CompactRow, task: str) -> float | None:
    cell, theirs = row.counted(task), published_value(row, task)
    return cell.mean - theirs if cell is not None and isinstance(theirs, float) else None


def published_only(rows: list[CompactRow]) -> list[str]:
    """LRA Table 1 models that no row of ours is compared with."""
    compared = {row.reference for row in rows}
    return [model for model in published.LRA_TABLE1.rows if model not in compared]


# ---------------------------------------------------------------- text of a cell


def mean_text(cell: Cell) -> str:
    return f"{cell.mean:.2f}" + ("" if cell.std is None else f" ± {cell.std:.2f}")


def marks(cell: Cell) -> list[str]:
    """Short warnings: a config change (†), a shortened schedule (‡), a mean at chance."""
    found = []
    if cell.departure.differences:
        found.append("† " + ", ".join(cell.departure.differences))
    if cell.departure.shortened:
        found.append(f"‡ shortened: {cell.step_span()} steps")
    if cell.at_chance:
        found.append(f"at chance ({cell.chance:.2f})")
    return found


def reference_text(theirs: published.Value, delta: float | None) -> str:
    if not isinstance(theirs, float):
        return f"LRA {theirs}" if theirs else "LRA —"
    return f"LRA {theirs:.2f}" + ("" if delta is None else f" ({delta:+.2f})")


def cell_text(row: CompactRow, task: str) -> str:
    """The cell as one line of plain text (Markdown)."""
    cell = row.cells.get(task)
    if cell is None:
        return "—"
    if not cell.counted:
        return f"no result [{cell.note}]"
    parts = [f"{mean_text(cell)} (n={len(cell.counted)})", reference_text(published_value(row, task),
                                                                          difference(row, task)), *marks(cell)]
    return " · ".join(parts) + f" [{cell.note}]"


def average_text(row: CompactRow) -> str:
    if row.average is None:
        return ""
    theirs = published.LRA_TABLE1.printed_avg[row.reference]
    return f"{row.average:.2f} · {reference_text(theirs, row.average - theirs)}"


CAPTION = ("Our test accuracy (%), {checkpoint}: mean ± sample std over seeds (n = finished runs, one per seed), "
           "and in brackets its difference from the LRA Table 1 number of the model named under the backend "
           "(LRA's Transformer for backends LRA did not run). † the cell departs from the preset (the key=value "
           "shown); ‡ fewer steps than the preset; 'at chance' within {margin:g} point of always answering the test "
           "split's most common label. [cN]: the cell's protocol in the full table. Avg: the five tasks without "
           "Path-X, only where all five have a result. Published: {citation}.")


def caption(result: AccuracyResult) -> str:
    return CAPTION.format(checkpoint=CHECKPOINTS[result.checkpoint], margin=CHANCE_MARGIN,
                          citation=published.LRA_TABLE1.citation)


def table(result: AccuracyResult, rows: list[CompactRow]) -> Table:
    """The compact comparison as a plain table (Markdown)."""
    compact = Table("Our runs at a glance: test accuracy per backend and task",
                    ["Backend", "Presets", "Compared with", *[TASK_TITLES[t] for t in TASKS], "Avg"])
    compact.caption = caption(result)
    for row in rows:
        compact.add([row.attention, f"{row.family}/*", f"LRA {row.reference}",
                     *[cell_text(row, task) for task in TASKS], average_text(row)], "ours")
    compact.notes = [f"Published only (no row of ours compared with them): {', '.join(published_only(rows))}."]
    return compact


# ---------------------------------------------------------------- HTML


def colour(delta: float | None) -> str:
    """Background for a difference in points: none within NEUTRAL, green above, red below, full at COLOUR_SPAN."""
    if delta is None or abs(delta) < NEUTRAL:
        return ""
    weight = min(abs(delta), COLOUR_SPAN) / COLOUR_SPAN
    target = (60, 170, 90) if delta > 0 else (215, 70, 60)
    red, green, blue = (round(255 + (c - 255) * (0.15 + 0.55 * weight)) for c in target)
    return f"background:#{red:02x}{green:02x}{blue:02x}"


def _cell_html(row: CompactRow, task: str) -> str:
    cell = row.cells.get(task)
    if cell is None:
        return '<td class="empty">—</td>'
    runs = " ".join(run.run_id for run in cell.counted)
    attributes = (f'class="cell" data-task="{task}" data-attention="{html.escape(row.attention)}" '
                  f'data-family="{html.escape(row.family)}" data-runs="{html.escape(runs)}" '
                  f'data-checkpoint="{cell.checkpoint}" data-reference="{html.escape(row.reference)}"')
    protocol = f'<div class="protocol">[{cell.note}] {html.escape(describe_cell(cell))}</div>'
    if not cell.counted:
        return f'<td {attributes}><details><summary>no result</summary>{protocol}</details></td>'
    tags = "".join(f'<span class="mark">{html.escape(mark)}</span>' for mark in marks(cell))
    reference = html.escape(reference_text(published_value(row, task), difference(row, task)))
    summary = (f'<b class="mean">{html.escape(mean_text(cell))}</b> <span class="n">n={len(cell.counted)}</span>'
               f'<span class="ref">{reference}</span>{tags}')
    style = colour(difference(row, task))
    return (f'<td {attributes}' + (f' style="{style}"' if style else "")
            + f"><details><summary>{summary}</summary>{protocol}</details></td>")


def _average_html(row: CompactRow) -> str:
    if row.average is None:
        return '<td class="empty"></td>'
    theirs = published.LRA_TABLE1.printed_avg[row.reference]
    runs = " ".join(run.run_id for task in AVERAGED_TASKS for run in row.cells[task].counted)
    style = colour(row.average - theirs)
    return (f'<td class="avg" data-runs="{runs}" data-attention="{html.escape(row.attention)}" '
            f'data-reference="{html.escape(row.reference)}"' + (f' style="{style}"' if style else "")
            + f'><b class="mean">{row.average:.2f}</b>'
            f'<span class="ref">{html.escape(reference_text(theirs, row.average - theirs))}</span></td>')


def _published_only_html(rows: list[CompactRow]) -> str:
    models = published_only(rows)
    head = "".join(f"<th>{TASK_TITLES[t]}</th>" for t in TASKS)
    body = "".join(
        f"<tr><td>{html.escape(model)}</td>"
        + "".join(f"<td>{html.escape(_published_text(published.LRA_TABLE1.rows[model][t]))}</td>" for t in TASKS)
        + f"<td>{published.LRA_TABLE1.printed_avg[model]:.2f}</td></tr>" for model in models)
    return (f'<details class="published-only"><summary>Published only: {len(models)} models of LRA Table 1 that no '
            f"row of ours is compared with</summary><table><thead><tr><th>Model</th>{head}<th>Avg</th></tr>"
            f"</thead><tbody>{body}</tbody></table></details>")


def _published_text(value: published.Value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else (value or "—")


def compact_html(result: AccuracyResult, rows: list[CompactRow]) -> str:
    """The compact table as HTML: a heading row per family of presets, a <details> protocol in every cell."""
    head = "".join(f"<th>{TASK_TITLES[t]}</th>" for t in TASKS)
    body = []
    for family in dict.fromkeys(row.family for row in rows):
        body.append(f'<tr class="family"><th colspan="{len(TASKS) + 2}">{html.escape(family)}/* presets</th></tr>')
        for row in (r for r in rows if r.family == family):
            name = (f'<th class="backend">{html.escape(row.attention)}'
                    f'<span class="ref">vs LRA {html.escape(row.reference)}</span></th>')
            body.append(f"<tr>{name}{''.join(_cell_html(row, t) for t in TASKS)}{_average_html(row)}</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(TASKS) + 2}">no runs with a preset yet</td></tr>')
    legend = (f"Colour: our mean minus the published number, within ±{NEUTRAL:g} point uncoloured, green above, "
              f"red below, full at ±{COLOUR_SPAN:g} points.")
    return (f'<table class="compact"><thead><tr><th>Backend</th>{head}<th>Avg</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
            f'<p class="caption">{html.escape(caption(result))} {html.escape(legend)}</p>' + _published_only_html(rows))
