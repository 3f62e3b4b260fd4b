"""``ckpt_path=auto`` (what campaign and SLURM jobs pass): the latest run of the config where it has a checkpoint,
else a new run; and the stop signal that ends training cleanly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from lra.train.checkpoints import CONFIG_KEY
from lra.train.identity import RESUMES_KEY, RUN_ID_KEY, resolve_run
from lra.train.stopping import StopOnSignal
from tests.campaign.conftest import plan_runs
from tests.helpers import compose_train


def test_auto_starts_a_new_run_then_resumes_the_latest(workdir: Path, campaign_dir: Path) -> None:
    (run, _) = plan_runs(campaign_dir)
    cfg = compose_train([*run.overrides, "ckpt_path=auto"])
    fresh = resolve_run(cfg)
    assert fresh.resume_from is None and fresh.resumes == 0
    last = fresh.run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({CONFIG_KEY: "{}", RUN_ID_KEY: fresh.run_id, RESUMES_KEY: 0, "global_step": 100}, last)
    resumed = resolve_run(cfg)
    assert (resumed.run_id, resumed.resume_from, resumed.resumes) == (fresh.run_id, last, 1)


class _Trainer:
    should_stop = False


def test_the_stop_signal_asks_lightning_to_stop_after_the_step() -> None:
    stop = StopOnSignal.install()
    trainer = _Trainer()
    try:
        stop.on_train_batch_end(trainer, None, None, None, 0)
        assert not trainer.should_stop
        os.kill(os.getpid(), signal.SIGUSR1)
        stop.on_train_batch_end(trainer, None, None, None, 1)
        assert trainer.should_stop
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def test_a_stop_asked_for_before_training_ends_it_at_its_start() -> None:
    stop = StopOnSignal.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)  # while the data loads
        trainer = _Trainer()
        stop.on_train_start(trainer, None)
        assert trainer.should_stop
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
