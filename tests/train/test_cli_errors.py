"""Bad input gets one short message naming the key, the value and what is expected; nothing is recorded
for a config that cannot run, and a run that fails after it started is recorded ``failed``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lra.train.run
from lra.train.cli import EXIT_USER_ERROR, run_or_explain
from lra.train.config import ConfigError
from lra.train.module import LRAModule
from lra.train.run import evaluate, prepare_data, train
from tests.helpers import TINY_RUN, compose_train, run_script


def short_error(capsys) -> str:
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and len(message.splitlines()) <= 5, message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize(("override", "expected"), [
    ("trainer.max_steps=abc", "trainer.max_steps='abc': expected an integer"),
    ("seed=abc", "seed='abc': expected an integer"),
    ("optimizer.lr=abc", "optimizer.lr='abc': expected a number"),
    ("precision=bf17", "precision='bf17': expected one of 64, 32, 16, 'transformer-engine'"),
    ("trainer.val_check_interval=abc", "Invalid time format for `val_check_interval`: 'abc'"),
    ("+attenton=performer", "attenton: no such key; did you mean attention?"),
    ("+model.d_modle=64", "model has no key(s) d_modle (did you mean d_model?); valid keys: attention_dropout"),
    ("attention.sdpa=fastest", "softmax sdpa='fastest'; valid: auto, flash, cudnn, efficient, math"),
    ("model.pooling=max", "model.pooling='max'; valid: cls, mean"),
])
def test_a_bad_value_is_one_message_and_no_record(workdir: Path, capsys, override: str, expected: str) -> None:
    with pytest.raises(SystemExit) as refused:
        run_or_explain(train, compose_train([*TINY_RUN, "logger=none", override]))
    assert refused.value.code == EXIT_USER_ERROR and expected in short_error(capsys)
    assert not (workdir / "results").exists()


def test_evaluate_refuses_an_unknown_key_too(capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        run_or_explain(evaluate, compose_train(["+splti=val", "ckpt=x.ckpt"], config_name="evaluate"))
    assert refused.value.code == EXIT_USER_ERROR and "splti: no such key; did you mean split?" in short_error(capsys)


def test_full_errors_keep_the_traceback(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="seed='abc'"):
        run_or_explain(train, compose_train([*TINY_RUN, "logger=none", "seed=abc"]))


def test_a_corrupt_cache_is_one_message_and_no_record(workdir: Path, capsys) -> None:
    cfg = compose_train([*TINY_RUN, "logger=none"])
    labels = prepare_data(cfg).cache_dir / "test.labels.npy"
    flipped = bytearray(labels.read_bytes())
    flipped[-1] ^= 0xFF
    labels.write_bytes(bytes(flipped))
    with pytest.raises(SystemExit) as refused:
        run_or_explain(train, cfg)
    assert refused.value.code == EXIT_USER_ERROR
    assert f"{labels}: contents differ from the manifest's sha256" in short_error(capsys)
    assert not (workdir / "results").exists()


def _record_of(workdir: Path, run_id: str) -> dict:
    return json.loads((workdir / "results" / "runs" / f"{run_id}.json").read_text())


def test_a_failure_while_training_is_recorded_failed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def breaks(self, batch, batch_idx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(LRAModule, "training_step", breaks)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        train(compose_train([*TINY_RUN, "logger=none", "run_id=crash"]))
    record = _record_of(workdir, "crash")
    assert record["status"] == "failed" and "illegal memory access" in record["error"]


def test_a_failure_to_start_the_logger_is_recorded_failed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_service(*args, **kwargs):
        raise TimeoutError("wandb service did not start")

    monkeypatch.setattr(lra.train.run, "make_wandb_logger", no_service)
    with pytest.raises(TimeoutError):
        train(compose_train([*TINY_RUN, "run_id=nolog"]))
    record = _record_of(workdir, "nolog")
    assert record["status"] == "failed" and record["error"] == "TimeoutError: wandb service did not start"


@pytest.mark.parametrize(("override", "expected"), [
    ("model.d_modle=64",
     "model.d_modle: no such key; did you mean d_model?\nmodel has: attention_dropout, causal, compile"),
    ("attenton=performer", "attenton: no such key; did you mean attention?\nthe config has: attention,"),
])
def test_an_unknown_key_on_the_command_line_lists_the_valid_ones(tmp_path: Path, override: str, expected: str) -> None:
    result = run_script("train.py", [override], cwd=tmp_path, timeout=120)
    message = result.stderr.strip()
    assert result.returncode == EXIT_USER_ERROR and message.startswith(f"error: {expected}"), message
    assert len(message.splitlines()) <= 5 and "Traceback" not in message and "+" not in message
    assert not (tmp_path / "results").exists()
