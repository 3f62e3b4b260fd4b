"""Speed and memory relative to softmax: from benchmark CSVs (LRA Table 2 style) and from training records."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lra.results.bench import load_bench
from lra.tables import cells, efficiency
from lra.tables.runs import RecordError, load_local
from tests.tables.conftest import RecordWriter

# The columns lra.bench writes (lra/results/bench.py, COLUMNS), spelled out: a test of the reader, not a copy.
BENCH_COLUMNS = ("backend", "series", "options", "level", "mode", "dtype", "batch", "heads", "head_dim", "length",
                 "time_ms", "peak_mib", "tokens_per_s", "status", "note", "repeats", "timer", "device", "torch",
                 "date", "commit", "command")


def write_bench(path: Path, points: list[tuple]) -> None:
    """points: (series, backend, level, length, time_ms, peak_mib, status)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, BENCH_COLUMNS)
        writer.writeheader()
        for series, backend, level, length, time_ms, peak, status in points:
            writer.writerow({"backend": backend, "series": series, "options": "", "level": level, "mode": "fwd_bwd",
                             "dtype": "bf16", "batch": 32, "heads": 4, "head_dim": 64, "length": length,
                             "time_ms": time_ms, "peak_mib": peak, "tokens_per_s": "", "status": status, "note": "",
                             "repeats": 10, "timer": "cuda_events", "device": "NVIDIA H100", "torch": "2.11",
                             "date": "2026-11-23", "commit": "abc", "command": "python -m lra.bench"})


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    return write_bench_fixture(tmp_path / "bench")


def write_bench_fixture(root: Path) -> Path:
    write_bench(root / "h100" / "model.csv", [
        ("softmax", "softmax", "model", 1024, 100.0, 1000.0, "ok"),
        ("softmax", "softmax", "model", 2048, 400.0, 4000.0, "ok"),
        ("softmax", "softmax", "model", 8192, 6400.0, 64000.0, "ok"),  # outside LRA's 1K..4K
        ("performer", "performer", "model", 1024, 50.0, 500.0, "ok"),
        ("performer", "performer", "model", 2048, 100.0, 1000.0, "ok"),
        ("taylorshift direct", "taylorshift", "model", 1024, 200.0, 3000.0, "ok"),
        ("taylorshift direct", "taylorshift", "model", 2048, "", "", "oom"),
        ("softmax", "softmax", "core", 1024, 1.0, 10.0, "ok"),  # the attention core alone: not a training step
    ])
    return root


def test_bench_table_is_lra_table2_style(bench_dir: Path) -> None:
    entries = efficiency.bench_entries(load_bench(bench_dir))
    (table,) = efficiency.bench_tables(entries)
    assert "h100" in table.title and "bf16, batch 32, 4 heads × 64" in table.title
    assert table.columns == ["Series", "steps/s @1024", "steps/s @2048", "peak MiB @1024", "peak MiB @2048"]
    rows = {row[0]: row[1:] for row in table.rows}
    assert rows["softmax"] == ["10 (1.00×)", "2.5 (1.00×)", "1000 (1.00×)", "4000 (1.00×)"]
    assert rows["performer"] == ["20 (2.00×)", "10 (4.00×)", "500 (0.50×)", "1000 (0.25×)"]
    assert rows["taylorshift direct"] == ["5 (0.50×)", "OOM", "3000 (3.00×)", "OOM"]
    assert list(rows) == ["softmax", "performer", "taylorshift direct"]


def test_newest_point_wins_and_bad_csv_is_named(bench_dir: Path) -> None:
    write_bench(bench_dir / "h100" / "rerun.csv", [("softmax", "softmax", "model", 1024, 50.0, 1000.0, "ok")])
    (bench_dir / "h100" / "rerun.csv").write_text((bench_dir / "h100" / "rerun.csv").read_text().replace(
        "2026-11-23", "2026-11-24"))
    points = {(p.series, p.length, p.level): p for p in load_bench(bench_dir)}
    assert points["softmax", 1024, "model"].time_ms == 50.0
    (bench_dir / "h100" / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RecordError, match=r"other\.csv: not a benchmark CSV of lra.bench \(no column backend"):
        load_bench(bench_dir)


def test_training_runs_speed_and_memory_relative_to_softmax(conf_dir: Path, presets, tmp_path: Path) -> None:
    records = RecordWriter(conf_dir, tmp_path / "runs")
    measured = {"steps_per_s": 10.0, "peak_memory_mib": 1000.0, "tokens_per_s": 2e4,
                "memory_kind": "cuda_max_allocated", "device_processes": 1}
    records.write("s1", preset="lra/listops", seed=1, best=0.3, last=0.3, efficiency=measured)
    records.write("s2", preset="lra/listops", seed=2, best=0.3, last=0.3, efficiency={**measured, "steps_per_s": 12.0})
    # Speeds of a run that shared its GPU, or that cannot say, mean nothing; their peak memory (per process) counts.
    shared = {**measured, "steps_per_s": 3.0, "device_processes": 3, "peak_memory_mib": 1300.0}
    records.write("s3", preset="lra/listops", seed=3, best=0.3, last=0.3, efficiency=shared)
    unknown = {key: value for key, value in measured.items() if key != "device_processes"}
    records.write("s4", preset="lra/listops", seed=4, best=0.3, last=0.3, efficiency={**unknown, "steps_per_s": 1.0})
    records.write("p1", preset="lra/listops", attention="performer", best=0.2, last=0.2,
                  efficiency={**measured, "steps_per_s": 22.0, "peak_memory_mib": 250.0})
    records.write("c1", preset="lra/listops", attention="performer", seed=1, best=0.2, last=0.2, device="cpu (x86_64)",
                  efficiency={**unknown, "steps_per_s": 1.0, "memory_kind": "cpu_peak_rss"})
    result = cells.build(load_local(tmp_path / "runs"), presets)
    table = efficiency.training_table(efficiency.training_entries(result))
    rows = {(row[0], row[3]): row for row in table.rows}
    assert rows["NVIDIA H100", "softmax"][4:8] == ["4", "11 (1.00×)", "2e+04", "1075 (1.00×)"]
    assert rows["NVIDIA H100", "performer"][4:8] == ["1", "22 (2.00×)", "2e+04", "250 (0.23×)"]
    assert rows["cpu (x86_64)", "performer"][5] == "1"  # another device: no ratio to the H100's softmax
    assert rows["NVIDIA H100", "softmax"][1:3] == ["ListOps, preset lra/listops", "2000"]


def test_published_table2_beside() -> None:
    table = efficiency.published_table2()
    rows = {row[0]: row for row in table.rows}
    assert rows["Transformer"][1:] == ["8.1", "4.9", "2.3", "1.4", "0.85", "2.65", "5.51", "9.48"]
    assert rows["Performer"][4] == "8.0 (5.7×)"
    assert "Table 2" in table.caption and "4x4 TPU" in table.caption


def test_training_rows_give_image_tasks_their_pixel_count(conf_dir: Path, presets, tmp_path: Path) -> None:
    records = RecordWriter(conf_dir, tmp_path / "runs")
    measured = {"steps_per_s": 40.0, "peak_memory_mib": 1200.0, "memory_kind": "cuda_max_allocated",
                "device_processes": 1}
    records.write("i1", preset="lra/image", best=0.42, last=0.42, efficiency=measured)
    result = cells.build(load_local(tmp_path / "runs"), presets)
    (entry,) = efficiency.training_entries(result)
    assert (entry.setting, entry.length, entry.steps_per_s) == ("Image, preset lra/image", 1024, 40.0)
