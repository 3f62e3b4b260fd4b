"""The report's figures: the Figure 3 view (ours beside LRA's points), mean training curves with a band, and
benchmark plots that draw only lines of two points or more, with labelled ticks."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from lra.results.bench import load_bench
from lra.tables import cells, compact, efficiency, plots
from lra.tables.runs import load_local
from lra.tables.variants import PresetConfigs
from tests.tables.conftest import RecordWriter
from tests.tables.test_efficiency import write_bench, write_bench_fixture


@pytest.fixture
def rows(report_records: Path, presets: PresetConfigs) -> list[compact.CompactRow]:
    return compact.compact_rows(cells.build(load_local(report_records), presets))


@pytest.fixture
def entries(tmp_path: Path) -> list[efficiency.Entry]:
    return efficiency.bench_entries(load_bench(write_bench_fixture(tmp_path / "bench")))


def test_our_points_sit_at_the_benchmark_speed_and_memory_over_softmax(rows, entries) -> None:
    group = plots.speed_group(entries, 2048, None)
    points = {(p.label, p.family): p for p in plots.our_points("listops", rows, group)}
    assert sorted(points) == [("performer", "lra"), ("softmax", "lra"), ("softmax (recipe)", "recipe")]
    performer = points["performer", "lra"]  # 100 ms against softmax's 400 ms, 1000 MiB against 4000
    assert (performer.speed, performer.memory, performer.accuracy) == (4.0, 0.25, pytest.approx(20.0))
    softmax = points["softmax", "lra"]
    assert (softmax.speed, softmax.memory, softmax.accuracy) == (1.0, 1.0, pytest.approx(37.0))
    assert softmax.std == pytest.approx(1.414, abs=1e-3)
    assert performer.colour == plots.backend_colour("performer") == plots.BACKEND_COLOURS["performer"]


def test_published_points_are_lra_tables_1_and_2_over_the_transformer() -> None:
    points = {p.label: p for p in plots.published_points("listops", 4096)}
    assert points["Performer"].speed == pytest.approx(8.0 / 1.4)
    assert points["Performer"].memory == pytest.approx(1.06 / 9.48)
    assert points["Performer"].accuracy == 18.01 and not points["Performer"].ours
    assert points["Performer"].colour == plots.BACKEND_COLOURS["performer"]  # as ours, hollow
    assert points["Reformer"].colour == plots.BACKEND_COLOURS["reformer"]
    assert "Longformer" not in points  # not timed in LRA Table 2
    average = {p.label: p.accuracy for p in plots.published_points("avg", 1024)}
    assert average["Transformer"] == 54.39


def test_figure3_png_and_caption(rows, entries) -> None:
    figure = plots.figure3(rows, entries, 2048, None)
    Image.open(io.BytesIO(figure.png)).verify()
    assert "(ours: h100)" in figure.title
    assert "No time at this length: taylorshift direct (oom)." in figure.caption
    assert "bf16, batch 32, 4 heads × 64" in figure.caption
    without_bench = plots.figure3(rows, [], 2048, None)
    assert "no benchmark at N = 2048 yet" in without_bench.caption
    with pytest.raises(ValueError, match=r"figure3.length=5000: LRA Table 2 reports \[1024, 2048, 3072, 4096\]"):
        plots.figure3(rows, entries, 5000, None)


def test_curves_are_one_mean_line_per_backend_with_a_band(records: RecordWriter, presets: PresetConfigs) -> None:
    for seed, accuracies in ((0, (0.2, 0.3, 0.5)), (1, (0.4, 0.5, 0.5)), (2, (0.3, 0.4))):
        history = [{"step": 50 * (i + 1), "val/acc": a} for i, a in enumerate(accuracies)]
        records.write(f"s{seed}", preset="lra/listops", seed=seed, best=0.3, last=0.3, history=history)
    rows = compact.compact_rows(cells.build(load_local(records.runs_dir), presets))
    (line,) = plots.curve_lines(rows)
    assert (line.row.attention, line.task, line.runs) == ("softmax", "listops", 3)
    assert list(line.steps) == [50, 100]  # the steps every seed reached
    assert list(line.mean) == pytest.approx([30.0, 40.0])
    assert (list(line.low), list(line.high)) == (pytest.approx([20.0, 30.0]), pytest.approx([40.0, 50.0]))
    assert len(plots.curve_figures(rows)) == 1


def test_a_benchmark_of_one_length_draws_no_plot(tmp_path: Path) -> None:
    write_bench(tmp_path / "bench" / "h100" / "loop.csv", [
        ("bare", "softmax", "loop", 2048, 47.0, 500.0, "ok"), ("harness", "softmax", "loop", 2048, 49.0, 510.0, "ok")])
    assert plots.bench_figures(load_bench(tmp_path / "bench")) == []
    write_bench_fixture(tmp_path / "bench")  # model level at two lengths: one figure; the one-length core: none
    assert len(plots.bench_figures(load_bench(tmp_path / "bench"))) == 1


@pytest.mark.parametrize("values", [(12.0, 20.0, 35.0), (47.0, 48.0, 49.0), (1.0, 100.0, 60000.0)])
def test_value_axes_label_two_ticks_or_more_however_narrow(values: tuple[float, ...]) -> None:
    figure, axis = plt.subplots()
    axis.plot([1024, 2048, 4096], values)
    plots._log_axis(axis, "time per step (ms)")
    figure.canvas.draw()
    low, high = axis.get_ylim()
    labels = [t.get_text() for t in axis.get_yticklabels() if low <= t.get_position()[1] <= high and t.get_text()]
    plt.close(figure)
    assert len(labels) >= 2, labels
    assert axis.get_ylabel() == "time per step (ms)" and axis.get_xlabel() == "sequence length N"


def test_every_backend_keeps_one_colour() -> None:
    known = list(plots.BACKEND_COLOURS.values())
    assert len(set(known)) == len(known)
    assert plots.backend_colour("newattention") == plots.backend_colour("newattention") in plots.SPARE_COLOURS
