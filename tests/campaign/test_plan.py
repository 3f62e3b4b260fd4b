"""The plan: each run's state from the records and checkpoints, the time left, and the dry run's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lra.campaign.grid import parse_duration
from lra.campaign.plan import DONE, NEW, PARTIAL, UNTESTED, Records, render, state_of, summary
from lra.results.files import write_json_atomic
from lra.results.records import ResultsStore
from lra.train.config import ConfigError
from tests.campaign.conftest import TINY_STEPS, plan_runs, write_checkpoint, write_record
from tests.helpers import ROOT, user_environment


def _states(runs, results: Path):
    records = Records(results / "runs")
    return [state_of(run, records) for run in runs], records


def test_done_partial_and_new_runs_from_records_and_checkpoints(workdir: Path, campaign_dir: Path) -> None:
    done, partial, new = plan_runs(campaign_dir, ["seeds=[0,1,2]"])
    write_record(done, "aaaa0001", TINY_STEPS)
    write_record(partial, "aaaa0002", 100, tested=False)  # stopped by an earlier budget at its first validation
    write_checkpoint(partial, "aaaa0002", 100)
    write_record(new, "aaaa0003", 150)  # a run that got further elsewhere: its checkpoint is not on this machine
    states, _ = _states([done, partial, new], workdir / "results")
    assert [s.kind for s in states] == [DONE, PARTIAL, NEW]
    assert states[0].detail == "test 31.25%"
    assert states[1].describe(TINY_STEPS) == f"at step 100 of {TINY_STEPS}"
    assert "a record reached step 150; its checkpoint is not here" in states[2].describe(TINY_STEPS)


def test_a_record_of_another_identity_or_a_short_or_untested_run_is_not_done(workdir: Path, campaign_dir: Path) -> None:
    run, other_seed = plan_runs(campaign_dir)
    write_record(other_seed, "bbbb0001", TINY_STEPS)  # seed 1 is finished: seed 0 is not
    write_record(run, "bbbb0002", TINY_STEPS - 1)  # one step short of the schedule (a time cap stopped it)
    write_record(run, "bbbb0003", TINY_STEPS, tested=False)
    states, _ = _states([run, other_seed], workdir / "results")
    assert [s.kind for s in states] == [NEW, DONE]
    write_checkpoint(run, "bbbb0003", TINY_STEPS)  # trained to the end, tests pending
    assert _states([run], workdir / "results")[0][0].kind == UNTESTED


def test_time_left_uses_the_speed_records_measured_alone_on_a_gpu(workdir: Path, campaign_dir: Path) -> None:
    run, measured = plan_runs(campaign_dir, ["seeds=[0,1]"])
    write_record(measured, "cccc0001", 40, tested=False, steps_per_s=2.0, device_processes=1)
    write_record(measured, "cccc0002", 40, tested=False, steps_per_s=4.0, device_processes=1)
    write_record(measured, "cccc0003", 40, tested=False, steps_per_s=0.5, device_processes=3)  # a shared GPU
    records = Records(workdir / "results" / "runs")
    rate = records.rate(run, default=5)
    assert (rate.steps_per_s, rate.source) == (3.0, "2 runs, same setting")  # the median of the runs alone
    states = [state_of(run, records)]
    table = render([run], states, [rate])
    assert "not started  1m07s" in table.splitlines()[1] and "3 steps/s (2 runs, same setting)" in table  # 200 / 3
    linear = records.rate(plan_runs(campaign_dir, ["backends=[linear]"])[0], default=5)
    assert (linear.steps_per_s, linear.source) == (3.0, "2 runs, other backends, same preset and length")
    text = summary([run], states, [rate], 5)
    assert "1 not started" in text and "GPU time left: 1m07s" in text


def test_the_dry_run_prints_the_plan_and_starts_nothing(workdir: Path, campaign_dir: Path) -> None:
    done, _ = plan_runs(campaign_dir)
    write_record(done, "dddd0001", TINY_STEPS)
    result = subprocess.run([sys.executable, "-m", "lra.campaign", "tiny", f"hydra.searchpath=[file://{campaign_dir}]",
                             "dry_run=true"], cwd=workdir, env=user_environment(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[0] == "campaign tiny: 2 runs"
    assert "(no preset) task=listops_small softmax 0 done (test 31.25%) -" in lines, result.stdout
    assert "(no preset) task=listops_small softmax 1 not started 40s 5 steps/s (default)" in lines
    assert "2 runs: 1 done, 0 trained and waiting for their tests, 0 partial, 1 not started" in result.stdout
    assert not (workdir / "models").exists()  # no run started, no log written


def test_a_campaign_that_does_not_exist_lists_those_that_do(workdir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lra.campaign", "nosuch", "dry_run=true"], cwd=workdir,
                            env=user_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "lra_table1" in result.stderr and "taylorshift" in result.stderr and "Traceback" not in result.stderr


def test_a_typo_in_the_overrides_is_one_line(workdir: Path, campaign_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lra.campaign", "tiny", f"hydra.searchpath=[file://{campaign_dir}]",
                             "dry_run=true", 'overrides=["model.widht=3"]'], cwd=workdir, env=user_environment(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "widht" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("text", "seconds"), [("9m", 540), ("90s", 90), ("90", 90), ("1h30m", 5400), ("0.5m", 30)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "budget") == seconds


def test_a_duration_without_a_unit_it_knows_is_refused() -> None:
    with pytest.raises(ConfigError, match="budget='9 minutes' is not a duration"):
        parse_duration("9 minutes", "budget")


def test_the_module_runs_from_the_repository_root() -> None:
    assert (ROOT / "conf" / "campaign.yaml").is_file()


def test_a_record_from_before_a_config_key_existed_counts_where_the_run_leaves_it_at_its_default(
        workdir: Path, campaign_dir: Path) -> None:
    (run, _) = plan_runs(campaign_dir)
    record = write_record(run, "ffff0001", TINY_STEPS)
    del record["config"]["model"]["compile"]  # an option added after the run (its default: the earlier behaviour)
    record["config"]["task"]["retired_option"] = 3  # and one the code no longer has
    ResultsStore(workdir / "results").save(record)
    assert _states([run], workdir / "results")[0][0].kind == DONE
    (changed, _) = plan_runs(campaign_dir, ['overrides=["model.embedding_init_std=0.5"]'])
    record = write_record(changed, "ffff0002", changed.max_steps)  # that setting, recorded before the key existed
    del record["config"]["model"]["embedding_init_std"]
    ResultsStore(workdir / "results").save(record)
    assert _states([changed], workdir / "results")[0][0].kind == NEW  # 0.5 is not the preset's value: not this run
    record["config"]["model"]["embedding_init_std"] = 0.5
    ResultsStore(workdir / "results").save(record)
    assert _states([changed], workdir / "results")[0][0].kind == DONE


def test_time_left_falls_back_to_the_newest_runs_of_the_model_under_another_preset(workdir: Path,
                                                                                    campaign_dir: Path) -> None:
    (run, other) = plan_runs(campaign_dir, ["seeds=[0,1]"])
    for number, rate in enumerate((1.0, 2.0, 8.0, 9.0, 10.0)):  # the last three written are the newest
        record = write_record(other, f"gggg000{number}", 40, tested=False, steps_per_s=rate)
        record.update(preset="elsewhere/listops", updated=f"2026-12-0{number + 1}T00:00:00+0000")
        record["config"]["preset"] = "elsewhere/listops"
        write_json_atomic(workdir / "results" / "runs" / f"gggg000{number}.json", record)
    rate = Records(workdir / "results" / "runs").rate(run, default=5)
    assert (rate.steps_per_s, rate.source) == (9.0, "3 runs, same task, backend and length, another preset")


def test_time_left_falls_back_to_other_backends_of_the_same_preset_before_the_default(workdir: Path,
                                                                                      campaign_dir: Path) -> None:
    (run, other) = plan_runs(campaign_dir, ["seeds=[0,1]"])
    runs_dir = workdir / "results" / "runs"
    for number, (backend, rate) in enumerate((("performer", 20.0), ("local", 36.0), ("linear", 50.0))):
        record = write_record(other, f"hhhh000{number}", 40, tested=False, steps_per_s=rate)
        record.update(attention=backend, updated=f"2026-12-0{number + 1}T00:00:00+0000")
        record["config"]["attention"] = {"name": backend}
        write_json_atomic(runs_dir / f"hhhh000{number}.json", record)
    rate = Records(runs_dir).rate(run, default=5)
    assert run.backend not in ("performer", "local", "linear")
    assert (rate.steps_per_s, rate.source) == (36.0, "3 runs, other backends, same preset and length")
    record = write_record(other, "hhhh0009", 40, tested=False, steps_per_s=99.0)
    record["config"]["task"]["max_length"] = 17  # another length: not a neighbour
    record.update(attention="nystrom", updated="2026-12-09T00:00:00+0000")
    record["config"]["attention"] = {"name": "nystrom"}
    write_json_atomic(runs_dir / "hhhh0009.json", record)
    assert Records(runs_dir).rate(run, default=5).steps_per_s == 36.0
