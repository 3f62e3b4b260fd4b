"""A small config tree shaped like ``conf/`` and a writer of run records in the format of ``lra/results/records.py``.

The records' configs are composed from that tree exactly as ``train.py`` composes a run, so the table builder
compares them with their presets as it does for real runs.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.tables.variants import PresetConfigs

CONF_FILES = {
    "train.yaml": """
defaults:
  - task: listops
  - attention: softmax
  - _self_
  - experiment: null
seed: 0
precision: 32
preset: null
run_id: null
paths: {results_dir: results}
trainer: {max_steps: 300, val_check_interval: 100}
""",
    "task/listops.yaml": "name: listops\nmax_length: 2000\nbatch_size: 32\n",
    "task/text.yaml": "name: text\nmax_length: 4000\nbatch_size: 32\nvalidation: test\n",
    "task/image.yaml": "name: image\nbatch_size: 256\n",
    "attention/softmax.yaml": "name: softmax\n",
    "attention/performer.yaml": "name: performer\nnb_features: null\n",
    "experiment/lra/listops.yaml": """# @package _global_
defaults:
  - override /task: listops
preset: lra/listops
trainer: {max_steps: 5000, val_check_interval: 50}
""",
    "experiment/lra/text.yaml": """# @package _global_
defaults:
  - override /task: text
preset: lra/text
trainer: {max_steps: 20000}
""",
    "experiment/lra/image.yaml": """# @package _global_
defaults:
  - override /task: image
preset: lra/image
trainer: {max_steps: 35000, val_check_interval: 175}
""",
    "task/retrieval.yaml": "name: retrieval\nmax_length: 4000\nbatch_size: 32\n",
    "task/pathfinder.yaml": "name: pathfinder\nresolution: 32\nbatch_size: 256\n",
    "experiment/lra/retrieval.yaml": """# @package _global_
defaults:
  - override /task: retrieval
preset: lra/retrieval
trainer: {max_steps: 5000}
""",
    "experiment/lra/pathfinder.yaml": """# @package _global_
defaults:
  - override /task: pathfinder
preset: lra/pathfinder
trainer: {max_steps: 62400}
""",
    # a family of presets the tables have never heard of (lra.campaign's recipes): rows of its own, no code change
    "experiment/recipe/listops.yaml": """# @package _global_
defaults:
  - override /task: listops
preset: recipe/listops
trainer: {max_steps: 8000, val_check_interval: 100}
""",
}


@pytest.fixture(scope="session")
def conf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fixture") / "conf"
    for name, text in CONF_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.lstrip())
    return root


@pytest.fixture(scope="session")
def presets(conf_dir: Path) -> PresetConfigs:
    """Shared, so each (preset, backend) is composed once per session (a composition takes ~0.2 s)."""
    return PresetConfigs(conf_dir)


@cache
def composed(conf_dir: Path, overrides: tuple[str, ...]) -> str:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return json.dumps(OmegaConf.to_container(compose(config_name="train", overrides=list(overrides)),
                                                 resolve=True))


class RecordWriter:
    """Writes ``results/runs/<id>.json`` records of finished, failed or running runs."""

    def __init__(self, conf_dir: Path, runs_dir: Path):
        self.conf_dir = conf_dir
        self.runs_dir = runs_dir
        runs_dir.mkdir(parents=True, exist_ok=True)

    def config(self, choices: list[str], overrides: tuple[str, ...]) -> dict[str, Any]:
        """``train.py CHOICES OVERRIDES``: the group choices composed (once), then the key overrides merged."""
        base = OmegaConf.create(composed(self.conf_dir, tuple(choices)))
        return OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides))), resolve=True)

    def write(self, run_id: str, *, preset: str | None, attention: str = "softmax", seed: int = 0,
              status: str = "finished", best: float | None = None, last: float | None = None,
              overrides: tuple[str, ...] = (), params: int = 100_000, validation_split: str = "val",
              data_source: Any = "fixture data", efficiency: dict | None = None, device: str = "NVIDIA H100",
              history: list | None = None, error: str | None = None) -> dict[str, Any]:
        chosen = [f"experiment={preset}"] if preset else []
        config = self.config([*chosen, f"attention={attention}"], (f"seed={seed}", *overrides))
        record = {"schema": 1, "run_id": run_id, "kind": "train", "status": status, "task": config["task"]["name"],
                  "attention": attention, "preset": config["preset"], "seed": seed, "params": params,
                  "protocol": {"validation_split": validation_split, "data_source": data_source,
                               "test_checkpoints": {"best": "highest val/acc", "last": "last training step"}},
                  "environment": {"device": device}, "config": config, "history": history or []}
        if status == "finished":
            record["metrics"] = {"step": config["trainer"]["max_steps"], "val/acc_best": best,
                                 "test/acc@best": best, "test/acc@last": last}
            record["efficiency"] = efficiency or {}
        if error:
            record["error"] = error
        (self.runs_dir / f"{run_id}.json").write_text(json.dumps(record))
        return record


@pytest.fixture
def records(conf_dir: Path, tmp_path: Path) -> RecordWriter:
    return RecordWriter(conf_dir, tmp_path / "results" / "runs")


LISTOPS_FILES = {"files": {s: f"/data/raw/lra_release/listops-1000/basic_{s}.tsv" for s in ("train", "val", "test")}}


@pytest.fixture(scope="session")
def scenario_records(conf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds, a failed run, a running run, a missing cell, two runs of other protocols, a shortened run,
    a model over LRA's parameter rule, and a run without a preset."""
    records = RecordWriter(conf_dir, tmp_path_factory.mktemp("scenario") / "runs")
    fast = {"steps_per_s": 10.0, "peak_memory_mib": 1000.0, "tokens_per_s": 1e5, "memory_kind": "cuda_max_allocated",
            "device_processes": 1}
    curve = [{"step": 50, "val/acc": 0.2}, {"step": 100, "val/acc": 0.3}]
    records.write("a1", preset="lra/listops", seed=1, best=0.36, last=0.30, data_source=LISTOPS_FILES,
                  efficiency=fast, history=curve)
    records.write("a2", preset="lra/listops", seed=2, best=0.38, last=0.34, data_source=LISTOPS_FILES,
                  efficiency={**fast, "steps_per_s": 12.0})
    records.write("a3", preset="lra/listops", seed=3, status="failed", data_source=LISTOPS_FILES,
                  error="OutOfMemoryError: CUDA out of memory")
    records.write("p1", preset="lra/listops", attention="performer", seed=1, status="running",
                  data_source=LISTOPS_FILES)
    records.write("p2", preset="lra/listops", attention="performer", seed=2, best=0.20, last=0.19, params=125_000,
                  data_source=LISTOPS_FILES, efficiency={**fast, "steps_per_s": 22.0, "peak_memory_mib": 500.0})
    records.write("p3", preset="lra/text", attention="performer", seed=1, status="failed", validation_split="test",
                  data_source="aclImdb", error="RuntimeError: boom")
    records.write("t1", preset="lra/text", seed=1, best=0.64, last=0.60, validation_split="test",
                  data_source="aclImdb", params=60_000)
    records.write("t2", preset="lra/text", seed=1, best=0.62, last=0.61, validation_split="train[90%:]",
                  data_source="aclImdb", overrides=("task.validation=holdout",), params=60_000)
    records.write("t3", preset="lra/text", seed=2, best=0.70, last=0.70, validation_split="test",
                  data_source="stanfordnlp/imdb (HF)", params=60_000)
    records.write("i1", preset="lra/image", seed=1, best=0.41, last=0.40, overrides=("trainer.max_steps=2000",),
                  data_source="CIFAR-10, JPEG q75 copy", params=50_000)
    records.write("q1", preset=None, seed=0, best=0.5, last=0.5)
    return records.runs_dir


@pytest.fixture
def scenario(scenario_records: Path, tmp_path: Path) -> Path:
    """A fresh copy of the scenario's records for each test (some change them)."""
    return Path(shutil.copytree(scenario_records, tmp_path / "runs"))




@pytest.fixture(scope="session")
def report_records(scenario_records: Path, conf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario plus softmax on Retrieval and Pathfinder (so its row has all five tasks of LRA's Avg), and a
    run of a family of presets the tables do not name anywhere (recipe/listops)."""
    runs = Path(shutil.copytree(scenario_records, tmp_path_factory.mktemp("report") / "runs"))
    records = RecordWriter(conf_dir, runs)
    records.write("r1", preset="lra/retrieval", seed=1, best=0.57, last=0.55)
    records.write("f1", preset="lra/pathfinder", seed=1, best=0.70, last=0.69)
    records.write("n1", preset="recipe/listops", seed=1, best=0.40, last=0.39,
                  history=[{"step": 100, "val/acc": 0.3}, {"step": 200, "val/acc": 0.4}])
    return runs
