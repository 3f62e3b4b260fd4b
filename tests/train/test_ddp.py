"""Data-parallel training on the CPU: two processes (gloo) train one run, as a user starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY_RUN, run_script, user_environment

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform != "linux", reason="finds the second process through /proc")]

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def records(workdir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((workdir / "results/runs").glob("*.json"))]


def test_two_processes_make_one_run_with_the_whole_split_s_numbers(workdir: Path) -> None:
    done = run_script("train.py", [*TINY_RUN, *DDP, "run_id=ddp1", "logger.wandb.mode=offline"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = records(workdir)  # one record, written by rank 0
    assert record["run_id"] == "ddp1" and record["status"] == "finished" and record["metrics"]["step"] == 20
    efficiency = record["efficiency"]
    assert efficiency["processes"] == 2 and len(efficiency["per_rank"]) == 2
    ranks = efficiency["segments"][-1]["per_rank"]
    assert efficiency["samples_per_s"] == pytest.approx(sum(r["samples_per_s"] for r in efficiency["per_rank"]),
                                                        rel=0.02)
    assert [r["samples"] for r in ranks] == [18 * 16, 18 * 16]  # the global batch of 32 split in two, after warm-up
    assert efficiency["peak_memory_sum_mib"] == pytest.approx(sum(r["peak_memory_mib"] for r in ranks), abs=0.2)
    assert efficiency["peak_memory_mib"] == max(r["peak_memory_mib"] for r in ranks)
    (checkpoints,) = workdir.glob("models/**/ddp1/checkpoints")
    assert sorted(p.suffix for p in checkpoints.iterdir()) == [".ckpt", ".ckpt", ".sha256", ".sha256"]
    assert len(list((checkpoints.parent / "wandb").glob("offline-run-*"))) == 1

    # the test accuracy is the whole test split's: one process evaluating the checkpoint gets the same
    best = record["paths"]["checkpoints"]["best"]
    evaluated = run_script("evaluate.py", [f"ckpt={best}", "split=test", "accelerator=cpu"], workdir)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (evaluation,) = [json.loads(p.read_text()) for p in (workdir / "results/evals").glob("*.json")]
    assert evaluation["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc@best"], abs=1e-6)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_killed_rank_resumes_with_the_other_at_the_same_step(workdir: Path, tmp_path: Path) -> None:
    common = [*TINY_RUN, *DDP, "trainer.max_steps=60", "logger=none"]
    whole = run_script("train.py", [*common, "run_id=whole", "paths.models_dir=" + str(tmp_path / "other")], workdir)
    assert whole.returncode == 0, whole.stderr[-3000:]

    run = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *common, "run_id=cut"], cwd=workdir,
                           env=user_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        last = next(workdir.glob("models/**/cut/checkpoints/last.ckpt"), None)
        if last is not None:  # a validation is done: kill while training goes on
            break
        time.sleep(0.05)
    ranks = children(run.pid)
    assert last is not None and ranks, "the run ended before it could be killed"
    os.kill(ranks[0], signal.SIGKILL)  # rank 1; Lightning's watcher then ends rank 0
    run.wait(timeout=120)

    resumed = run_script("train.py", [*common, "run_id=cut", "ckpt_path=last"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    by_id = {record["run_id"]: record for record in records(workdir)}
    cut, reference = by_id["cut"], by_id["whole"]
    assert cut["resumed"] == 1 and cut["metrics"]["step"] == 60
    # both ranks went on from the same step and data position: the curve and the result of an uninterrupted run
    assert [p["step"] for p in cut["history"]] == [10, 20, 30, 40, 50, 60]
    assert [p["val/acc"] for p in cut["history"]] == [p["val/acc"] for p in reference["history"]]
    assert cut["metrics"]["test/acc@last"] == reference["metrics"]["test/acc@last"]
