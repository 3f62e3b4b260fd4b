"""``python train.py attention=NAME`` trains the small ListOps on CPU with every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import lra.attention
from lra.train.run import train

CONF = Path(__file__).resolve().parents[2] / "conf"
STEPS = 200
# A tiny model on the quickstart ListOps, cut down so that each backend trains in seconds on 2 cores.
TINY = ["model=tiny", "task.num_train=2048", "task.num_val=128", "task.num_test=64", "task.batch_size=16",
        "task.max_length=64", "task.generator.max_length=64", f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=50", "trainer.accelerator=cpu", "logger=none", "test_after_fit=false",
        "measure_warmup_steps=5", f"checkpoint_every_n_steps={STEPS}"]
# Small windows and projections, so that every mechanism is really exercised at length <= 129.
OPTIONS = {"local": ["attention.window=16"], "nystrom": ["attention.num_landmarks=16"],
           "linformer": ["attention.proj_dim=32"], "performer": ["attention.redraw_interval=50"]}


@pytest.mark.parametrize("name", lra.attention.available())
def test_train_py_trains_listops_with_every_backend(name, tmp_path, monkeypatch):
    for variable, folder in (("LRA_DATA_DIR", "data"), ("LRA_MODELS_DIR", "models"), ("LRA_RESULTS_DIR", "results")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"attention={name}", *TINY, *OPTIONS.get(name, [])])
    record = train(cfg)
    assert record["status"] == "finished" and record["attention"] == name
    assert record["metrics"]["step"] == STEPS
    first, last = record["history"][0], record["history"][-1]
    assert (first["step"], last["step"]) == (50, STEPS)
    assert last["val/loss"] < first["val/loss"], record["history"]  # it learns something
