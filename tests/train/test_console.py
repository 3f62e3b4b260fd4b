"""What ``python train.py`` prints and the files it writes, run as a user runs it (one subprocess, shared)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lra.train.run import train
from tests.helpers import ROOT, TINY_RUN, compose_train, user_environment


@pytest.fixture(scope="module")
def command_line_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("console")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY_RUN, "logger=none", "run_id=console"],
                            cwd=cwd, env=user_environment(), capture_output=True, text=True, timeout=600,
                            preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, result


def test_each_log_line_is_printed_once(command_line_run) -> None:
    _, result = command_line_run
    console = result.stdout + result.stderr
    assert console.count("GPU available: False, used: False") == 1
    assert console.count("`Trainer.fit` stopped: `max_steps=20` reached.") == 1


def test_no_weights_only_message(command_line_run) -> None:
    _, result = command_line_run
    assert "weights_only" not in result.stdout + result.stderr


def test_the_summary_names_the_majority_label_accuracy(command_line_run) -> None:
    cwd, result = command_line_run
    record = json.loads((cwd / "results/runs/console.json").read_text())
    majority = record["metrics"]["test/majority_acc"]
    assert f"; always the most common label: {100 * majority:.2f}%;" in result.stdout


def test_records_and_checkpoints_get_the_mode_the_umask_gives(command_line_run) -> None:
    cwd, _ = command_line_run
    files = [cwd / "results/runs/console.json", *cwd.glob("models/**/console/checkpoints/*")]
    assert len(files) == 5  # the record, best and last checkpoints, and their digests
    assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {oct(0o644)}


def test_a_run_shorter_than_its_warmup_says_its_speed_was_not_measured(workdir: Path, capsys) -> None:
    train(compose_train([*TINY_RUN, "trainer.max_steps=4", "trainer.val_check_interval=4",
                         "measure_warmup_steps=10", "logger=none"]))
    out = capsys.readouterr().out
    assert "  throughput: not measured: no step came after the 10 warm-up steps (measure_warmup_steps)" in out
    assert "None" not in out
