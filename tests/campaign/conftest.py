"""A tiny campaign (TINY_RUN on the quickstart ListOps) in a config folder of its own, and fixture records of its runs
written as ``train.py`` writes them (``ResultsStore``, the resolved config inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from lra.campaign.grid import PlannedRun, expand
from lra.results.records import ResultsStore
from lra.train.identity import runs_root
from tests.helpers import CONF, TINY_RUN

TINY_STEPS = 200  # two validations (TINY_RUN's val_check_interval is 10: here 100) before the end


def tiny_campaign_yaml(seeds: str = "[0, 1]", backends: str = "[softmax]") -> str:
    overrides = [*(o for o in TINY_RUN if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))),
                 f"trainer.max_steps={TINY_STEPS}", "trainer.val_check_interval=100", "logger=none"]
    return f"""# @package _global_
presets:
  - {{experiment: null, overrides: [task=listops_small]}}
backends: {backends}
seeds: {seeds}
overrides: [{", ".join(overrides)}]
stop_margin: 1s
min_slot: 0s
tables_time: 0s
tables: false
"""


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    """A config search path holding ``campaign/tiny.yaml``."""
    folder = tmp_path / "campaign_conf"
    (folder / "campaign").mkdir(parents=True)
    (folder / "campaign" / "tiny.yaml").write_text(tiny_campaign_yaml())
    return folder


def compose_campaign(name: str, overrides: list[str] | None = None, search: Path | None = None) -> DictConfig:
    """The config ``python -m lra.campaign NAME OVERRIDES`` runs with."""
    extra = [f"hydra.searchpath=[file://{search}]"] if search else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="campaign", overrides=[f"campaign={name}", *extra, *(overrides or [])])


def plan_runs(campaign_dir: Path, overrides: list[str] | None = None) -> list[PlannedRun]:
    return expand(compose_campaign("tiny", overrides, campaign_dir))


def write_record(run: PlannedRun, run_id: str, steps: int, *, tested: bool = True, status: str = "finished",
                 steps_per_s: float | None = None, device_processes: int | None = 1) -> dict[str, Any]:
    """A record of ``run`` in train.py's format, ``steps`` trained."""
    metrics: dict[str, Any] = {"step": steps, "val/acc_best": 0.3}
    if tested:
        metrics.update({"test/acc@best": 0.3125, "test/acc@last": 0.3, "test/majority_acc": 0.17})
    efficiency = {} if steps_per_s is None else {
        "steps_per_s": steps_per_s, "memory_kind": "cuda_max_allocated_training", "device_processes": device_processes}
    record = {"run_id": run_id, "kind": "train", "status": status, "task": run.config.task.name,
              "attention": run.backend, "preset": run.config.preset, "seed": run.seed, "params": 1000,
              "protocol": {"validation_split": "val", "data_source": "generated"}, "metrics": metrics,
              "efficiency": efficiency, "history": [], "environment": {"device": "NVIDIA H200"},
              "config": OmegaConf.to_container(run.config, resolve=True)}
    ResultsStore(run.config.paths.results_dir).save(record)
    return record


def write_checkpoint(run: PlannedRun, run_id: str, step: int) -> Path:
    """A ``last.ckpt`` where ``ckpt_path=last`` looks for this run's (only its step is read)."""
    import torch

    path = runs_root(run.config) / run_id / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"global_step": step}, path)
    return path
