"""Every option of every config group composes into a config the run accepts."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from lra.train.cli import register_resolvers
from lra.train.config import ConfigError, validate
from tests.helpers import CONF, compose_train, run_script

GROUPS = ["task", "attention", "model", "optimizer", "scheduler", "trainer", "logger", "debug"]
# attention=custom names no backend until attention.target does (tests/attention/test_custom.py)
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))
           if (group, path.stem) != ("attention", "custom")]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_train([f"{group}={option}"])
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_default_is_the_cpu_quickstart() -> None:
    cfg = compose_train()
    assert cfg.task.name == "listops" and cfg.task.source == "generate"
    assert cfg.attention.name == "softmax"
    assert cfg.preset is None


def test_ddp_config_composes_for_two_gpus() -> None:
    cfg = compose_train(["trainer=ddp"])
    assert (cfg.trainer.devices, cfg.trainer.strategy, cfg.trainer.accelerator) == (2, "ddp", "gpu")
    cfg = compose_train(["trainer.devices=2", "trainer.strategy=ddp"])
    validate(cfg)


def test_slurm_launcher_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = compose_train(["hydra/launcher=slurm"], hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_node == 1


def test_precision_shortcut_sets_the_trainer() -> None:
    assert compose_train(["precision=bf16-mixed"]).trainer.precision == "bf16-mixed"


def test_typo_in_a_group_file_is_caught_with_the_valid_keys() -> None:
    cfg = compose_train()
    OmegaConf.set_struct(cfg, False)
    cfg.model.hidden = 3
    with pytest.raises(ConfigError, match="model has no key.*hidden.*valid keys: .*d_model"):
        validate(cfg)


def test_unknown_attention_option_lists_the_backend_options() -> None:
    cfg = compose_train()
    OmegaConf.set_struct(cfg, False)
    cfg.attention.nb_features = 3
    with pytest.raises(ConfigError, match="attention backend 'softmax' has no option.*nb_features"):
        validate(cfg)


@pytest.mark.parametrize(("override", "group"), [("attention=nope", "attention"), ("task=nope", "task")])
def test_unknown_choice_fails_at_start_with_the_valid_ones(tmp_path, override: str, group: str) -> None:
    result = run_script("train.py", [override], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert f"Could not find '{group}/nope'" in result.stderr
    assert "softmax" in result.stderr if group == "attention" else "listops" in result.stderr
    assert "Traceback" not in result.stderr


def test_typo_on_the_command_line_fails_at_start(tmp_path) -> None:
    result = run_script("train.py", ["trainer.max_step=10"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and "max_step" in result.stderr and "Traceback" not in result.stderr


def test_runs_started_in_the_same_second_get_a_hydra_folder_each(monkeypatch: pytest.MonkeyPatch) -> None:
    register_resolvers()  # as train.py and evaluate.py do
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    hydra = compose_train(hydra_config=True).hydra
    assert hydra.run.dir.endswith("-4242") and hydra.sweep.dir.endswith("-4242")


def test_causal_attention_with_a_backend_that_has_none_is_one_message() -> None:
    cfg = compose_train(["attention=nystrom", "model.causal=true", "model.pooling=mean"])
    with pytest.raises(ConfigError, match="attention 'nystrom' has no causal form; backends with one: .*softmax"):
        validate(cfg)
    validate(compose_train(["attention=linear", "model.causal=true", "model.pooling=mean"]))
