"""The compact comparison: one row per backend and family of presets, the preset as published first, a config
change only where the preset has no result, marks for shortened and changed cells, colour by the difference."""

from __future__ import annotations

from pathlib import Path

import pytest

from lra.results.table import markdown
from lra.tables import accuracy, cells, compact
from lra.tables.runs import load_local
from lra.tables.variants import PresetConfigs
from tests.tables.conftest import RecordWriter


def compact_of(runs_dir: Path, presets: PresetConfigs) -> tuple[cells.AccuracyResult, list[compact.CompactRow]]:
    result = cells.build(load_local(runs_dir), presets)
    return result, compact.compact_rows(result)


def test_one_row_per_backend_and_family(report_records: Path, presets: PresetConfigs) -> None:
    result, rows = compact_of(report_records, presets)
    assert [(row.attention, row.family) for row in rows] == [("softmax", "lra"), ("performer", "lra"),
                                                             ("softmax", "recipe")]
    softmax = rows[0]
    # ListOps: the two finished seeds (the failed seed is listed, not counted); Text: the preset as published on
    # the recorded aclImdb copy, not the holdout variant (t2)
    assert [run.run_id for run in softmax.cells["listops"].counted] == ["a1", "a2"]
    assert [run.run_id for run in softmax.cells["text"].counted] == ["t1"]
    assert softmax.average == pytest.approx((37.0 + 64.0 + 57.0 + 41.0 + 70.0) / 5)
    assert compact.cell_text(softmax, "listops") == "37.00 ± 1.41 (n=2) · LRA 36.37 (+0.63) [c1]"
    assert compact.cell_text(softmax, "image") == "41.00 (n=1) · LRA 42.44 (-1.44) · ‡ shortened: 2,000 steps [c4]"
    assert compact.cell_text(rows[1], "text").startswith("no result")  # performer's Text run failed
    assert compact.cell_text(rows[1], "image") == "—"
    assert rows[1].reference == "Performer" and rows[2].reference == "Transformer"


def test_a_new_family_of_presets_is_its_own_row_family(report_records: Path, presets: PresetConfigs) -> None:
    """recipe/* presets (lra.campaign) form rows of their own in every table, with no code naming them."""
    result, rows = compact_of(report_records, presets)
    recipe = next(row for row in rows if row.family == "recipe")
    assert [run.run_id for run in recipe.cells["listops"].counted] == ["n1"]
    assert "softmax · recipe" in [row[0] for row in accuracy.main_table(result).rows]
    html = compact.compact_html(result, rows)
    assert html.index("lra/* presets</th>") < html.index("recipe/* presets</th>")
    assert "| softmax | recipe/* | LRA Transformer | 40.00 (n=1) · LRA 36.37 (+3.63) [c" in (
        compact_markdown_text(result, rows))


def compact_markdown_text(result: cells.AccuracyResult, rows: list[compact.CompactRow]) -> str:
    return markdown(compact.table(result, rows))


def test_a_config_change_stands_only_where_the_preset_has_no_result(records: RecordWriter,
                                                                    presets: PresetConfigs) -> None:
    records.write("x1", preset="lra/text", seed=0, best=0.63, last=0.62, overrides=("task.max_length=1000",))
    records.write("x2", preset="lra/listops", seed=0, best=0.30, last=0.30, overrides=("task.max_length=1000",))
    records.write("x3", preset="lra/listops", seed=0, best=0.35, last=0.35)
    _, (row,) = compact_of(records.runs_dir, presets)
    assert compact.marks(row.cells["text"]) == ["† task.max_length=1000"]
    assert [run.run_id for run in row.cells["listops"].counted] == ["x3"]


def test_colour_follows_the_difference() -> None:
    assert compact.colour(None) == compact.colour(0.5) == ""
    def rgb(style: str) -> tuple[int, int, int]:
        value = style.removeprefix("background:#")
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)

    above, below = rgb(compact.colour(3.0)), rgb(compact.colour(-3.0))
    assert above[1] > above[0] and below[0] > below[1]  # green above the published number, red below
    assert compact.colour(-25.0) == compact.colour(-compact.COLOUR_SPAN) != compact.colour(-5.0)


def test_published_only_models_are_those_no_row_is_compared_with(report_records: Path,
                                                                 presets: PresetConfigs) -> None:
    _, rows = compact_of(report_records, presets)
    only = compact.published_only(rows)
    assert "Transformer" not in only and "Performer" not in only and "Linformer" in only
    assert len(only) == 9
