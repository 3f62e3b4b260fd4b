"""Throughput and memory of training, measured by a callback every run gets (``EfficiencyMonitor``)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from lra.results.environment import describe_device

if TYPE_CHECKING:
    from lra.data import LRADataModule
    from lra.train.module import LRAModule


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_process_count(device: torch.device) -> int | None:
    """Compute processes on a CUDA device, this one included; None on CPU or where NVML is missing."""
    if device.type != "cuda":
        return None
    try:
        listing = torch.cuda.list_gpu_processes(device)
    except Exception:  # NVML refused (some sandboxes): unknown
        return None
    # torch reports a missing NVML in the text; and this process is on the device, so no line at all means
    # NVML cannot see processes here (a PID namespace): unknown, not zero.
    return sum(line.startswith("process ") for line in listing.splitlines()) or None


class EfficiencyMonitor(L.Callback):
    """Steady-state training throughput and peak memory.

    Timing starts after ``warmup_steps`` optimizer steps (compilation, allocator growth and cudnn
    autotuning stay out) and pauses during validation and checkpoint saving, with a device
    synchronisation at each boundary so asynchronous GPU work is counted where it runs. Token counts
    are kept on the device and read once at the end. On GPU, peak memory is ``torch.cuda.max_memory_allocated``
    over the training steps alone (``cuda_max_allocated_training``): validation batches are often larger than
    training ones (ListOps: 256 against 32), so their peak, kept apart as ``validation_peak_memory_mib``, would
    stand for a backend's training memory. On CPU it is the process's peak resident set size (``cpu_peak_rss``),
    which cannot be taken apart.
    On a GPU, ``device_processes`` is the most compute processes seen on it at the measurement's
    boundaries (NVML; None where it cannot tell): a run that shared its GPU has a meaningless speed.
    Each segment also counts its wall time from the start of training (``fit_seconds``: warm-up, compilation,
    validation and checkpoints included) and the part spent validating (``validation_seconds``), so the
    summary says which share of a run's time went to validation (``validation_fraction``, over every segment).

    Each process that trains a run measures one *segment*; the earlier segments of a resumed run travel
    in its checkpoint. The summary pools the segments measured under the conditions of the longest one
    (device, processes on it, memory kind), so neither a short tail after a resume stands for the run nor
    a stretch on a shared GPU mixes with one on a GPU alone.
    """

    def __init__(self, warmup_steps: int = 10):
        self.warmup_steps = warmup_steps
        self.earlier_segments: list[dict[str, Any]] = []
        self.restored_segments: list[dict[str, Any]] = []
        self.trained_here = False  # on_train_start ran in this process (Lightning skips it at max_steps)
        self.device = torch.device("cpu")
        self.fit_started = time.perf_counter()
        self.reset()

    def reset(self) -> None:
        self.elapsed = 0.0
        self.started: float | None = None
        self.steps = 0
        self.samples = 0
        self.padded_tokens = 0
        self.real_tokens: torch.Tensor | int = 0
        self.device_processes: int | None = None
        self.training_peak = 0.0
        self.validation_peak: float | None = None
        self.training_ended = False
        self.fit_ended: float | None = None
        self.per_rank: list[dict[str, Any]] = []  # every process's counts, under data parallelism
        self.validation_seconds = 0.0
        self.validation_started: float | None = None

    def _count_device_processes(self) -> None:
        count = device_process_count(self.device)
        if count is not None:
            self.device_processes = max(count, self.device_processes or 0)

    def _pause(self) -> None:
        if self.started is not None:
            _sync(self.device)
            self.elapsed += time.perf_counter() - self.started
            self.started = None
            self._count_device_processes()

    def _resume(self, trainer: L.Trainer) -> None:
        if self.started is None and self.steps_seen(trainer) >= self.warmup_steps:
            self._count_device_processes()
            _sync(self.device)
            self.started = time.perf_counter()

    def steps_seen(self, trainer: L.Trainer) -> int:
        return trainer.global_step - self.first_step

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_started = time.perf_counter()  # before the module's own start (a compilation) runs

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()
        self.trained_here = True
        self.earlier_segments = self.restored_segments
        self.first_step = trainer.global_step
        self.device = trainer.strategy.root_device
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._resume(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.started is None:
            return
        inputs = batch["inputs"]
        self.steps += 1
        self.samples += inputs.shape[0]
        self.padded_tokens += inputs.numel()
        mask = batch.get("padding_mask")
        self.real_tokens = self.real_tokens + ((~mask).sum() if mask is not None else inputs.numel())

    def _cuda_peak(self) -> float:
        """The peak since the last reset, in MiB; the next stretch starts its own."""
        peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        torch.cuda.reset_peak_memory_stats(self.device)
        return peak

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()
        if not trainer.sanity_checking:
            _sync(self.device)
            self.validation_started = time.perf_counter()
        if self.device.type == "cuda" and not trainer.sanity_checking:
            self.training_peak = max(self.training_peak, self._cuda_peak())

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.validation_started is not None:
            _sync(self.device)
            self.validation_seconds += time.perf_counter() - self.validation_started
            self.validation_started = None
        if self.device.type == "cuda" and not trainer.sanity_checking:
            self.validation_peak = max(self.validation_peak or 0.0, self._cuda_peak())
        if not trainer.sanity_checking:
            self._gather_ranks(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._pause()

    def on_train_end(self, trainer, pl_module) -> None:
        self._pause()
        if self.device.type == "cuda":  # the tests of the checkpoints come after: keep them out
            self.training_peak = max(self.training_peak, self._cuda_peak())
        self.training_ended = True
        self.fit_ended = time.perf_counter()
        self._gather_ranks(trainer)

    def _local_counts(self) -> dict[str, Any]:
        """This process's samples, tokens and peak memory (MiB) so far, and the memory's kind."""
        if self.device.type == "cuda":
            peak, kind = self.training_peak, "cuda_max_allocated_training"
            if not self.training_ended:  # a checkpoint taken mid-training: the stretch under way counts too
                peak = max(peak, torch.cuda.max_memory_allocated(self.device) / 2**20)
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"
        real = self.real_tokens if isinstance(self.real_tokens, int) else int(self.real_tokens.item())
        return {"samples": self.samples, "tokens": real, "padded_tokens": self.padded_tokens,
                "peak_memory_mib": round(peak, 1), "memory_kind": kind}

    def _gather_ranks(self, trainer: L.Trainer) -> None:
        """Under data parallelism, every process's counts (at a validation and at the end of training, where
        all of them are): the record counts throughput over all ranks and memory per rank."""
        if trainer.world_size == 1:
            return
        local = self._local_counts()
        keys = ("samples", "tokens", "padded_tokens", "peak_memory_mib")
        values = torch.tensor([float(local[key]) for key in keys], dtype=torch.float64,
                              device=trainer.strategy.root_device)
        gathered = trainer.strategy.all_gather(values).reshape(trainer.world_size, len(keys)).tolist()
        self.per_rank = [{key: (round(v, 1) if key == "peak_memory_mib" else int(v)) for key, v in zip(keys, row,
                                                                                                         strict=True)}
                         for row in gathered]

    def segment(self) -> dict[str, Any]:
        """This run's measurement in this process (over all ranks under data parallelism, with each rank's
        counts in ``per_rank``), as counts: rates are taken when segments are pooled."""
        running = time.perf_counter() - self.started if self.started is not None else 0.0
        counts = self._local_counts()
        if self.per_rank:
            counts.update({key: sum(rank[key] for rank in self.per_rank)
                           for key in ("samples", "tokens", "padded_tokens")})
            counts.update(peak_memory_mib=max(rank["peak_memory_mib"] for rank in self.per_rank),
                          peak_memory_sum_mib=round(sum(rank["peak_memory_mib"] for rank in self.per_rank), 1),
                          per_rank=self.per_rank)
        fit = (self.fit_ended or time.perf_counter()) - self.fit_started
        return {"device": describe_device(self.device), "device_processes": self.device_processes,
                "processes": len(self.per_rank) or 1, "steps": self.steps, "seconds": round(self.elapsed + running, 3),
                "fit_seconds": round(fit, 3), "validation_seconds": round(self.validation_seconds, 3), **counts,
                "validation_peak_memory_mib": None if self.validation_peak is None else round(self.validation_peak, 1)}

    def segments(self) -> list[dict[str, Any]]:
        """Every process's measurement of this run. A process that resumed a run already at its last step (only
        its tests were left) trained nothing: it adds no segment, and the checkpoint's segments stand."""
        if not self.trained_here and self.restored_segments:
            return list(self.restored_segments)
        return [*self.earlier_segments, self.segment()]

    def state_dict(self) -> dict[str, Any]:
        return {"segments": self.segments()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Taken up only when training starts: testing a checkpoint restores callback states too.
        self.restored_segments = list(state_dict["segments"])

    def summary(self) -> dict[str, Any]:
        segments = self.segments()
        return {**pool_segments(segments), "warmup_steps": self.warmup_steps, "segments": segments}


def pool_segments(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates and peak memory over the segments measured under the conditions of the longest one."""
    conditions = lambda segment: (segment["device"], segment["device_processes"], segment["memory_kind"],  # noqa: E731
                                  segment.get("processes", 1))
    longest = max(segments, key=lambda segment: segment["steps"])
    pooled = [segment for segment in segments if conditions(segment) == conditions(longest)]
    total = {key: sum(segment[key] for segment in pooled)
             for key in ("steps", "seconds", "samples", "tokens", "padded_tokens")}
    rate = (lambda n: round(n / total["seconds"], 2)) if total["seconds"] > 0 else (lambda n: None)
    validation_peaks = [segment["validation_peak_memory_mib"] for segment in pooled
                        if segment.get("validation_peak_memory_mib") is not None]
    timed = [segment for segment in segments if "fit_seconds" in segment]  # older records' segments lack it
    fit_seconds = sum(segment["fit_seconds"] for segment in timed)
    ranks = longest.get("processes", 1)
    return {
        "steps_per_s": rate(total["steps"]),
        "samples_per_s": rate(total["samples"]),
        "tokens_per_s": rate(total["tokens"]),
        "padded_tokens_per_s": rate(total["padded_tokens"]),
        "peak_memory_mib": max(segment["peak_memory_mib"] for segment in pooled),
        "validation_peak_memory_mib": max(validation_peaks, default=None),
        "memory_kind": longest["memory_kind"],
        "measured_steps": total["steps"],
        "measured_seconds": round(total["seconds"], 3),
        "device_processes": longest["device_processes"],
        "pooled_segments": len(pooled),
        "processes": ranks,
        "peak_memory_sum_mib": max((s["peak_memory_sum_mib"] for s in pooled if "peak_memory_sum_mib" in s),
                                   default=None),
        "per_rank": _pool_ranks(pooled, ranks, rate),
        "fit_seconds": round(fit_seconds, 3) if timed else None,
        "validation_fraction": round(sum(s["validation_seconds"] for s in timed) / fit_seconds, 4)
        if fit_seconds > 0 else None,
    }


def _pool_ranks(pooled: list[dict[str, Any]], ranks: int,
                rate: Callable[[float], float | None]) -> list[dict[str, Any]] | None:
    """Each rank's rate and peak memory over the pooled segments (None for one process, or older segments)."""
    if ranks <= 1 or not all("per_rank" in segment for segment in pooled):
        return None
    return [{"samples_per_s": rate(sum(segment["per_rank"][r]["samples"] for segment in pooled)),
             "peak_memory_mib": max(segment["per_rank"][r]["peak_memory_mib"] for segment in pooled)}
            for r in range(ranks)]


def speed_options(module: LRAModule, datamodule: LRADataModule) -> dict[str, Any]:
    """The speed options in force: compilation (or why it fell back), packed layers, bucketing, trimming, and
    the attention's form where the backend has several (they differ in cost, and some in their dropout)."""
    encoder = module.model.encoder
    length = datamodule.spec.max_length + int(encoder.use_cls)
    return {**module.speed, "bucket": datamodule.bucket, "trim_train": datamodule.splits["train"].form.trim,
            "trim_eval": datamodule.trim_eval,
            "attention_form": encoder.blocks[0].attn.core.form_description(length, module.device)}
