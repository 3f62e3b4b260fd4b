"""The sections of ``results/report.html``, in page order: ``SECTIONS``, a list of builders.

A builder takes the ``ReportInputs`` (everything ``python -m lra.tables`` has read and computed) and returns a
``lra.tables.report.Section``, or None when it has nothing to show. To add a section (an analysis under
``results/analysis/``, say), write such a function and put it into ``SECTIONS`` where it should appear; the
page, its style and the report test need no other change. A builder reads what it needs through the inputs
(``inputs.settings`` gives the folders), never training code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lra.results.bench import BenchPoint
from lra.tables import accuracy, cells, compact, efficiency, plots, sparse_section
from lra.tables.report import Section, figure_html
from lra.tables.runs import Run

if TYPE_CHECKING:  # build imports this module: the settings' type only, no import at run time
    from lra.tables.build import Settings


@dataclass
class ReportInputs:
    settings: Settings
    runs: list[Run]
    result: cells.AccuracyResult
    rows: list[compact.CompactRow]
    points: list[BenchPoint]
    entries: list[efficiency.Entry]
    figure3: plots.Figure3


def figure3_section(inputs: ReportInputs) -> Section:
    figure = (inputs.figure3.title, plots.data_uri(inputs.figure3.png))
    return Section("Accuracy against speed and memory (LRA Figure 3, from our runs)",
                   body=figure_html(figure, inputs.figure3.caption))


def compact_section(inputs: ReportInputs) -> Section:
    return Section("Our runs at a glance", body=compact.compact_html(inputs.result, inputs.rows),
                   intro="Click a cell for its protocol: runs, seeds, checkpoint, validation split, data, schedule.")


def curves_section(inputs: ReportInputs) -> Section | None:
    figures = plots.curve_figures(inputs.rows)
    return Section("Training curves", figures=figures) if figures else None


def speed_section(inputs: ReportInputs) -> Section:
    return Section("Speed and memory (LRA Table 2 style)",
                   tables=[*efficiency.bench_tables(inputs.entries), efficiency.published_table2()],
                   figures=plots.bench_figures(inputs.points))


def full_table_section(inputs: ReportInputs) -> Section:
    return Section("Every cell: LRA Table 1 in full, with each cell's protocol",
                   tables=[accuracy.main_table(inputs.result, inputs.settings.not_run)],
                   notes=accuracy.protocol_notes(inputs.result), collapsed=True)


def reference_section(inputs: ReportInputs) -> Section:
    return Section("More: parameters, training-run speed, second reference, every run",
                   tables=[accuracy.parameter_table(inputs.result), efficiency.training_table(inputs.entries),
                           accuracy.reference_table(), accuracy.runs_table(inputs.result)], collapsed=True)


SectionBuilder = Callable[[ReportInputs], Section | None]
SECTIONS: list[SectionBuilder] = [figure3_section, compact_section, curves_section, speed_section,
                                  sparse_section.section, full_table_section, reference_section]


def build_sections(inputs: ReportInputs) -> list[Section]:
    return [section for builder in SECTIONS if (section := builder(inputs)) is not None]
