"""Running a campaign here: placement on the GPUs, the budget's stop and end, and a real run stopped and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lra.campaign.grid import expand
from lra.campaign.plan import NEW, PARTIAL, Records, RunState, state_of
from lra.campaign.runner import Outcome, Runner, Timing, prepare_data_once, start_order, visible_devices
from tests.campaign.conftest import TINY_STEPS, compose_campaign, plan_runs
from tests.helpers import user_environment


class Clock:
    """time.monotonic, moved forward when a test says so (the budget's stop without waiting for it)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped


def _runner(tmp_path: Path, devices, runs_per_gpu: int, budget: float, clock=time.monotonic, runs=(), **kwargs):
    timing = Timing(clock(), budget, stop_margin=kwargs.pop("stop_margin", 1.0), min_slot=0.0, tables_time=0.0)
    return Runner(devices, runs_per_gpu, timing, tmp_path / "logs", False, kwargs.pop("on_exit", lambda o: None),
                  clock=clock)


class Sleeper(Runner):
    """Children that ignore the stop signal and sleep: what the budget's end must deal with."""

    def command(self, overrides: list[str]) -> list[str]:
        script = "import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); print('ready', flush=True); " \
                 "time.sleep(60)"
        return [sys.executable, "-c", script]


def test_runs_are_placed_round_robin_at_most_runs_per_gpu(workdir: Path, campaign_dir: Path) -> None:
    runs = plan_runs(campaign_dir, ["seeds=[0,1,2,3,4]"])
    runner = Sleeper(["0", "1"], 2, Timing(time.monotonic(), 3.0, 1.0, 0.0, 0.0), workdir / "logs", False,
                     lambda outcome: None)
    outcomes = runner.advance([(run, RunState(NEW, 0)) for run in runs])
    started = [o for o in outcomes if o.returncode is not None]
    assert len(started) == 4 and sum(o.returncode is None for o in outcomes) == 1  # 2 GPUs x 2: the fifth waits
    logs = sorted(workdir.glob("logs/*.log"))
    assert len(logs) == 4


def test_placement_sets_cuda_visible_devices(workdir: Path, campaign_dir: Path) -> None:
    runs = plan_runs(campaign_dir, ["seeds=[0,1,2]"])
    seen = []

    class Recorder(Sleeper):
        def command(self, overrides):
            return [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]

    runner = Recorder(["4", "7"], 2, Timing(time.monotonic(), 60.0, 1.0, 0.0, 0.0), workdir / "logs", False,
                      lambda outcome: seen.append(outcome.log_path.read_text().strip()))
    runner.advance([(run, RunState(NEW, 0)) for run in runs])
    assert sorted(seen) == ["4", "4", "7"]  # round-robin: 4, 7, then 4 again


def test_the_budgets_end_stops_a_run_that_ignores_the_stop(workdir: Path, campaign_dir: Path) -> None:
    (run,) = plan_runs(campaign_dir, ["seeds=[0]"])
    started = time.monotonic()
    runner = Sleeper([None], 1, Timing(started, 3.0, 1.5, 0.0, 0.0), workdir / "logs", False, lambda outcome: None)
    (outcome,) = runner.advance([(run, RunState(NEW, 0))])
    assert outcome.stopped and outcome.returncode == -15  # SIGTERM at the end, after the ignored SIGUSR1
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("listed", "gpus", "expected"), [("2,3", "auto", ["2", "3"]), ("2,3", 1, ["2"]),
                                                          ("", "auto", [None]), ("0,1", 0, [None])])
def test_visible_devices(monkeypatch, listed: str, gpus, expected) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_devices(gpus) == expected


def test_partial_runs_start_before_new_ones(workdir: Path, campaign_dir: Path) -> None:
    new, partial = plan_runs(campaign_dir)
    order = start_order([new, partial], [RunState(NEW, 0), RunState(PARTIAL, 100)])
    assert [run for run, _ in order] == [partial, new]


def _campaign(workdir: Path, campaign_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lra.campaign", "tiny", f"hydra.searchpath=[file://{campaign_dir}]",
                           "seeds=[0]", *args], cwd=workdir, env=user_environment(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_run_stopped_by_the_budget_resumes_and_a_second_call_finishes_it(workdir: Path, campaign_dir: Path) -> None:
    (run,) = plan_runs(campaign_dir, ["seeds=[0]"])
    clock = Clock()
    ends: list[Outcome] = []
    runner = _runner(workdir, [None], 1, 600.0, clock=clock, runs=[run], on_exit=ends.append, stop_margin=300.0)
    worker = threading.Thread(target=runner.advance, args=([(run, RunState(NEW, 0))],))
    worker.start()
    checkpoints = workdir / "models"
    while not any(checkpoints.glob("**/best-step100.ckpt")) and worker.is_alive():  # its first validation
        time.sleep(0.1)
    clock.skipped = runner.timing.stop - time.monotonic()  # the budget's stop is now (its end 300 s away)
    worker.join(timeout=300)
    (outcome,) = ends
    assert outcome.stopped and outcome.returncode == 0, outcome.log_path.read_text()[-3000:]

    state = state_of(run, Records(workdir / "results" / "runs"))
    assert state.kind == PARTIAL and 100 <= state.step < TINY_STEPS  # stopped cleanly between validations
    (record_path,) = (workdir / "results" / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "finished" and record["metrics"]["step"] == state.step
    last = next(checkpoints.glob("**/last.ckpt"))
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == state.step

    second = _campaign(workdir, campaign_dir, "budget=5m")  # advances it: resumes from last.ckpt, finishes, tests
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"at step {state.step:,} of {TINY_STEPS:,}" in second.stdout
    record = json.loads(record_path.read_text())  # the same run: its record, now complete
    assert record["metrics"]["step"] == TINY_STEPS and record["resumed"] == 1
    assert record["metrics"]["test/acc@best"] is not None
    assert len(record["efficiency"]["segments"]) == 2

    third = _campaign(workdir, campaign_dir, "budget=5m")
    assert third.returncode == 0 and "every run is done: nothing to run" in third.stdout
    assert len(list((workdir / "results" / "runs").glob("*.json"))) == 1


def test_data_is_prepared_once_and_runs_without_data_are_left_out(workdir: Path, campaign_dir: Path, capsys) -> None:
    cfg = compose_campaign("tiny", ["seeds=[0,1]", 'overrides=["model=tiny"]'], campaign_dir)  # keys of both
    cfg.presets.append(OmegaConf.create({"experiment": None, "overrides": ["task=retrieval"]}))
    runs = expand(cfg)
    ready = prepare_data_once([(run, RunState(NEW, 0)) for run in runs])
    assert [run.config.task.name for run, _ in ready] == ["listops", "listops"]
    assert len(list((workdir / "data" / "cache").glob("listops-*"))) == 1
    out = capsys.readouterr().out
    assert out.count("skip   retrieval runs") == 1 and "lra_release" in out


def test_an_interrupted_campaign_stops_its_runs_before_it_exits(workdir: Path, campaign_dir: Path) -> None:
    (run,) = plan_runs(campaign_dir, ["seeds=[0]"])
    ended: list[Outcome] = []

    class Interrupted(Sleeper):
        def _reap(self) -> None:
            child = self.children[0]
            if not child.stop_sent and child.log_path.read_text().strip() == "ready":  # Ctrl-C while it trains
                raise KeyboardInterrupt
            super()._reap()

    runner = Interrupted([None], 1, Timing(time.monotonic(), 600.0, 1.0, 0.0, 0.0), workdir / "logs", False,
                         ended.append)
    with pytest.raises(KeyboardInterrupt):
        runner.advance([(run, RunState(NEW, 0))])
    (outcome,) = ended
    assert outcome.stopped and outcome.returncode == -15  # asked to stop, then ended at the new end, 1 s later


def test_finishing_only_skips_the_runs_that_would_not_finish_before_the_stop(workdir: Path, campaign_dir: Path,
                                                                             capsys) -> None:
    long, short = plan_runs(campaign_dir, ["seeds=[0,1]"])
    needs = {long.slug: 100.0, short.slug: 1.0}
    runner = Sleeper([None], 1, Timing(time.monotonic(), 3.0, 1.0, 0.0, 0.0), workdir / "logs", False,
                     lambda outcome: None, needs=lambda run, state: needs[run.slug])
    outcomes = {o.run.slug: o for o in runner.advance([(long, RunState(NEW, 0)), (short, RunState(NEW, 0))])}
    assert outcomes[long.slug].returncode is None and outcomes[short.slug].returncode is not None
    assert f"skip   {long.label}: needs about 1m40s" in capsys.readouterr().out


def test_the_campaign_command_skips_runs_whose_estimate_does_not_fit(workdir: Path, campaign_dir: Path) -> None:
    result = _campaign(workdir, campaign_dir, "budget=5m", "finishing_only=true", "run_overhead=10h")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skip   " in result.stdout and "needs about 10h" in result.stdout
    assert "not started in this call (no time left for them, or not enough to finish): 1 runs" in result.stdout
    assert not list((workdir / "results" / "runs").glob("*.json"))
