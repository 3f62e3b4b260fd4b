"""Every experiment preset composes as ``train.py experiment=...`` would, passes the run's checks with every
backend, and carries the released settings it cites (LRA @cd31e5c, TaylorShift @b290faa)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

import lra.data
from lra.train.config import validate

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = CONF / "experiment"
PRESETS = sorted(p.relative_to(EXPERIMENTS).with_suffix("").as_posix() for p in EXPERIMENTS.rglob("*.yaml"))
ATTENTIONS = sorted(p.stem for p in (CONF / "attention").glob("*.yaml") if p.stem != "custom")
SOURCES = {"lra": "google-research/long-range-arena @cd31e5c", "taylorshift": "tobna/TaylorShift @b290faa",
           "lra_2020": "google-research/long-range-arena @f866e43"}
# Task keys that presets use and that land with another branch; a preset using one skips until it has landed.
PENDING_TASK_KEYS = {("listops", "variant"): "the TaylorShift ListOps variant (data branch, issue 10)"}


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@cache
def composed(*overrides: str) -> DictConfig | str:
    """A composition per distinct override list (each takes ~0.3 s), or why it is missing here."""
    try:
        return compose_train(*overrides)
    except MissingConfigException as error:
        return str(error).splitlines()[0]


def preset_config(preset: str) -> DictConfig:
    """A copy of the preset's config, or a skip when its task has not landed on this branch."""
    cfg = composed(f"experiment={preset}")
    if isinstance(cfg, str):
        pytest.skip(f"{preset}: its task config is not on this branch yet ({cfg})")
    cfg = cfg.copy()
    if cfg.task.name not in lra.data.TASKS:
        pytest.skip(f"{preset}: task {cfg.task.name!r} is not registered on this branch yet")
    for (task, key), what in PENDING_TASK_KEYS.items():
        if cfg.task.name == task and key in cfg.task and key not in lra.data.task_options(task):
            pytest.skip(f"{preset}: task.{key} is not on this branch yet ({what})")
    return cfg


def lr_at(cfg: DictConfig, step: int) -> float:
    """The learning rate of optimizer step ``step``, as the run's scheduler computes it."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = hydra.utils.instantiate(cfg.optimizer)([parameter])
    scheduler = hydra.utils.instantiate(cfg.scheduler)(optimizer, cfg.trainer.max_steps)
    return cfg.optimizer.lr * scheduler.lr_lambdas[0](step)


def test_presets_exist() -> None:
    expected = {f"lra/{t}" for t in ("listops", "text", "retrieval", "image", "pathfinder", "pathx")}
    expected |= {f"taylorshift/{t}" for t in ("listops", "text", "image", "pathfinder")}
    expected |= {f"recipe/{r}" for r in ("listops_performer", "listops_taylorshift", "pathfinder")}
    expected |= {"lra_2020/listops"}
    assert set(PRESETS) == expected


def test_the_paper_time_listops_differs_from_the_released_preset_in_its_tokenizer_alone() -> None:
    released, paper_time = (OmegaConf.to_container(preset_config(p), resolve=True)
                            for p in ("lra/listops", "lra_2020/listops"))
    assert paper_time.pop("preset") == "lra_2020/listops" and released.pop("preset") == "lra/listops"
    assert paper_time["task"].pop("tokenizer") == "lra_2020" and released["task"].pop("tokenizer") == "lra"
    assert paper_time == released


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_cites_its_source_and_leaves_the_backend_free(preset: str) -> None:
    text = (EXPERIMENTS / f"{preset}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    if preset.startswith("recipe/"):  # labelled as a recipe, with its sources; it may be for one backend
        assert text.splitlines()[1].startswith("# RECIPE, not LRA's protocol:")
        assert "../shared/reference/recipes.md" in text or "published.md" in text
        return
    assert SOURCES[preset.split("/")[0]] in text
    raw = OmegaConf.load(EXPERIMENTS / f"{preset}.yaml")
    assert "attention" not in raw and not any("attention" in str(d) for d in raw.defaults)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_validates(preset: str) -> None:
    cfg = preset_config(preset)
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.preset == preset  # recorded with the run; the table builder groups by it
    assert cfg.precision == "bf16-mixed" and cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("preset", PRESETS)
def test_any_backend_combines_with_any_preset(preset: str, attention: str) -> None:
    cfg = preset_config(preset)
    with_backend = composed(f"attention={attention}").attention
    OmegaConf.set_struct(cfg, False)
    cfg.attention = with_backend  # replaced, as attention=NAME does: merging would keep the preset's options
    validate(cfg)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("lra/")])
def test_lra_optimizer_is_flax_adam_as_released(preset: str) -> None:
    cfg = preset_config(preset)
    assert cfg.optimizer._target_ == "torch.optim.AdamW"  # decoupled decay scaled by lr, as flax.optim.Adam
    assert list(cfg.optimizer.betas) == [0.9, 0.98] and cfg.optimizer.eps == 1e-9


def test_lra_listops() -> None:
    cfg = preset_config("lra/listops")
    assert (cfg.task.max_length, cfg.task.batch_size, cfg.trainer.max_steps, cfg.trainer.val_check_interval) == (
        2000, 32, 5000, 50)
    model = cfg.model
    assert (model.d_model, model.num_heads, model.num_layers, model.qkv_dim, model.mlp_dim) == (512, 8, 4, 512, 1024)
    assert (model.dropout, model.attention_dropout, model.pooling) == (0.1, 0.1, "cls")
    assert cfg.optimizer.lr == 0.05 and cfg.optimizer.weight_decay == 0.1
    assert cfg.scheduler._target_ == "lra.train.schedules.rsqrt"
    assert lr_at(cfg, 0) == 0.0
    assert lr_at(cfg, 500) == pytest.approx(0.05 * 0.5 / math.sqrt(1000))
    assert lr_at(cfg, 1000) == pytest.approx(1.581e-3, rel=1e-3)  # the peak: 0.05 / sqrt(1000)
    assert lr_at(cfg, 5000) == pytest.approx(7.071e-4, rel=1e-3)


def test_lra_text_length_is_4k_and_1k_is_one_key_away() -> None:
    cfg = preset_config("lra/text")
    assert (cfg.task.max_length, cfg.task.validation, cfg.task.batch_size) == (4000, "test", 32)
    assert (cfg.model.d_model, cfg.model.num_heads, cfg.model.num_layers, cfg.model.mlp_dim) == (256, 4, 4, 1024)
    assert (cfg.trainer.max_steps, cfg.trainer.val_check_interval, cfg.scheduler.warmup_steps) == (20000, 100, 8000)
    assert lr_at(cfg, 8000) == pytest.approx(5.59e-4, rel=1e-3)
    assert lr_at(cfg, 20000) == pytest.approx(3.536e-4, rel=1e-3)
    released = compose_train("experiment=lra/text", "task.max_length=1000")
    validate(released)
    assert released.task.max_length == 1000


def test_lra_retrieval_keeps_the_released_warmup_quirk() -> None:
    cfg = preset_config("lra/retrieval")
    assert cfg.scheduler.warmup_steps == 8000 > cfg.trainer.max_steps == 5000
    assert lr_at(cfg, 5000) == pytest.approx(0.05 * (5000 / 8000) / math.sqrt(8000))  # 3.49e-4, below the peak
    assert (cfg.model.d_model, cfg.model.num_heads, cfg.model.mlp_dim, cfg.model.dual_interaction) == (
        128, 4, 512, "nli")
    assert (cfg.task.max_length, cfg.task.batch_size, cfg.trainer.val_check_interval) == (4000, 32, 100)


def test_lra_image() -> None:
    cfg = preset_config("lra/image")
    assert (cfg.task.batch_size, cfg.trainer.max_steps, cfg.trainer.val_check_interval) == (256, 35000, 175)
    model = cfg.model
    assert (model.d_model, model.num_heads, model.num_layers, model.qkv_dim, model.mlp_dim) == (128, 8, 1, 64, 128)
    assert (model.dropout, model.attention_dropout, model.pos_encoding) == (0.3, 0.2, "learned")
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (5e-4, 0.0)
    assert cfg.scheduler._target_ == "lra.train.schedules.lra_cosine"
    assert lr_at(cfg, 175) == pytest.approx(5e-4)  # warm-up of one epoch, then cosine over 35,000 steps
    assert lr_at(cfg, 175 + 17500) == pytest.approx(2.5e-4)
    assert lr_at(cfg, 35000) < 1e-7


def test_lra_pathfinder_and_pathx() -> None:
    cfg = preset_config("lra/pathfinder")
    assert (cfg.task.resolution, cfg.task.difficulty, cfg.task.batch_size) == (32, "hard", 512)
    assert (cfg.trainer.max_steps, cfg.scheduler.warmup_steps, cfg.scheduler.cycle_steps) == (62400, 312, 62400)
    assert (cfg.model.d_model, cfg.model.qkv_dim, cfg.model.mlp_dim, cfg.model.pooling) == (32, 16, 32, "mean")
    assert cfg.trainer.gradient_clip_val is None
    cfg = preset_config("lra/pathx")
    assert (cfg.task.resolution, cfg.task.batch_size, cfg.trainer.max_steps) == (128, 64, 500000)
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.trainer.gradient_clip_algorithm == "norm"


@pytest.mark.parametrize(("preset", "size"), [
    ("taylorshift/listops", (512, 8, 4, 1024)), ("taylorshift/text", (256, 4, 4, 1024)),
    ("taylorshift/image", (256, 4, 1, 256)), ("taylorshift/pathfinder", (64, 4, 4, 64))])
def test_taylorshift_model_sizes_are_the_authors(preset: str, size: tuple[int, ...]) -> None:
    cfg = preset_config(preset)
    model = cfg.model
    assert (model.d_model, model.num_heads, model.num_layers, model.mlp_dim) == size
    assert model.qkv_dim == model.d_model  # timm ViT attention: head dim = embed / heads
    assert "UNKNOWN" in (EXPERIMENTS / f"{preset}.yaml").read_text()


def test_taylorshift_listops_uses_their_variant() -> None:
    assert preset_config("taylorshift/listops").task.variant == "taylorshift"
