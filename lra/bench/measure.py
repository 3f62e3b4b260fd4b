"""Timing and peak memory of one workload, with out-of-memory and other failures recorded, not raised.

On CUDA: a step is timed between CUDA events, each repeat after the L2 cache is flushed (as
``triton.testing.do_bench`` does), and the median is reported; peak memory is
``torch.cuda.max_memory_allocated`` during one step after warm-up, minus what was allocated before the
step (the inputs, and the parameters for layers; for whole-model steps the baseline is taken before the
model is built, so parameters, gradients and optimizer state count). On CPU: wall clock around each
step; no peak memory (torch keeps no allocator statistics there).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

MIB = 2.0**20
L2_FLUSH_BYTES = 256 * 2**20  # larger than any GPU's L2 (H100: 50 MiB), as triton.testing.do_bench
_FLUSH_BUFFERS: dict[torch.device, torch.Tensor] = {}


@dataclass
class Workload:
    """``step`` runs one measured unit (forward, forward+backward, or a training step).

    ``counts_setup``: whether memory allocated by the builder (model, optimizer) counts toward the peak.
    """

    step: Callable[[], None]
    counts_setup: bool = False


@dataclass(frozen=True)
class Settings:
    warmup: int = 3
    repeats: int = 10
    max_point_s: float = 2.0  # repeats are cut so the timed loop of one point stays under this


@dataclass
class Measurement:
    status: str  # ok | oom | error
    time_ms: float | None = None
    peak_mib: float | None = None
    repeats: int = 0
    note: str = ""


def timer_name(device: torch.device) -> str:
    return "cuda_events" if device.type == "cuda" else "wall_clock"


def measure(build: Callable[[], Workload], device: torch.device, settings: Settings) -> Measurement:
    """Build the workload and measure it; out of memory -> ``oom``, any other failure -> ``error``."""
    try:
        return _measure(build, device, settings)
    except Exception as failure:  # noqa: BLE001 -- a backend failing at one size must not end the sweep
        if _is_out_of_memory(failure):
            result = Measurement("oom", note=_first_line(failure))
        else:
            result = Measurement("error", note=f"{type(failure).__name__}: {_first_line(failure)}")
    # a failure may leave tensors in reference cycles (frames of the traceback): collect them now
    gc.collect()
    try:
        release(device)
    except Exception as failure:  # noqa: BLE001 -- e.g. an illegal memory access poisons the CUDA context
        result.note += f" (then the device failed: {_first_line(failure)})"
    return result


def release(device: torch.device) -> None:
    """Return cached blocks to the device, so the next point starts from a clean allocator."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _flush_buffer(device: torch.device) -> torch.Tensor:
    """One buffer per device, kept: made inside a point it could push a point that fits out of memory."""
    if device not in _FLUSH_BUFFERS:
        _FLUSH_BUFFERS[device] = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
    return _FLUSH_BUFFERS[device]


def _measure(build: Callable[[], Workload], device: torch.device, settings: Settings) -> Measurement:
    cuda = device.type == "cuda"
    flush = _flush_buffer(device) if cuda else None
    before_build = torch.cuda.memory_allocated(device) if cuda else 0
    workload = build()
    estimate_s = 0.0
    for _ in range(max(1, settings.warmup)):
        estimate_s = _wall_time(workload.step, device)
    repeats = int(min(settings.repeats, max(1, settings.max_point_s // max(estimate_s, 1e-9))))
    peak = _peak_mib(workload, device, before_build) if cuda else None
    times = _cuda_times(workload.step, flush, repeats) if cuda else [
        1000 * _wall_time(workload.step, device) for _ in range(repeats)]
    del workload
    release(device)
    return Measurement("ok", time_ms=statistics.median(times), peak_mib=peak, repeats=repeats)


def _wall_time(step: Callable[[], None], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    step()
    _synchronize(device)
    return time.perf_counter() - start


def _peak_mib(workload: Workload, device: torch.device, before_build: int) -> float:
    torch.cuda.synchronize(device)
    baseline = before_build if workload.counts_setup else torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    workload.step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - baseline) / MIB


def _cuda_times(step: Callable[[], None], flush: torch.Tensor, repeats: int) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends, strict=True):
        flush.zero_()
        start.record()
        step()
        end.record()
    torch.cuda.synchronize(flush.device)
    return [start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_out_of_memory(error: BaseException) -> bool:
    """CUDA's allocator raises ``OutOfMemoryError``; the CPU allocator a ``RuntimeError`` saying so."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
