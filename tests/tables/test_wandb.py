"""Runs from a wandb project: converted like local records, and a clear error when wandb cannot be reached."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lra.tables.runs import RecordError, from_record, load_wandb, merge


class FakeApi:
    def __init__(self, runs=None, error: Exception | None = None):
        self._runs, self._error, self.calls = runs or [], error, []

    def runs(self, path: str, filters: dict):
        self.calls.append((path, filters))
        if self._error:
            raise self._error
        return self._runs


def fake_run(run_id: str, state: str, accuracy: float) -> SimpleNamespace:
    config = {"task": {"name": "listops"}, "attention": {"name": "performer"}, "preset": "lra/listops", "seed": 3,
              "trainer": {"max_steps": 5000}}
    summary = {"test/acc@best": accuracy, "test/acc@last": accuracy - 0.01, "val/acc_best": accuracy,
               "trainer/global_step": 5000, "params": 123, "efficiency/steps_per_s": 30.0, "_runtime": 99}
    history = [{"trainer/global_step": 50, "val/acc": 0.2}, {"trainer/global_step": 100, "val/acc": 0.25}]
    return SimpleNamespace(id=run_id, state=state, config=config, summary=summary, metadata={"gpu": "NVIDIA H100"},
                           tags=["attention:performer", "task:listops", "preset:lra/listops"],
                           scan_history=lambda keys: iter(history))


def test_wandb_runs_become_runs_with_their_metrics() -> None:
    api = FakeApi([fake_run("w1", "finished", 0.37), fake_run("w2", "crashed", 0.1)])
    runs = load_wandb("me/lra", api=api)
    assert api.calls == [("me/lra", {"jobType": "train"})]
    first, second = runs
    assert (first.run_id, first.status, first.task, first.attention, first.preset, first.seed) == (
        "w1", "finished", "listops", "performer", "lra/listops", 3)
    assert first.accuracy("best") == pytest.approx(37.0) and first.steps == 5000 and first.params == 123
    assert first.efficiency == {"steps_per_s": 30.0} and first.device == "NVIDIA H100"
    assert first.history == [{"step": 50, "val/acc": 0.2}, {"step": 100, "val/acc": 0.25}]
    assert first.validation_split == "not recorded (wandb)"  # never averaged with local runs of a known protocol
    assert first.origin == "wandb:me/lra/w1"
    assert second.status == "failed"


def test_local_record_wins_over_the_same_wandb_run() -> None:
    local = from_record({"run_id": "w1", "status": "finished", "task": "listops", "attention": "softmax"}, "x.json")
    remote = load_wandb("me/lra", api=FakeApi([fake_run("w1", "finished", 0.3), fake_run("w9", "finished", 0.3)]))
    assert [run.run_id for run in merge([local], remote)] == ["w1", "w9"]
    assert merge([local], remote)[0].origin == "x.json"


def test_unreachable_wandb_gives_one_clear_error() -> None:
    with pytest.raises(RecordError, match=r"(?s)cannot read wandb project .me/lra.: ConnectionError: no route.*"
                                          r"wandb login"):
        load_wandb("me/lra", api=FakeApi(error=ConnectionError("no route")))


def test_real_wandb_without_login_fails_cleanly(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # and nothing reachable
    with pytest.raises(RecordError, match="(?s)cannot read wandb project 'me/lra'.*wandb login"):
        load_wandb("me/lra")
