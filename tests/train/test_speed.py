"""The speed options of a run: compilation with its eager fallback, bucketing, and what the record says of them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

import lra.train.module
import lra.train.run
from lra.train.run import prepare_data, train
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


def test_a_padded_task_trains_padded_in_cuda_graphs_and_packed_if_they_fail(workdir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    # On CUDA the tiny ListOps model could pack; here the CPU stands in for it (packs_on), and compile is mocked.
    monkeypatch.setattr(lra.train.module.LRAClassifier, "packs_on", lambda self, device: True)
    monkeypatch.setattr(lra.train.module.torch, "compile", lambda model, mode: model)
    graphs = [*TINY_RUN, "logger=none", "model.compile=reduce-overhead"]
    speed = train(compose_train([*graphs, "run_id=graphs"]))["efficiency"]["speed"]
    assert speed["compile"] == "on (reduce-overhead)" and speed["unpad"] is False and speed["unpad_eval"] is True
    speed = train(compose_train([*TINY_RUN, "logger=none", "model.compile=default", "run_id=default"]))
    assert speed["efficiency"]["speed"]["unpad"] is True  # compiled without graphs: packed

    def broken_compile(model, mode):
        def call(*args, **kwargs):
            raise RuntimeError("cudagraphs could not be captured")
        return call

    monkeypatch.setattr(lra.train.module.torch, "compile", broken_compile)
    speed = train(compose_train([*graphs, "run_id=eager"]))["efficiency"]["speed"]
    assert speed["compile"].startswith("failed (RuntimeError: cudagraphs") and speed["unpad"] is True


def test_the_training_shape_the_compile_rule_reads(workdir: Path):
    shape = prepare_data(compose_train(TINY_RUN)).training_shape()
    assert shape.fixed_width and 0 < shape.fill < 1  # ListOps pads: every batch max_length wide, part real
    assert not prepare_data(compose_train([*TINY_RUN, "task.bucket=true"])).training_shape().fixed_width


def test_the_record_states_the_validation_share_and_the_speed_options(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none"]))
    efficiency = record["efficiency"]
    assert 0 < efficiency["validation_fraction"] < 1 and efficiency["fit_seconds"] > 0
    segment = efficiency["segments"][0]
    assert 0 < segment["validation_seconds"] < segment["fit_seconds"]
    assert efficiency["speed"] == {"compile": "off", "unpad": False, "unpad_eval": False, "bucket": False,
                                   "trim_train": False, "trim_eval": True,
                                   "attention_form": None}  # on CPU: compile and unpad are off
    assert record["protocol"]["train_batches"] == "uniform random"


def test_a_taylorshift_record_states_the_form_that_ran_and_its_dropout(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none", "attention=taylorshift", "model.attention_dropout=0.1"]))
    form = record["efficiency"]["speed"]["attention_form"]
    assert form.startswith("PyTorch direct form at N=") and form.endswith("; attention dropout 0.1 on the weights")


def test_a_run_held_to_one_sdpa_kernel_says_so_in_its_record(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none", "attention.sdpa=math"]))
    assert record["status"] == "finished"
    assert record["efficiency"]["speed"]["attention_form"] == (
        "SDPA held to its math kernel (packed batches: FlashAttention varlen)")


def test_a_bucketed_run_is_recorded_as_such(workdir: Path):
    record = train(compose_train([*TINY_RUN, "logger=none", "task.bucket=true", "task.pad_multiple=8"]))
    assert record["status"] == "finished"
    assert record["efficiency"]["speed"]["bucket"] is True and record["efficiency"]["speed"]["trim_train"] is True
    assert record["protocol"]["train_batches"].startswith("length-bucketed")
    assert record["efficiency"]["padded_tokens_per_s"] > record["efficiency"]["tokens_per_s"] > 0


class _SyncsRefused(L.Callback):
    """Makes torch raise on any device sync from the start of each unscheduled step to the start of the next:
    the scheduled ones are every ``every``-th (logging, the progress bar and the divergence check)."""

    def __init__(self, every: int):
        self.every = every
        self.steps_refused = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        refused = (trainer.global_step + 1) % self.every != 0
        torch.cuda.set_sync_debug_mode("error" if refused else "default")
        self.steps_refused += refused

    def on_validation_start(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.parametrize("unpad", ["false", "auto"], ids=["padded", "packed"])
def test_training_steps_between_the_scheduled_ones_wait_for_no_device_sync(workdir: Path, monkeypatch, unpad):
    """A sync per step serialises the host with the GPU: Lightning's result collection made two per step
    (about 1 ms a step on an H200) while train/loss went through ``self.log``, and packing made on the GPU read
    the token count back (now made on the host)."""
    probe = _SyncsRefused(every=5)
    make_trainer = lra.train.run.make_trainer
    monkeypatch.setattr(lra.train.run, "make_trainer", lambda cfg, run_dir, extra: make_trainer(
        cfg, run_dir, [*extra, probe]))
    try:
        record = train(compose_train([*TINY_RUN, "trainer.accelerator=gpu", "logger=none", f"model.unpad={unpad}",
                                      "trainer.log_every_n_steps=5", "progress_refresh_steps=5"]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert record["status"] == "finished" and probe.steps_refused == 16
    assert record["efficiency"]["speed"]["unpad"] is (unpad == "auto")


class _Logged(Logger):
    name, version = "captured", "0"

    def __init__(self):
        super().__init__()
        self.points: list[tuple[int, dict]] = []
        self.experiment = SimpleNamespace(summary={})  # the run writes its final numbers into the wandb summary

    def log_metrics(self, metrics, step=None) -> None:
        self.points.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_train_loss_reaches_the_logger_and_the_history_without_lightnings_result_collection(workdir: Path,
                                                                                            monkeypatch):
    logger = _Logged()
    monkeypatch.setattr(lra.train.run, "make_wandb_logger", lambda *args: logger)
    monkeypatch.setattr(lra.train.run, "run_location", lambda logger: None)
    monkeypatch.setattr(lra.train.run, "wandb_segments", lambda logger, run_dir: [])
    monkeypatch.setattr(lra.train.run, "finish_wandb", lambda logger, exit_code: None)
    record = train(compose_train([*TINY_RUN, "trainer.log_every_n_steps=5"]))
    train_points = [(step, sorted(metrics)) for step, metrics in logger.points if "train/loss" in metrics]
    assert train_points == [(step, ["train/acc", "train/loss"]) for step in (4, 9, 14, 19)]
    validations = [step for step, metrics in logger.points if "val/acc" in metrics]
    assert validations == [9, 19]  # Lightning's step for both: the optimizer steps taken before the batch
    logged = {step: metrics["train/loss"] for step, metrics in logger.points if "train/loss" in metrics}
    assert [point["train/loss"] for point in record["history"]] == [round(logged[9], 6), round(logged[19], 6)]


@pytest.mark.gpu
def test_a_padded_task_trains_in_cuda_graphs_and_evaluates_packed(workdir: Path):
    """What compile=auto picks for full padded batches (Text at 1000 bytes), forced here on tiny ListOps."""
    record = train(compose_train([*TINY_RUN, "trainer.accelerator=gpu", "logger=none", "precision=bf16-mixed",
                                  "model.compile=reduce-overhead"]))
    speed = record["efficiency"]["speed"]
    assert speed["compile"] == "on (reduce-overhead)" and speed["unpad"] is False and speed["unpad_eval"] is True
    assert record["status"] == "finished" and record["metrics"]["test/acc@best"] is not None
