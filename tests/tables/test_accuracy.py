"""LRA Table 1 from synthetic run records: every cell, the published rows, protocols, shortening, parameters."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lra.tables import accuracy, cells, published
from lra.tables.build import Settings, build
from lra.tables.runs import RecordError, describe_data_source, load_local
from lra.tables.variants import PresetConfigs
from tests.tables.conftest import RecordWriter

NOT_RUN = "not run"


def result_of(runs_dir: Path, presets: PresetConfigs, checkpoint: str = "best") -> cells.AccuracyResult:
    return cells.build(load_local(runs_dir), presets, checkpoint)


def rows_by_name(table) -> dict[str, list[str]]:
    return {row[0]: row for row in table.rows}


def test_every_cell_of_the_main_table(scenario: Path, presets: PresetConfigs) -> None:
    table = accuracy.main_table(result_of(scenario, presets))
    rows = rows_by_name(table)
    assert table.columns == ["Model", "Source", "ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X",
                             "Avg"]
    assert rows["softmax · lra"][2:] == ["37.00 ± 1.41 (n=2) [c1]", "64.00 (n=1) [c2]", NOT_RUN,
                                         "41.00 (n=1; 2,000 of 35,000 steps) [c3]", NOT_RUN, NOT_RUN, ""]
    # other protocols get their own rows, never averaged with the preset's runs
    assert rows["softmax · lra · validation test, data stanfordnlp/imdb (HF)"][2:] == [
        NOT_RUN, "70.00 (n=1) [c4]", NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, ""]
    assert rows["softmax · lra · task.validation=holdout"][2:] == [
        NOT_RUN, "62.00 (n=1) [c5]", NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, ""]
    assert rows["performer · lra"][2:] == ["20.00 (n=1) [c6]", "no result (1 failed) [c7]", NOT_RUN, NOT_RUN,
                                           NOT_RUN, NOT_RUN, ""]
    ours = [row[0] for row, kind in zip(table.rows, table.kinds, strict=True) if kind == "ours"]
    assert ours == ["softmax · lra", "softmax · lra · validation test, data stanfordnlp/imdb (HF)",
                    "softmax · lra · task.validation=holdout", "performer · lra"]


def test_differences_and_parameters_beside_each_row(scenario: Path, presets: PresetConfigs) -> None:
    table = accuracy.main_table(result_of(scenario, presets))
    ours = table.rows.index(rows_by_name(table)["softmax · lra"])
    params, delta = table.rows[ours + 1], table.rows[ours + 2]
    assert params[2:] == ["100.0k (1.00×)", "60.0k (1.00×)", "", "50.0k (1.00×)", "", "", "10% rule: ok"]
    assert delta[0] == "↳ Δ vs LRA Transformer"
    assert delta[2:] == ["+0.63", "-0.27", "", "-1.44", "", "", ""]
    performer = table.rows.index(rows_by_name(table)["performer · lra"])
    assert table.rows[performer + 1][2:4] == ["125.0k (1.25×) ⚠", "—"]
    assert table.rows[performer + 1][-1] == "⚠ over LRA's 10% rule: ListOps 1.25×"
    assert table.rows[performer + 2][0] == "↳ Δ vs LRA Performer"
    assert table.rows[performer + 2][2] == "+1.99"  # 20.00 - 18.01


def test_published_rows_are_lra_table1_verbatim(scenario: Path, presets: PresetConfigs) -> None:
    table = accuracy.main_table(result_of(scenario, presets))
    published_rows = [row for row, kind in zip(table.rows, table.kinds, strict=True) if kind == "published"]
    assert [row[0] for row in published_rows] == list(published.LRA_TABLE1.rows)
    assert published_rows[0] == ["Transformer", "LRA Table 1", "36.37", "64.27", "57.46", "42.44", "71.40", "FAIL",
                                 "54.39"]
    assert published_rows[6][-1] == "51.39 *"  # Sinkhorn's Avg as printed, flagged
    assert "Tay et al." in table.caption and "03_experimental-results.md" in table.caption


def test_protocol_of_each_cell_is_explicit(scenario: Path, presets: PresetConfigs) -> None:
    notes = accuracy.protocol_notes(result_of(scenario, presets))
    assert len(notes) == 7
    assert notes[0].startswith("[c1] ListOps, softmax, preset lra/listops; test accuracy of the best-validation")
    assert "validation split: val; data: listops-1000" in notes[0]
    assert "2 finished run(s), seeds 1, 2: 36.00, 38.00 (runs a1, a2)" in notes[0]
    assert "not counted: run a3 (failed: OutOfMemoryError: CUDA out of memory)" in notes[0]
    assert "validation split: test; data: aclImdb" in notes[1]
    assert "SHORTENED: 2,000 of the preset's 35,000 steps" in notes[2] and "data: CIFAR-10, JPEG q75 copy" in notes[2]
    assert "differs from the preset: task.validation=holdout" in notes[4]
    assert "not counted: run p1 (running)" in notes[5]


def test_last_checkpoint_on_request(scenario: Path, presets: PresetConfigs) -> None:
    result = result_of(scenario, presets, checkpoint="last")
    table = accuracy.main_table(result)
    assert rows_by_name(table)["softmax · lra"][2] == "32.00 ± 2.83 (n=2) [c1]"
    assert "test/acc@last" in table.caption
    with pytest.raises(ValueError, match="checkpoint='final'; valid: best, last"):
        result_of(scenario, presets, checkpoint="final")


def test_average_only_over_five_complete_cells(records, presets: PresetConfigs) -> None:
    for task, value in {"listops": 0.40, "text": 0.60}.items():
        records.write(task, preset=f"lra/{task}", best=value, last=value)
    result = result_of(records.runs_dir, presets)
    assert result.rows[0].average is None  # three tasks not run: no Avg, never a partial one
    row = result.rows[0]
    for column, value in zip(("retrieval", "image", "pathfinder"), (50.0, 45.0, 70.0), strict=True):
        row.cells[column] = cells.Cell(column, "softmax", f"lra/{column}", row.cells["text"].departure, "val",
                                          "x", "best", counted=[_run_with(value)])
    assert row.average == pytest.approx((40 + 60 + 50 + 45 + 70) / 5)


def _run_with(percent: float):
    from lra.tables.runs import Run

    return Run("x", "x", "finished", "text", "softmax", "lra/text", 0, 1, "val", "x", {},
               metrics={"test/acc@best": percent / 100})


def test_runs_without_preset_or_column_are_listed_not_tabled(scenario: Path, presets: PresetConfigs) -> None:
    result = result_of(scenario, presets)
    runs = {row[0]: row for row in accuracy.runs_table(result).rows}
    assert runs["q1"][-1] == "not in Table 1: no preset: not a published setup"
    assert runs["a3"][1] == "failed" and runs["a3"][-1] == "not counted (failed), listed in [c1]"
    assert runs["a1"][-1] == "counted in [c1]"
    assert len(runs) == 11


def test_numbers_come_only_from_records(scenario: Path, presets: PresetConfigs) -> None:
    record_path = scenario / "a1.json"
    record = json.loads(record_path.read_text())
    record["metrics"]["test/acc@best"] = 0.30
    record_path.write_text(json.dumps(record))
    assert rows_by_name(accuracy.main_table(result_of(scenario, presets)))["softmax · lra"][2].startswith("34.00")
    for path in scenario.glob("*.json"):
        path.unlink()
    empty = accuracy.main_table(result_of(scenario, presets))
    assert set(empty.kinds) == {"published"}


def test_written_files(scenario: Path, presets: PresetConfigs, tmp_path: Path) -> None:
    settings = Settings(runs_dir=scenario, bench_dir=tmp_path / "none", tables_dir=tmp_path / "tables", report=None)
    written = build(settings, presets)
    assert sorted(p.name for p in written) == ["lra_accuracy.csv", "lra_accuracy.md", "lra_accuracy.tex",
                                               "lra_accuracy_cells.csv", "lra_compact.md", "lra_efficiency.csv",
                                               "lra_efficiency.md", "lra_figure3.png"]
    wide = {(row["row"], row["kind"]): row for row in csv.DictReader(io.StringIO(
        (tmp_path / "tables" / "lra_accuracy.csv").read_text()))}
    ours = wide["softmax · lra", "ours"]
    assert (ours["listops"], ours["listops_std"], ours["listops_n"]) == ("37.0", "1.41", "2")
    assert (ours["retrieval"], ours["retrieval_n"]) == ("not run", "0")
    assert wide["softmax · lra", "difference"]["listops"] == "0.63"
    assert wide["Transformer", "published"]["pathx"] == "FAIL"
    assert wide["Standard", "published"]["retrieval"] == "79.35"
    cells = list(csv.DictReader(io.StringIO((tmp_path / "tables" / "lra_accuracy_cells.csv").read_text())))
    image = next(c for c in cells if c["task"] == "image")
    assert (image["shortened"], image["steps"], image["preset_steps"], image["mean"]) == ("True", "2000", "35000",
                                                                                        "41.0")
    markdown = (tmp_path / "tables" / "lra_accuracy.md").read_text()
    assert "| softmax · lra | ours (lra/* presets) | 37.00 ± 1.41 (n=2) [c1] |" in markdown
    assert "## Protocol of each of our cells" in markdown and "Second reference" in markdown
    tex = (tmp_path / "tables" / "lra_accuracy.tex").read_text()
    assert r"37.00 $\pm$ 1.41 (n=2) [c1]" in tex and r"\bottomrule" in tex


def test_corrupt_record_is_named_not_skipped(scenario: Path) -> None:
    (scenario / "broken.json").write_text('{"run_id": "x", ')
    with pytest.raises(RecordError, match=r"broken\.json: not a valid run record"):
        load_local(scenario)
    (scenario / "broken.json").write_text('{"run_id": "x"}')
    with pytest.raises(RecordError, match=r"broken\.json: run record lacks status, task, attention"):
        load_local(scenario)


def test_missing_runs_folder_says_where(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no run records: .*nowhere is not a folder"):
        load_local(tmp_path / "nowhere")


@pytest.mark.parametrize(("source", "label"), [
    ({"data_source": "CIFAR-10, JPEG q75 copy", "source": "/x/cifar10", "cache": "/c"}, "CIFAR-10, JPEG q75 copy"),
    ({"files": {"train": "/d/listops-1000/basic_train.tsv"}, "cache": "/c"}, "listops-1000"),
    ({"cache": "/c", "folder": "/data/raw/lra_release/pathfinder32/curv_contour_length_14"},
     "pathfinder32/curv_contour_length_14"),
    ("aclImdb folder", "aclImdb folder"), (None, "not recorded"),
    # the records of 2026-12-03 and -04 named the generated folder: the same data as the earlier runs'
    ({"data_source": "generated with LRA's released listops rules (seed 0, 96000/2000/2000; "
                     "data/raw/listops-generated-4a7df77cfcd9f956)"},
     "generated with LRA's released listops rules (seed 0, 96000/2000/2000)")])
def test_data_source_labels(source, label: str) -> None:
    assert describe_data_source(source) == label


def test_parameter_reference_is_softmax_of_the_same_setting(records, presets) -> None:
    records.write("v1", preset="lra/listops", overrides=("precision=16",), attention="performer", params=5_000,
                  best=0.3, last=0.3)
    table = accuracy.main_table(result_of(records.runs_dir, presets))
    variant = table.rows.index(rows_by_name(table)["performer · lra · precision=16"])
    params = table.rows[variant + 1]
    assert params[2] == "5.0k" and params[-1] == "10% rule: no softmax run for ListOps"

    records.write("s1", preset="lra/listops", params=4_000, best=0.3, last=0.3)
    table = accuracy.main_table(result_of(records.runs_dir, presets))
    variant = table.rows.index(rows_by_name(table)["performer · lra · precision=16"])
    assert table.rows[variant + 1][2] == "5.0k (1.25×) ⚠"  # no softmax variant: the preset as published

    records.write("s2", preset="lra/listops", overrides=("precision=16",), params=5_000, best=0.3, last=0.3)
    table = accuracy.main_table(result_of(records.runs_dir, presets))
    rows = rows_by_name(table)
    for name in ("performer · lra · precision=16", "softmax · lra · precision=16"):
        params = table.rows[table.rows.index(rows[name]) + 1]
        assert params[2] == "5.0k (1.00×)" and params[-1] == "10% rule: ok"


def test_time_capped_runs_pool_into_one_shortened_cell(conf_dir: Path, presets: PresetConfigs,
                                                       tmp_path: Path) -> None:
    records = RecordWriter(conf_dir, tmp_path / "runs")
    records.write("full", preset="lra/listops", seed=0, best=0.36, last=0.36)
    for run_id, seed, steps, best in (("cap1", 1, 3351, 0.30), ("cap2", 2, 2551, 0.20)):
        record = records.write(run_id, preset="lra/listops", seed=seed, best=best, last=best)
        record["metrics"]["step"] = steps  # a trainer.max_time cap stopped it here, before max_steps
        (tmp_path / "runs" / f"{run_id}.json").write_text(json.dumps(record))
    result = result_of(tmp_path / "runs", presets)
    rows = rows_by_name(accuracy.main_table(result))
    assert rows["softmax · lra"][2] == "36.00 (n=1) [c1]"
    assert rows["softmax · lra · shortened (of 5,000 steps)"][2] == \
        "25.00 ± 7.07 (n=2; 2,551–3,351 of 5,000 steps) [c2]"
    notes = accuracy.protocol_notes(result)
    assert "SHORTENED: 2,551–3,351 of the preset's 5,000 steps" in notes[1]
    assert "seeds 1, 2: 30.00, 20.00 at 3,351, 2,551 steps" in notes[1]


def test_a_seed_run_again_counts_once_with_its_longest_run(conf_dir: Path, presets: PresetConfigs,
                                                           tmp_path: Path) -> None:
    records = RecordWriter(conf_dir, tmp_path / "runs")
    for run_id, seed, steps, best in (("long0", 0, 1751, 0.16), ("short0", 0, 391, 0.40), ("long1", 1, 1751, 0.18)):
        record = records.write(run_id, preset="lra/listops", seed=seed, best=best, last=best)
        record["metrics"]["step"] = steps
        (tmp_path / "runs" / f"{run_id}.json").write_text(json.dumps(record))
    result = result_of(tmp_path / "runs", presets)
    cell = rows_by_name(accuracy.main_table(result))["softmax · lra"][2]
    assert cell == "17.00 ± 1.41 (n=2; 1,751 of 5,000 steps) [c1]"
    notes = accuracy.protocol_notes(result)
    assert "not counted: run short0 (seed 0 counts once: run long0 trained more steps)" in notes[0]
    placement = {row[0]: row[-1] for row in accuracy.runs_table(result).rows}
    assert placement["short0"].startswith("not counted (seed 0 counts once") and placement["long0"] == "counted in [c1]"


def test_a_cell_within_a_point_of_the_majority_label_reads_at_chance(conf_dir: Path, presets: PresetConfigs,
                                                                      tmp_path: Path) -> None:
    records = RecordWriter(conf_dir, tmp_path / "runs")
    for run_id, attention, seed, overrides, best, majority in (
            ("s0", "softmax", 0, (), 0.159, 0.157), ("s1", "softmax", 1, (), 0.170, 0.157),
            ("p0", "performer", 0, (), 0.1675, 0.157), ("q0", "performer", 0, ("precision=16",), 0.157, None)):
        record = records.write(run_id, preset="lra/listops", attention=attention, seed=seed, overrides=overrides,
                               best=best, last=best)
        if majority is not None:
            record["metrics"]["test/majority_acc"] = majority
        (tmp_path / "runs" / f"{run_id}.json").write_text(json.dumps(record))
    result = result_of(tmp_path / "runs", presets)
    rows = rows_by_name(accuracy.main_table(result))
    assert rows["softmax · lra"][2] == "16.45 ± 0.78 (n=2; at chance: 15.70) [c1]"  # 0.75 points above it
    assert rows["performer · lra"][2] == "16.75 (n=1) [c2]"  # 1.05 points above: beyond the margin
    assert rows["performer · lra · precision=16"][2] == "15.70 (n=1) [c3]"  # an older record: chance unknown
    notes = accuracy.protocol_notes(result)
    assert "chance (always the test split's most common label): 15.70; AT CHANCE (within 1 point)" in notes[0]
    assert "chance (always the test split's most common label): 15.70" in notes[1] and "AT CHANCE" not in notes[1]
    assert "chance" not in notes[2]
    at_chance = [row[accuracy.CELL_FIELDS.index("at_chance")] for row in accuracy.cell_rows(result)]
    assert at_chance == [True, False, False]


def test_options_added_after_a_run_and_speed_options_make_no_variant() -> None:
    """A record written before an option existed had the option's default; compile and unpad change no result."""
    from lra.tables.variants import compare

    preset = {"task": {"bucket": False, "max_length": 2000}, "model": {"compile": "auto", "unpad": "auto"},
              "trainer": {"max_steps": 5000}}
    older = {"task": {"max_length": 2000}, "model": {"compile": False}, "trainer": {"max_steps": 5000}}
    assert compare(older, preset).label() == ""
    assert compare({**older, "task": {"max_length": 2000, "bucket": True}}, preset).label() == "task.bucket=True"


def test_a_seed_run_again_for_as_many_steps_counts_its_latest_run(conf_dir: Path, presets: PresetConfigs,
                                                                  tmp_path: Path) -> None:
    """Between runs of one seed with equal steps the later one stands, whatever their scores: no choosing."""
    records = RecordWriter(conf_dir, tmp_path / "runs")
    for run_id, created, best in (("zzold", "2026-11-23T08:00:00+0000", 0.37), ("aanew", "2026-12-02T17:00:00+0000",
                                                                               0.30)):
        record = records.write(run_id, preset="lra/listops", seed=1, best=best, last=best)
        record["created"] = created
        (tmp_path / "runs" / f"{run_id}.json").write_text(json.dumps(record))
    result = result_of(tmp_path / "runs", presets)
    assert rows_by_name(accuracy.main_table(result))["softmax · lra"][2].startswith("30.00 (n=1")
    assert "not counted: run zzold (seed 1 counts once: run aanew is a later run of as many steps)" in \
        accuracy.protocol_notes(result)[0]


def test_each_cell_says_what_its_timed_runs_took(records, presets: PresetConfigs) -> None:
    """What one more seed of a cell costs, from the records that measured it (older ones lack fit_seconds)."""
    records.write("m1", preset="lra/listops", seed=0, best=0.36, last=0.36, device="NVIDIA H200",
                  efficiency={"steps_per_s": 48.4, "fit_seconds": 160.1})
    records.write("m2", preset="lra/listops", seed=1, best=0.35, last=0.35, efficiency={"steps_per_s": 8.0})
    result = result_of(records.runs_dir, presets)
    (note,) = accuracy.protocol_notes(result)
    assert note.endswith("training and validation took 2.7 min (m1, NVIDIA H200)")
    (row,) = accuracy.cell_rows(result)
    assert row[accuracy.CELL_FIELDS.index("fit_minutes")] == "2.67"


def test_a_task_without_runs_says_why_until_a_run_covers_it(scenario: Path, presets: PresetConfigs) -> None:
    result = result_of(scenario, presets)
    covered = {task for row in result.rows for task in row.cells}
    assert "listops" in covered and "retrieval" not in covered
    reasons = {"retrieval": "its data cannot be downloaded here", "listops": "never shown: ListOps has runs"}
    notes = accuracy.main_table(result, reasons).notes
    assert "Retrieval: no run of ours: its data cannot be downloaded here." in notes
    assert not [note for note in notes if "never shown" in note]
    with pytest.raises(ValueError, match="unknown task"):
        accuracy.main_table(result, {"imdb": "a typo"})
