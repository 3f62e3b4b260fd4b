"""Training end to end on CPU: records, checkpoints, wandb, evaluation, sweeps, resumption."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lra.results.records
import lra.train.run
from lra.data.base import TaskSpec
from lra.model import ModelConfig
from lra.results.records import ResultsStore
from lra.train.efficiency import EfficiencyMonitor, device_process_count, pool_segments
from lra.train.identity import identity_key
from lra.train.module import LRAModule
from lra.train.run import evaluate, load_checkpoint, train
from tests.helpers import ROOT, TINY_RUN, compose_train, run_script, user_environment, wandb_offline_summary


def test_loss_decreases_on_a_learnable_batch() -> None:
    torch.manual_seed(0)
    spec = TaskSpec(name="toy", num_classes=2, max_length=16, vocab_size=8)
    module = LRAModule(spec, ModelConfig(d_model=32, num_layers=1, num_heads=2, mlp_dim=64, dropout=0.0),
                       "softmax", {}, optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    inputs = torch.randint(1, 8, (32, 16))
    batch = {"inputs": inputs, "labels": (inputs[:, 3] > 4).long()}  # the label is a function of the input
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(40):
        loss, _ = module._step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_run_writes_record_checkpoints_and_an_offline_wandb_run(workdir: Path) -> None:
    cfg = compose_train([*TINY_RUN, "logger.wandb.mode=offline", "run_id=rec1"])
    record = train(cfg)

    stored = json.loads((workdir / "results/runs/rec1.json").read_text())
    assert stored["status"] == "finished" and stored["run_id"] == "rec1"
    assert stored["task"] == "listops" and stored["attention"] == "softmax" and stored["seed"] == 0
    assert stored["protocol"]["validation_split"] == "val"
    assert stored["protocol"]["attention_padding"].startswith("padded keys masked")
    assert set(stored["metrics"]) >= {"val/acc_best", "test/acc@best", "test/acc@last", "step"}
    assert stored["metrics"]["step"] == 20
    assert 0.0 <= stored["metrics"]["test/acc@best"] <= 1.0
    labels = np.load(Path(stored["protocol"]["data_source"]["cache"]) / "test.labels.npy")
    assert stored["metrics"]["test/majority_acc"] == np.bincount(labels).max() / len(labels) > 0.1  # 10 classes
    efficiency = stored["efficiency"]
    assert efficiency["memory_kind"] == "cpu_peak_rss" and efficiency["peak_memory_mib"] > 0
    assert efficiency["measured_steps"] == 18  # 20 steps, 2 left out as warm-up
    assert efficiency["padded_tokens_per_s"] >= efficiency["tokens_per_s"] > 0
    assert efficiency["device_processes"] is None  # a CPU run: no GPU to share
    assert stored["params"] == sum(p.numel() for p in torch.nn.Module.parameters(_module_of(cfg)))
    assert [point["step"] for point in stored["history"]] == [10, 20]
    assert stored["environment"]["torch"] == torch.__version__
    assert stored["config"]["model"]["d_model"] == 32
    assert record["metrics"] == stored["metrics"]

    checkpoints = stored["paths"]["checkpoints"]
    assert Path(checkpoints["last"]).is_file() and Path(checkpoints["best"]).is_file()
    assert Path(checkpoints["last"]).is_relative_to(workdir / "models/listops/softmax")

    summary = wandb_offline_summary(Path(stored["paths"]["wandb"]))
    assert summary["test/acc@best"] == pytest.approx(stored["metrics"]["test/acc@best"])
    assert summary["efficiency/samples_per_s"] == pytest.approx(efficiency["samples_per_s"])
    assert summary["efficiency/peak_memory_mib"] == pytest.approx(efficiency["peak_memory_mib"])


def test_a_records_created_time_is_its_start(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = (f"2026-01-01T00:00:{second:02d}+0000" for second in itertools.count())
    tick = lambda: next(clock)  # noqa: E731
    monkeypatch.setattr(lra.train.run, "now", tick)
    monkeypatch.setattr(lra.results.records, "now", tick)
    record = train(compose_train([*TINY_RUN, "logger=none", "run_id=clock"]))
    stored = json.loads((workdir / "results/runs/clock.json").read_text())
    assert stored["created"] == "2026-01-01T00:00:00+0000" < stored["updated"] and record["status"] == "finished"
    # the task facts the tables read (lra.results.records.sequence_length): written, not derived from the config
    assert stored["sequence_length"] == stored["config"]["task"]["max_length"] and stored["schema"] == 2


def test_a_run_stopped_between_validations_resumes_from_its_last_step(workdir: Path) -> None:
    # One epoch is 100 steps; the first run stops at step 30, between validations, inside it.
    common = [*TINY_RUN, "task.num_train=3200", "trainer.val_check_interval=20", "logger=none"]
    first = train(compose_train([*common, "trainer.max_steps=30"]))
    last = Path(first["paths"]["checkpoints"]["last"])
    assert load_checkpoint(last)["global_step"] == 30 and "test/acc@last" in first["metrics"]

    resumed = train(compose_train([*common, "trainer.max_steps=50", f"ckpt_path={last}"]))
    assert resumed["run_id"] == first["run_id"] and resumed["resumed"] == 1
    assert resumed["metrics"]["step"] == 50
    assert [point["step"] for point in resumed["history"]] == [20, 40]  # validations only at multiples of 20
    # The speed covers both processes: 28 measured steps before the stop, 18 after (2 warm-up steps each).
    assert [segment["steps"] for segment in resumed["efficiency"]["segments"]] == [28, 18]
    assert resumed["efficiency"]["measured_steps"] == 46 and resumed["efficiency"]["pooled_segments"] == 2

    # The resume count lives in the checkpoint: it stays right when the run record did not travel along.
    cfg = compose_train([*common, "trainer.max_steps=60", f"ckpt_path={last}"])
    ResultsStore(cfg.paths.results_dir).path(first["run_id"]).unlink()
    again = train(cfg)
    assert again["run_id"] == first["run_id"] and again["resumed"] == 2 and again["metrics"]["step"] == 60
    assert [segment["steps"] for segment in again["efficiency"]["segments"]] == [28, 18, 8]  # from the checkpoint


def test_a_run_resumed_only_for_its_tests_keeps_its_training_speed(workdir: Path) -> None:
    # What a campaign call does with a run the budget stopped after its last step, before its tests.
    common = [*TINY_RUN, "task.num_train=3200", "trainer.max_steps=30", "logger=none", "run_id=untested"]
    first = train(compose_train([*common, "test_after_fit=false"]))
    assert "test/acc@best" not in first["metrics"] and first["efficiency"]["measured_steps"] == 28
    last = first["paths"]["checkpoints"]["last"]
    ResultsStore(workdir / "results").path("untested").unlink()  # the checkpoint alone carries the segments
    tested = train(compose_train([*common, f"ckpt_path={last}"]))
    assert tested["metrics"]["test/acc@best"] is not None and tested["resumed"] == 1
    measured = ("device", "steps", "seconds", "samples", "tokens", "peak_memory_mib")  # as the last.ckpt saw them
    assert [{key: segment[key] for key in measured} for segment in tested["efficiency"]["segments"]] == [
        {key: segment[key] for key in measured} for segment in first["efficiency"]["segments"]]
    assert tested["efficiency"]["steps_per_s"] == first["efficiency"]["steps_per_s"]


def test_a_longer_time_cap_or_other_display_keys_keep_the_run_identity() -> None:
    base = identity_key(compose_train(TINY_RUN))
    same = ["+trainer.max_time=00:00:08:00", "progress_refresh_steps=7", "task.eval_batch_size=256"]
    assert identity_key(compose_train([*TINY_RUN, *same])) == base
    assert identity_key(compose_train([*TINY_RUN, "trainer.max_steps=21"])) != base


def _module_of(cfg):
    from lra.train.run import build_module, prepare_data

    return build_module(cfg, prepare_data(cfg).spec)


def test_evaluate_reproduces_the_test_accuracy_from_the_checkpoint(workdir: Path) -> None:
    record = train(compose_train([*TINY_RUN, "logger=none", "run_id=ev1"]))
    best = record["paths"]["checkpoints"]["best"]
    evaluation = evaluate(compose_train([f"ckpt={best}", "split=test", "accelerator=cpu"], config_name="evaluate"))
    assert evaluation["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc@best"], abs=1e-6)
    assert evaluation["metrics"]["test/majority_acc"] == record["metrics"]["test/majority_acc"]
    assert (workdir / "results/evals" / f"{evaluation['run_id']}.json").is_file()


def test_the_taylorshift_listops_variant_trains_to_a_record(workdir: Path) -> None:
    lengths = ["task.max_length=64", "task.generator.min_length=20", "task.generator.max_length=64"]
    record = train(compose_train([*TINY_RUN, "task.variant=taylorshift", *lengths, "logger=none", "run_id=ts1"]))
    assert record["status"] == "finished" and record["metrics"]["step"] == 20
    assert record["task_variant"] == record["protocol"]["data_source"]["variant"] == "taylorshift"
    assert record["efficiency"]["speed"]["trim_train"] is True  # fresh batches have exactly their drawn length
    assert 0.0 <= record["metrics"]["test/acc@best"] <= 1.0


def test_checkpoints_load_weights_only_and_carry_their_config(workdir: Path) -> None:
    record = train(compose_train([*TINY_RUN, "logger=none", "run_id=safe1"]))
    checkpoint = load_checkpoint(record["paths"]["checkpoints"]["last"])  # torch.load(weights_only=True)
    assert checkpoint["lra_run_id"] == "safe1" and "d_model: 32" in checkpoint["lra_config"]


def test_evaluate_rejects_a_corrupt_checkpoint(workdir: Path) -> None:
    bad = workdir / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_script("evaluate.py", [f"ckpt={bad}"], cwd=workdir, timeout=120)
    assert result.returncode == 2 and "not a readable lra checkpoint" in result.stderr
    assert f"{bad} has no bad.ckpt.sha256 beside it" in result.stderr  # no digest: unverified, said so
    assert "Traceback" not in result.stderr


def test_sweep_runs_one_record_per_job(workdir: Path) -> None:
    args = ["-m", *TINY_RUN, "trainer.max_steps=4", "trainer.val_check_interval=4", "logger=none", "seed=0,1"]
    result = run_script("train.py", args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (workdir / "results/runs").glob("*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1] and {r["status"] for r in records} == {"finished"}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=user_environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_result(workdir: Path) -> None:
    # 3,200 examples: one epoch is 100 steps, so the kill lands inside the first epoch, where Lightning's
    # own save_last would have written nothing yet; dropout makes the random state part of the check.
    common = [*TINY_RUN, "task.num_train=3200", "model.dropout=0.2", "trainer.max_steps=120",
              "trainer.val_check_interval=20", "logger.wandb.mode=offline"]
    assert run_script("train.py", [*common, "run_id=straight"], cwd=workdir).returncode == 0

    victim = _start([*common, "run_id=victim"], workdir)
    deadline = time.time() + 120
    while not list(workdir.glob("models/**/victim/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed = json.loads((workdir / "results/runs/victim.json").read_text())
    assert killed["status"] == "running", "the kill came after the run finished; the test proved nothing"
    (last,) = workdir.glob("models/**/victim/checkpoints/last.ckpt")
    assert load_checkpoint(last)["global_step"] < 100, "last.ckpt was first written at an epoch's end"

    resumed = run_script("train.py", [*common, "ckpt_path=last"], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = json.loads((workdir / "results/runs/straight.json").read_text())
    again = json.loads((workdir / "results/runs/victim.json").read_text())
    assert again["status"] == "finished" and again["resumed"] == 1
    assert again["metrics"]["step"] == straight["metrics"]["step"] == 120
    for key in ("val/acc_best", "test/acc@best", "test/acc@last", "test/loss@last"):
        assert again["metrics"][key] == pytest.approx(straight["metrics"][key], abs=1e-5), key
    assert [p["step"] for p in again["history"]] == [p["step"] for p in straight["history"]]
    assert sorted(p.name for p in (workdir / "results/runs").iterdir()) == ["straight.json", "victim.json"]
    wandb_runs = list(workdir.glob("models/**/victim/wandb/offline-run-*"))
    assert {run.name.rsplit("-", 1)[-1] for run in wandb_runs} == {"victim"}  # one run id, resumed
    assert sorted(again["paths"]["wandb_segments"]) == sorted(map(str, wandb_runs)) and len(wandb_runs) == 2


PROCESS_LINE = "\nprocess       4242 uses     1000.000 MB GPU memory"


@pytest.mark.parametrize(("listing", "count"), [
    ("GPU:0" + PROCESS_LINE, 1),
    ("GPU:0" + PROCESS_LINE * 2, 2),
    ("pynvml module not found, please install nvidia-ml-py", None),
    ("GPU:0\nno processes are running", None),  # NVML cannot see this very process: unknown, not alone
])
def test_processes_sharing_the_gpu_are_counted(monkeypatch, listing: str, count: int | None) -> None:
    monkeypatch.setattr(torch.cuda, "list_gpu_processes", lambda device: listing)
    assert device_process_count(torch.device("cuda", 0)) == count
    assert device_process_count(torch.device("cpu")) is None


def _segment(steps: int, seconds: float, processes: int | None, peak: float, device: str = "NVIDIA H200") -> dict:
    return {"device": device, "device_processes": processes, "memory_kind": "cuda_max_allocated", "steps": steps,
            "seconds": seconds, "samples": 32 * steps, "tokens": 1000 * steps, "padded_tokens": 2000 * steps,
            "peak_memory_mib": peak}


def test_a_resumed_runs_speed_pools_the_segments_like_its_longest() -> None:
    # Two stretches sharing the GPU with another run, then a 24-step tail alone: the tail neither stands for
    # the run (its speed is another condition's) nor mixes into the shared stretches.
    segments = [_segment(2291, 381.0, 2, 7785.8), _segment(2655, 402.0, 2, 7785.7), _segment(24, 1.7, 1, 7700.0)]
    pooled = pool_segments(segments)
    assert pooled["measured_steps"] == 4946 and pooled["pooled_segments"] == 2
    assert pooled["steps_per_s"] == pytest.approx(4946 / 783.0, abs=0.01)
    assert pooled["device_processes"] == 2 and pooled["peak_memory_mib"] == 7785.8
    assert pooled["tokens_per_s"] == pytest.approx(1000 * 4946 / 783.0, abs=0.01)
    # On another GPU model the segments are other conditions too.
    moved = pool_segments([_segment(100, 10.0, 1, 1.0, "NVIDIA H100"), _segment(300, 20.0, 1, 2.0)])
    assert moved["measured_steps"] == 300 and moved["steps_per_s"] == 15.0 and moved["pooled_segments"] == 1


class FakeCudaMemory:
    """torch.cuda's peak-memory counters, driven by hand: ``use(mib)`` allocates up to a new peak."""

    def __init__(self) -> None:
        self.peak = 0.0

    def use(self, mib: float) -> None:
        self.peak = max(self.peak, mib)

    def max_memory_allocated(self, device=None) -> float:
        return self.peak * 2**20

    def reset_peak_memory_stats(self, device=None) -> None:
        self.peak = 10.0  # what stays allocated: weights and optimizer state


def test_training_peak_memory_leaves_validation_and_tests_out(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = FakeCudaMemory()
    for name in ("max_memory_allocated", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, getattr(memory, name))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    trainer = SimpleNamespace(sanity_checking=False, global_step=0, world_size=1,
                              strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    monitor = EfficiencyMonitor(warmup_steps=0)
    monitor.on_train_start(trainer, None)
    memory.use(100.0)  # training steps at batch 32
    monitor.on_validation_start(trainer, None)
    memory.use(900.0)  # validation at batch 256
    monitor.on_validation_end(trainer, None)
    memory.use(120.0)
    assert monitor.segment()["peak_memory_mib"] == 120.0  # a checkpoint mid-training sees the stretch under way
    monitor.on_train_end(trainer, None)
    memory.use(2000.0)  # testing the best and last checkpoints, after training
    segment = monitor.segment()
    assert segment["memory_kind"] == "cuda_max_allocated_training" and segment["peak_memory_mib"] == 120.0
    assert segment["validation_peak_memory_mib"] == 900.0
