"""``python -m lra.tables`` as a user runs it: files written, and short errors without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_tables(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lra.tables", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_writes_every_file_from_an_empty_results_folder(tmp_path: Path) -> None:
    (tmp_path / "results" / "runs").mkdir(parents=True)
    result = run_tables(f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tables = tmp_path / "results" / "tables"
    assert sorted(p.name for p in tables.iterdir()) == [
        "lra_accuracy.csv", "lra_accuracy.md", "lra_accuracy.tex", "lra_accuracy_cells.csv", "lra_compact.md",
        "lra_efficiency.csv", "lra_efficiency.md", "lra_figure3.png"]
    assert "| Transformer | LRA Table 1 | 36.37 | 64.27 | 57.46 | 42.44 | 71.40 | FAIL | 54.39 |" in (
        tables / "lra_accuracy.md").read_text()
    assert (tmp_path / "results" / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no Hydra output folder, no log file


@pytest.mark.parametrize(("args", "message"), [
    (["runs_dir=nowhere"], "error: no run records: nowhere is not a folder"),
    (["checkpoint=final"], "error: checkpoint='final'; valid: best, last"),
    (["figure3.length=5000"], "error: figure3.length=5000: LRA Table 2 reports [1024, 2048, 3072, 4096]"),
])
def test_bad_input_gives_one_short_error(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "results" / "runs").mkdir(parents=True)
    result = run_tables(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
