"""Checks on the composed config, run identity, and where a run's files go."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

import lra.attention
import lra.data
from lra.model import ModelConfig

# Keys that change where files go, what is shown or when a run stops, not what it computes: they are not part
# of a run's identity, so resuming with another value (a longer trainer.max_time cap) still finds the run.
_NOT_IDENTITY = ("ckpt_path", "run_id", "logger", "paths", "hydra", "trainer.devices", "trainer.num_nodes",
                 "trainer.strategy", "trainer.max_time", "trainer.log_every_n_steps", "task.num_workers",
                 "task.eval_batch_size", "test_after_fit", "progress_refresh_steps", "measure_warmup_steps",
                 "model.compile", "model.unpad")


class ConfigError(ValueError):
    """A config the run cannot use; the message names the key and the valid values."""


def attention_options(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    options = OmegaConf.to_container(cfg.attention, resolve=True)
    return options.pop("name"), options


def validate(cfg: DictConfig) -> None:
    """Fail before any work if a group holds keys its code does not take (typos in yaml files)."""
    name, options = attention_options(cfg)
    if name not in lra.attention.available():
        raise ConfigError(f"unknown attention {name!r}; known: {', '.join(lra.attention.available())}")
    unknown = sorted(set(options) - set(lra.attention.options(name)))
    if unknown:
        raise ConfigError(f"attention {name!r} has no option(s) {', '.join(unknown)}; "
                          f"its options: {', '.join(sorted(lra.attention.options(name))) or '(none)'}")
    if cfg.task.name not in lra.data.TASKS:
        raise ConfigError(f"unknown task {cfg.task.name!r}; known: {', '.join(sorted(lra.data.TASKS))}")
    _check_keys("task", cfg.task, lra.data.task_options(cfg.task.name) | {"name"})
    _check_keys("model", cfg.model, {f.name for f in fields(ModelConfig)})
    trainer_keys = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    _check_keys("trainer", cfg.trainer, trainer_keys)
    try:
        ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.trainer.max_steps is None or cfg.trainer.max_steps <= 0:
        raise ConfigError("trainer.max_steps must be a positive number of optimizer steps (LRA counts steps)")


def _check_keys(group: str, node: DictConfig, valid: set[str]) -> None:
    unknown = sorted(set(node) - valid)
    if unknown:
        raise ConfigError(f"{group} has no key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}")


def identity_key(cfg: DictConfig) -> str:
    """A short hash of everything that defines what the run computes."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in _NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = plain
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
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
        others = sorted(str(p.parent.parent) for p in root.parent.glob("*/*/checkpoints/last.ckpt"))
        hint = ("\nruns of this task and attention with other configs:\n  " + "\n  ".join(others)
                + "\npass ckpt_path=<path to last.ckpt> to resume one of them") if others else ""
        raise ConfigError(f"ckpt_path=last: no checkpoint of a run with this config under {root}{hint}")
    return found
