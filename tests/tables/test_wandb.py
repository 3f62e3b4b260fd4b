"""Runs from a wandb project: converted like local records, and a clear error when wandb cannot be reached."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lra.tables.build import Settings, build
from lra.tables.runs import RecordError, from_record, load_wandb, merge
from lra.tables.variants import PresetConfigs
from tests.tables.conftest import RecordWriter
from tests.tables.test_efficiency import write_bench_fixture


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


def wandb_run_of(records: RecordWriter, run_id: str, seed: int, accuracy: float, attention: str) -> SimpleNamespace:
    """A wandb run as lra.train logs it: the resolved config, summary metrics and the val/acc history."""
    config = records.config(["experiment=lra/listops", f"attention={attention}"], (f"seed={seed}",))
    summary = {"test/acc@best": accuracy, "test/acc@last": accuracy, "trainer/global_step": 5000, "params": 100_000,
               "efficiency/steps_per_s": 8.0, "efficiency/peak_memory_mib": 5000.0}
    history = [{"trainer/global_step": 50 * i, "val/acc": accuracy * i / 3} for i in (1, 2, 3)]
    return SimpleNamespace(id=run_id, state="finished", config=config, summary=summary, metadata={"gpu": "NVIDIA H100"},
                           tags=[f"attention:{attention}", "task:listops", "preset:lra/listops"],
                           scan_history=lambda keys: iter(history))


def test_report_views_from_a_wandb_project(records: RecordWriter, presets: PresetConfigs, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m lra.tables wandb=ENTITY/lra` with no local records: the compact table, the Figure 3 view and
    the curves come from the project's runs (wandb.Api replaced by a fake of the public API)."""
    import wandb

    runs = [wandb_run_of(records, "w1", 0, 0.36, "softmax"), wandb_run_of(records, "w2", 1, 0.38, "softmax"),
            wandb_run_of(records, "w3", 0, 0.18, "performer")]
    monkeypatch.setattr(wandb, "Api", lambda timeout: FakeApi(runs))
    settings = Settings(runs_dir=tmp_path / "no-records", bench_dir=write_bench_fixture(tmp_path / "bench"),
                        tables_dir=tmp_path / "tables", report=tmp_path / "report.html", wandb="me/lra",
                        figure_length=2048)
    build(settings, presets)
    page = settings.report.read_text()
    assert 'data-runs="w1 w2"' in page and 'data-runs="w3"' in page
    assert "<b class=\"mean\">37.00 ± 1.41</b>" in page and "and wandb project me/lra" in page
    assert "Training curves" in page and (tmp_path / "tables" / "lra_figure3.png").is_file()
    compact = (tmp_path / "tables" / "lra_compact.md").read_text()
    assert "| softmax | lra/* | LRA Transformer | 37.00 ± 1.41 (n=2) · LRA 36.37 (+0.63) [c1] |" in compact
