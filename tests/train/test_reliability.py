"""What survives faults: a re-run of a finished run, divergence, corrupt checkpoints, kills between checkpoint
writes, and the wandb history of a killed run."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

import lra.train.checkpoints as checkpoints
from lra.train.checkpoints import (
    CheckpointError,
    LastCheckpoint,
    digest_path,
    named_checkpoints,
    read_checked,
    save_checked,
)
from lra.train.cli import EXIT_DIVERGED, EXIT_USER_ERROR, run_or_explain
from lra.train.config import ConfigError
from lra.train.module import LRAModule
from lra.train.run import evaluate, load_checkpoint, should_test, train
from lra.train.stopping import DivergedError, DivergenceGuard
from tests.helpers import TINY_RUN, compose_train, wandb_offline_history

DEAD_PID = 2**22 + 12345  # above Linux's largest pid_max: never a running process


def strict_json(path: Path) -> dict:
    """The record, parsed as a strict parser would: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_rerunning_a_finished_run_leaves_it_as_it_is(finished_run, capsys) -> None:
    before = finished_run.record_path.read_bytes()
    folder = Path(finished_run.record["paths"]["checkpoints"]["last"]).parent
    files = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    record = train(compose_train([*finished_run.overrides, "ckpt_path=last"]))  # what a requeue script runs
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == [f"run finished is already finished (step 20); left as it is. record: {finished_run.record_path}"]
    assert finished_run.record_path.read_bytes() == before
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == files
    assert record["status"] == "finished" and record["metrics"] == finished_run.record["metrics"]


def test_a_run_trained_untested_is_tested_when_resumed(workdir: Path) -> None:
    """What a campaign's next call does with a run that finished training under ``test_after_fit=false``."""
    untested = train(compose_train([*TINY_RUN, "logger=none", "run_id=untested", "test_after_fit=false"]))
    assert untested["status"] == "finished" and not any(key.startswith("test/") for key in untested["metrics"])
    record = train(compose_train([*TINY_RUN, "logger=none", "run_id=untested", "ckpt_path=last"]))
    assert record["metrics"]["step"] == 20 and record["history"] == untested["history"]
    assert record["metrics"]["test/acc@best"] is not None and record["metrics"]["test/acc@last"] is not None


@pytest.mark.parametrize(("setting", "step", "wanted"), [("finished", 20, True), ("finished", 15, False),
                                                         (True, 15, True), (False, 20, False)])
def test_test_after_fit_finished_tests_only_a_run_that_reached_its_last_step(setting, step: int,
                                                                              wanted: bool) -> None:
    assert should_test(setting, SimpleNamespace(global_step=step, max_steps=20)) is wanted


def test_an_unknown_test_after_fit_is_refused_naming_the_valid_values(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="test_after_fit='maybe': expected one of 'finished' or true or false"):
        train(compose_train([*TINY_RUN, "logger=none", "test_after_fit=maybe"]))


def test_a_diverging_run_stops_before_its_first_validation(workdir: Path, capsys) -> None:
    cfg = compose_train([*TINY_RUN, "optimizer.lr=1e6", "trainer.max_steps=50", "trainer.val_check_interval=25",
                         "progress_refresh_steps=5", "logger=none", "run_id=boom"])
    with pytest.raises(SystemExit) as stopped:
        run_or_explain(train, cfg)
    assert stopped.value.code == EXIT_DIVERGED
    message = capsys.readouterr().err.strip().splitlines()
    record = strict_json(workdir / "results/runs/boom.json")
    assert record["status"] == "diverged" and record["divergence"]["checked_every"] == 5
    step = record["divergence"]["step"]
    assert 0 < step < 25 and record["history"] == []  # no validation ran on a diverged model
    assert f"run boom diverged: non-finite training loss at step {step}" in message[0] and len(message) <= 5
    assert "no checkpoint was written before it" in message[1]
    assert not list(workdir.glob("models/**/*.ckpt"))


def test_a_run_that_diverges_after_a_validation_names_its_last_finite_checkpoint(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    step_of = LRAModule._step

    def poisoned(self, batch, *args):  # the loss of every step from the 14th on is NaN, as after an overflow
        loss, logits = step_of(self, batch, *args)
        return (loss * math.nan if self.training and self.trainer.global_step >= 13 else loss), logits

    monkeypatch.setattr(LRAModule, "_step", poisoned)
    cfg = compose_train([*TINY_RUN, "trainer.max_steps=40", "progress_refresh_steps=5", "logger=none",
                         "run_id=late"])
    with pytest.raises(SystemExit) as stopped:
        run_or_explain(train, cfg)
    assert stopped.value.code == EXIT_DIVERGED
    record = strict_json(workdir / "results/runs/late.json")
    divergence = record["divergence"]
    assert divergence["step"] == 14 and divergence["last_finite_step"] == 10  # found at the check of step 15
    last = Path(divergence["last_finite_checkpoint"])
    assert f"last finite checkpoint: {last} (step 10)" in capsys.readouterr().err
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == 10 and all(v.isfinite().all() for v in checkpoint["state_dict"].values())
    assert [point["step"] for point in record["history"]] == [10]
    assert sorted(p.name for p in last.parent.glob("*.ckpt")) == ["best-step10.ckpt", "last.ckpt"]


@contextlib.contextmanager
def host_syncs_refused(device: str, refused: bool):
    """On CUDA, make torch raise on any operation that waits for the device (``set_sync_debug_mode``)."""
    if device == "cuda" and refused:
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_divergence_guard_reads_the_loss_only_at_its_checks(device: str) -> None:
    trainer = SimpleNamespace(global_step=0, strategy=SimpleNamespace(reduce_boolean_decision=lambda bad, all: bad))
    guard = DivergenceGuard(check_every=4)
    guard.on_train_start(trainer, SimpleNamespace(device=torch.device(device)))
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, math.inf, math.nan, 1.8]
    with pytest.raises(DivergedError, match="non-finite training loss at step 6"):
        for trainer.global_step, loss in enumerate(losses, start=1):
            on_device = torch.tensor(loss, device=device)
            with host_syncs_refused(device, refused=trainer.global_step % 4 != 0):  # between checks
                guard.on_train_batch_end(trainer, None, {"loss": on_device}, None, 0)
    assert trainer.global_step == 8  # found at the check after the window of steps 5 to 8


def _corrupt_copy(source: Path, folder: Path) -> Path:
    """A copy of a checkpoint (and its digest) with 40 bytes flipped at offset 60000."""
    copy = folder / "checkpoints" / source.name
    copy.parent.mkdir(parents=True)
    shutil.copy(source, copy)
    shutil.copy(digest_path(source), digest_path(copy))
    data = bytearray(copy.read_bytes())
    data[60000:60040] = bytes(byte ^ 0xFF for byte in data[60000:60040])
    copy.write_bytes(bytes(data))
    return copy


def test_a_corrupted_checkpoint_is_refused_by_evaluate_and_by_resume(finished_run, tmp_path: Path, capsys) -> None:
    copy = _corrupt_copy(Path(finished_run.record["paths"]["checkpoints"]["last"]), tmp_path / "run")
    paths = [f"paths.data_dir={finished_run.root / 'data'}", f"paths.models_dir={tmp_path / 'models'}",
             f"paths.results_dir={tmp_path / 'results'}"]
    with pytest.raises(SystemExit) as refused:
        run_or_explain(evaluate, compose_train([f"ckpt={copy}", "accelerator=cpu", *paths], config_name="evaluate"))
    message = capsys.readouterr().err
    assert refused.value.code == EXIT_USER_ERROR and len(message.strip().splitlines()) <= 5
    assert f"{copy} is corrupt: its sha256 is " in message and "Traceback" not in message
    with pytest.raises(CheckpointError, match=f"{copy} is corrupt"):
        train(compose_train([*TINY_RUN, *paths, "logger=none", f"ckpt_path={copy}"]))
    assert not (tmp_path / "results").exists()  # neither an evaluation record nor a run record


@pytest.mark.parametrize("killed_before_write", [0, 1, 2])
def test_a_checkpoint_replaced_by_a_killed_process_matches_its_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_before_write: int) -> None:
    path = tmp_path / "last.ckpt"
    save_checked(path, b"the state at step 10")
    writes, write = itertools.count(), checkpoints.write_atomic

    def dies(target: Path, data: bytes) -> None:
        if next(writes) == killed_before_write:
            raise KeyboardInterrupt  # the process dies here: nothing after this line of save_checked runs
        write(target, data)

    monkeypatch.setattr(checkpoints, "write_atomic", dies)
    with pytest.raises(KeyboardInterrupt):
        save_checked(path, b"the state at step 20")
    assert read_checked(path) in (b"the state at step 10", b"the state at step 20")
    path.write_bytes(b"the state at step 2O")
    with pytest.raises(CheckpointError, match="is corrupt"):
        read_checked(path)


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the run's own cleanup catches it."""


def _kill_after_best(monkeypatch: pytest.MonkeyPatch) -> None:
    save = LastCheckpoint.save

    def killed(self, trainer) -> None:
        if trainer.global_step == 20:
            raise Killed
        save(self, trainer)

    monkeypatch.setattr(LastCheckpoint, "save", killed)


def _kill_before_last_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    writes, write = itertools.count(1), checkpoints.write_atomic

    def killed(target: Path, data: bytes) -> None:
        if target.name == "last.ckpt" and next(writes) == 2:
            raise Killed
        write(target, data)

    monkeypatch.setattr(checkpoints, "write_atomic", killed)


@pytest.mark.parametrize("kill", [_kill_after_best, _kill_before_last_rename], ids=["after-best", "before-rename"])
def test_a_kill_between_checkpoint_writes_leaves_a_folder_that_resumes_cleanly(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, kill) -> None:
    monkeypatch.setattr(ModelCheckpoint, "check_monitor_top_k", lambda self, trainer, current=None: True)
    monkeypatch.setattr(tempfile, "tempdir", str(workdir / "tmp"))
    (workdir / "tmp").mkdir()
    common = [*TINY_RUN, "trainer.max_steps=30", "logger=none", "run_id=kill7"]  # every validation a new best
    with monkeypatch.context() as killing:
        kill(killing)
        with pytest.raises(Killed):
            train(compose_train(common))
    (folder,) = workdir.glob("models/**/kill7/checkpoints")
    last = load_checkpoint(folder / "last.ckpt")
    assert last["global_step"] == 10 and named_checkpoints(last) == {"best-step10.ckpt"}
    assert (folder / "best-step10.ckpt").is_file()  # last.ckpt names a best checkpoint that exists
    (folder / f".last.ckpt.1a2b3c.partial-{DEAD_PID}").write_bytes(b"half a checkpoint")  # a real kill's leftover

    resumed = train(compose_train([*common, "ckpt_path=last"]))
    assert resumed["status"] == "finished" and resumed["metrics"]["test/acc@best"] is not None
    assert sorted(p.name for p in folder.iterdir()) == [
        "best-step30.ckpt", "best-step30.ckpt.sha256", "last.ckpt", "last.ckpt.sha256"]
    assert not list((workdir / "tmp").iterdir())  # nothing written outside the run's folder


def test_a_resumed_run_keeps_the_wandb_history_a_kill_lost(workdir: Path, capsys) -> None:
    common = [*TINY_RUN, "task.num_train=3200", "logger.wandb.mode=offline", "run_id=wb8"]
    first = train(compose_train([*common, "trainer.max_steps=20"]))
    (segment,) = first["paths"]["wandb_segments"]
    (log,) = Path(segment).glob("run-*.wandb")
    log.write_bytes(log.read_bytes()[:7])  # what a kill inside wandb's 15 s write interval leaves: the header
    capsys.readouterr()

    last = first["paths"]["checkpoints"]["last"]
    resumed = train(compose_train([*common, "trainer.max_steps=30", f"ckpt_path={last}"]))
    earlier, latest = resumed["paths"]["wandb_segments"]
    assert earlier == segment and latest == resumed["paths"]["wandb"]
    validations = [row for row in wandb_offline_history(Path(latest)) if "val/acc" in row]
    replayed = [{"step": row["trainer/global_step"], **{key: row[key] for key in point if key != "step"}}
                for row, point in zip(validations, first["history"], strict=False)]
    assert replayed == first["history"] and len(validations) == 3  # the first process's two, and step 30
    assert f"wandb: {earlier}, {latest}" in capsys.readouterr().out


@pytest.mark.parametrize(("every_s", "written_at"), [(0, [10, 20, 30]), (3600, [30])])
def test_last_checkpoint_follows_a_validation_only_once_its_interval_has_passed(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, every_s: int, written_at: list[int]) -> None:
    steps, save = [], LastCheckpoint.save

    def recorded(self, trainer) -> None:
        before = self.saved_step
        save(self, trainer)
        if self.saved_step != before:
            steps.append(self.saved_step)

    monkeypatch.setattr(LastCheckpoint, "save", recorded)
    record = train(compose_train([*TINY_RUN, "trainer.max_steps=30", "logger=none", f"checkpoint_every_s={every_s}"]))
    assert steps == written_at  # and always when training ends, so the finished run resumes from its last step
    assert load_checkpoint(record["paths"]["checkpoints"]["last"])["global_step"] == 30


def test_last_checkpoint_interval_counts_from_its_last_write(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 30.0, 61.0, 90.0, 125.0])  # creation, then one reading per validation (and per write)
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: next(clock))
    writer = LastCheckpoint("unused", best=None, every_s=60)
    written = []
    monkeypatch.setattr(writer, "save", lambda trainer: (written.append(trainer.global_step),
                                                         setattr(writer, "saved_at", 61.0)))
    fitting = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn=checkpoints.TrainerFn.FITTING),
                              strategy=SimpleNamespace(broadcast=lambda decision: decision))
    for step in (10, 20, 30, 40):
        fitting.global_step = step
        writer.on_validation_end(fitting, None)
    assert written == [20, 40]  # 61 s after the start, then 125 - 61 = 64 s after that write


def test_rank_zeros_clock_decides_whether_every_rank_writes_last_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LastCheckpoint("unused", best=None, every_s=3600)  # this rank's clock: never due
    written = []
    monkeypatch.setattr(writer, "save", lambda trainer: written.append(trainer.global_step))
    rank_zero_due = SimpleNamespace(broadcast=lambda decision: True)
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn=checkpoints.TrainerFn.FITTING),
                              strategy=rank_zero_due, global_step=10)
    writer.on_validation_end(trainer, None)
    assert written == [10]  # else rank 0 would wait at the save's barrier for a rank that never comes
