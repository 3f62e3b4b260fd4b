"""Which run a command is: the identity of what it computes, the folder it lives in, what it resumes from.

A run's identity (``identity_key``) is a hash of its resolved config less the keys that change where files go,
what is shown or when it stops. Its files live in ``models/<task>/<attention>/<identity>/<run id>/``; every
checkpoint carries the run's config, id and resume count (``RunStamp``), so ``ckpt_path=last`` (or ``auto``)
finds the run, and its id, again.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lra.results.keys import IDENTITY_NEUTRAL, without
from lra.results.records import ResultsStore
from lra.train.checkpoints import CONFIG_KEY, load_checkpoint
from lra.train.config import ConfigError

RUN_ID_KEY = "lra_run_id"
RESUMES_KEY = "lra_resumes"
# Data-parallel training: Lightning starts the other processes from the same command line inside fit; they find
# the run's id here (rank 0 sets it for their start), so that the run has one id, folder, record and wandb run.
RUN_ID_ENV = "LRA_RUN_ID"

def identity_key(cfg: DictConfig) -> str:
    """A short hash of everything that defines what the run computes."""
    plain = without(OmegaConf.to_container(cfg, resolve=True), IDENTITY_NEUTRAL)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]


def runs_root(cfg: DictConfig) -> Path:
    """Folder of all runs sharing this config: ``models/<task>/<attention>/<identity>/``."""
    return Path(cfg.paths.models_dir) / cfg.task.name / cfg.attention.name / identity_key(cfg)


def latest_checkpoint(cfg: DictConfig) -> Path | None:
    """The most recent ``last.ckpt`` of a run with this config, or None where no such run has one."""
    found = sorted(runs_root(cfg).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def find_last_checkpoint(cfg: DictConfig) -> Path:
    """The most recent ``last.ckpt`` of a run with this config (for ``ckpt_path=last``)."""
    root = runs_root(cfg)
    found = latest_checkpoint(cfg)
    if found is None:
        others = sorted(root.parent.glob("*/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)[::-1]
        listed = ", ".join(str(p.parent.parent) for p in others[:3]) + (f" (and {len(others) - 3} more)"
                                                                         if len(others) > 3 else "")
        hint = (f"\nruns of this task and attention with other configs (latest first): {listed}"
                "\npass ckpt_path=<path to last.ckpt> to resume one of them") if others else ""
        raise ConfigError(f"ckpt_path=last: no checkpoint of a run with this config under {root}{hint}")
    return found


class RunStamp(L.Callback):
    """Stores the run's config, id and resume count in every checkpoint, as plain values (safe to load
    weights-only). The count lives here, not in the run record, so that it survives a lost record."""

    def __init__(self, config_yaml: str, run_id: str, resumes: int):
        self.config_yaml = config_yaml
        self.run_id = run_id
        self.resumes = resumes

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml
        checkpoint[RUN_ID_KEY] = self.run_id
        checkpoint[RESUMES_KEY] = self.resumes


class RunPlace(NamedTuple):
    """Which run a command trains: a new one, or the one its checkpoint belongs to."""

    run_id: str
    run_dir: Path
    resume_from: Path | None  # the checkpoint a resumed run starts from
    resumes: int  # how many times this run has been resumed, this time included
    checkpoint: dict[str, Any] | None  # resume_from, loaded and verified


def resolve_run(cfg: DictConfig) -> RunPlace:
    """Where a new or resumed run lives, and what it resumes from (verified against its digest)."""
    ckpt_path = cfg.ckpt_path
    if ckpt_path == "auto":  # a job that resumes itself (a campaign's, a requeued SLURM job's): last, or new
        ckpt_path = "last" if latest_checkpoint(cfg) else None
    if ckpt_path is None:
        run_id = cfg.run_id or (os.environ.get(RUN_ID_ENV) if rank_zero_only.rank > 0 else None) or secrets.token_hex(4)
        return RunPlace(run_id, runs_root(cfg) / run_id, None, 0, None)
    ckpt = find_last_checkpoint(cfg) if ckpt_path == "last" else Path(ckpt_path)
    checkpoint = load_checkpoint(ckpt)
    return RunPlace(checkpoint[RUN_ID_KEY], ckpt.parent.parent, ckpt, checkpoint.get(RESUMES_KEY, 0) + 1, checkpoint)


def finished_record(store: ResultsStore, place: RunPlace, cfg: DictConfig) -> dict[str, Any] | None:
    """The record of a finished run that this command would resume with nothing left to do (a requeue script
    that always passes ``ckpt_path=last``); None if there is training to do, or tests that this command asks for
    and the record lacks (a run trained with ``test_after_fit=false``: resuming it tests its checkpoints)."""
    if place.checkpoint is None or place.checkpoint.get("global_step", 0) < cfg.trainer.max_steps:
        return None
    record = store.load(place.run_id)
    if record is None or record.get("status") != "finished":
        return None
    tested = any(key.startswith("test/acc@") for key in record.get("metrics") or {})
    return record if tested or cfg.test_after_fit is False else None


@contextmanager
def run_id_shared(run_id: str) -> Iterator[None]:
    """The run's id in ``RUN_ID_ENV`` while the processes of data-parallel training start (inside fit)."""
    os.environ[RUN_ID_ENV] = run_id
    try:
        yield
    finally:
        os.environ.pop(RUN_ID_ENV, None)
