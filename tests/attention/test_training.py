"""``python train.py attention=NAME`` trains the small ListOps on CPU with every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import lra.attention
from lra.train.run import train
from tests.helpers import compose_train

STEPS = 200
# A tiny model on the quickstart ListOps, cut down so that each backend trains in seconds on 2 cores.
TINY = ["model=tiny", "task.num_train=2048", "task.num_val=128", "task.num_test=64", "task.batch_size=16",
        "task.max_length=64", "task.generator.max_length=64", f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=50", "trainer.accelerator=cpu", "logger=none", "test_after_fit=false",
        "measure_warmup_steps=5"]
# Small windows and projections, so that every mechanism is really exercised at length <= 65.
OPTIONS = {"local": ["attention.window=16"], "nystrom": ["attention.num_landmarks=16"],
           "linformer": ["attention.proj_dim=32"], "performer": ["attention.redraw_interval=50"]}


@pytest.mark.parametrize("name", lra.attention.available())
def test_train_py_trains_listops_with_every_backend(name: str, workdir: Path) -> None:
    record = train(compose_train([f"attention={name}", *TINY, *OPTIONS.get(name, [])]))
    assert record["status"] == "finished" and record["attention"] == name
    assert record["metrics"]["step"] == STEPS
    first, last = record["history"][0], record["history"][-1]
    assert (first["step"], last["step"]) == (50, STEPS)
    assert last["val/loss"] < first["val/loss"], record["history"]  # it learns something
