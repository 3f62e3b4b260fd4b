"""Recipe presets (conf/experiment/recipe/): labelled as recipes, citing their sources, a row family of their own."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lra.results.records import ResultsStore
from lra.tables.build import Settings, build
from lra.train.config import validate
from tests.helpers import CONF, compose_train

RECIPES = sorted((CONF / "experiment" / "recipe").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_is_labelled_and_cites_its_source(path: Path) -> None:
    text = path.read_text()
    assert "RECIPE, not LRA's protocol" in text and ("recipes.md" in text or "published.md" in text)
    cfg = compose_train([f"experiment=recipe/{path.stem}"])  # a recipe for one backend names it
    validate(cfg)
    assert cfg.preset == f"recipe/{path.stem}"
    faithful = compose_train([f"experiment=lra/{path.stem.split('_')[0]}", f"attention={cfg.attention.name}"])
    data = lambda task: {k: v for k, v in task.items() if k != "batch_size"}  # noqa: E731
    assert data(cfg.task) == data(faithful.task)  # LRA's data: a recipe changes the training, not the task


def _record(run_id: str, preset: str, accuracy: float, results: Path) -> None:
    cfg = compose_train([f"experiment={preset}", "attention=softmax", "seed=0"])
    ResultsStore(results).save({
        "run_id": run_id, "kind": "train", "status": "finished", "task": "pathfinder", "attention": "softmax",
        "preset": preset, "seed": 0, "params": 1000,
        "protocol": {"validation_split": "val", "data_source": "generated"},
        "metrics": {"step": cfg.trainer.max_steps, "test/acc@best": accuracy, "test/acc@last": accuracy,
                    "test/majority_acc": 0.5, "val/acc_best": accuracy},
        "efficiency": {}, "history": [], "environment": {"device": "NVIDIA H200"},
        "config": OmegaConf.to_container(cfg, resolve=True)})


def test_a_recipe_run_lands_in_a_row_family_of_its_own(workdir: Path) -> None:
    results = workdir / "results"
    _record("lra00001", "lra/pathfinder", 0.502, results)
    _record("rcp00001", "recipe/pathfinder", 0.741, results)
    build(Settings(runs_dir=results / "runs", bench_dir=results / "bench", tables_dir=results / "tables", report=None))
    with open(results / "tables" / "lra_accuracy_cells.csv") as f:
        cells = {row["run_ids"]: row for row in csv.DictReader(f)}
    recipe, faithful = cells["rcp00001"], cells["lra00001"]
    assert recipe["row"] != faithful["row"] and "recipe" in recipe["row"] and "recipe" not in faithful["row"]
    assert (recipe["preset"], recipe["mean"], recipe["differences"]) == ("recipe/pathfinder", "74.1", "")


def test_taylorshifts_temperature_option_sets_every_heads_initial_tau() -> None:
    import torch

    import lra.attention

    assert lra.attention.create("taylorshift", num_heads=3, head_dim=8).temperature.detach().eq(1.0).all()
    backend = lra.attention.create("taylorshift", num_heads=3, head_dim=8, temperature=8.0)
    assert backend.temperature.requires_grad
    assert torch.equal(backend.temperature.detach(), torch.full((1, 3, 1, 1), 8.0))
    with pytest.raises(ValueError, match="must be positive"):
        lra.attention.create("taylorshift", num_heads=3, head_dim=8, temperature=0.0)
