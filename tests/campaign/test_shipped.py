"""The campaigns shipped in conf/campaign/ expand to runs that compose and validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from lra.attention import available
from lra.campaign.grid import expand
from tests.campaign.conftest import compose_campaign
from tests.helpers import CONF


@pytest.mark.slow
def test_lra_table1_is_every_backend_on_the_five_lra_tasks_with_three_seeds(workdir: Path) -> None:
    runs = expand(compose_campaign("lra_table1"))
    assert {run.backend for run in runs} == set(available())
    assert {run.entry.label for run in runs} == {"lra/listops", "lra/text task.max_length=1000", "lra/text",
                                                "lra/image", "lra/pathfinder", "lra/retrieval"}
    assert {run.seed for run in runs} == {0, 1, 2}
    assert len(runs) == len({run.identity for run in runs}) == 6 * len(available()) * 3
    text = {run.config.task.max_length for run in runs if run.config.task.name == "text"}
    assert text == {1000, 4000}


def test_the_taylorshift_campaign_runs_its_presets(workdir: Path) -> None:
    runs = expand(compose_campaign("taylorshift"))
    presets = {f"taylorshift/{p.stem}" for p in (CONF / "experiment" / "taylorshift").glob("*.yaml")}
    assert {run.config.preset for run in runs} == presets
    assert "taylorshift" in {run.backend for run in runs}


def test_the_recipes_campaign_runs_each_recipe_with_its_backend(workdir: Path) -> None:
    runs = expand(compose_campaign("recipes"))
    pairs = {(run.config.preset, run.backend) for run in runs}
    assert pairs == {("recipe/listops_taylorshift", "taylorshift"), ("recipe/listops_performer", "performer"),
                     ("recipe/pathfinder", "softmax")}
    assert len(runs) == 9
