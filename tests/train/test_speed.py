"""The speed options of a run: compilation with its eager fallback, bucketing, and what the record says of them."""

from __future__ import annotations

from pathlib import Path

import pytest

import lra.train.module
from lra.train.run import train
from tests.helpers import TINY_RUN, compose_train


def test_a_failed_compilation_trains_eager_and_says_so(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    def broken_compile(model, mode):
        def call(*args, **kwargs):
            raise RuntimeError("inductor could not build a kernel\nsecond line of a long compiler log")
        return call

    monkeypatch.setattr(lra.train.module.torch, "compile", broken_compile)
    record = train(compose_train([*TINY_RUN, "logger=none", "model.compile=true"]))
    assert record["status"] == "finished" and record["metrics"]["step"] == 20
    speed = record["efficiency"]["speed"]
    assert speed["compile"] == "failed (RuntimeError: inductor could not build a kernel)"
    message = [line for line in capsys.readouterr().err.splitlines() if "torch.compile failed" in line]
    assert message == ["model.compile=True: torch.compile failed (RuntimeError: inductor could not build a kernel); "
                       "training eager"]


def test_the_record_states_the_validation_share_and_the_speed_options(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none"]))
    efficiency = record["efficiency"]
    assert 0 < efficiency["validation_fraction"] < 1 and efficiency["fit_seconds"] > 0
    segment = efficiency["segments"][0]
    assert 0 < segment["validation_seconds"] < segment["fit_seconds"]
    assert efficiency["speed"] == {"compile": "off", "unpad": False, "bucket": False, "trim_train": False,
                                   "trim_eval": True}  # on CPU: model.compile=auto and unpad=auto are off
    assert record["protocol"]["train_batches"] == "uniform random"


def test_a_bucketed_run_is_recorded_as_such(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none", "task.bucket=true", "task.pad_multiple=8"]))
    assert record["status"] == "finished"
    assert record["efficiency"]["speed"]["bucket"] is True and record["efficiency"]["speed"]["trim_train"] is True
    assert record["protocol"]["train_batches"].startswith("length-bucketed")
    assert record["efficiency"]["padded_tokens_per_s"] > record["efficiency"]["tokens_per_s"] > 0
