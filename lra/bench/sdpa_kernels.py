"""``python -m lra.bench bench.level=sdpa_kernels``: PyTorch's fused softmax-attention kernels at each LRA preset's
attention shape, called as the softmax backend calls them: which kernel its training and evaluation should run.

For each preset (``bench.sdpa_kernels.presets``, each ``"NAME key=value ..."``) the shape is the preset's own: its
batch (twice that for Retrieval's two documents), heads, head dim and full length (CLS included), bf16, without
padding, as Image and Pathfinder always run. The softmax backend held to each kernel of ``bench.sdpa_kernels.kernels``
(its ``sdpa`` option: ``flash``, ``cudnn``, ``efficient``, ``math``; ``attention.sdpa=NAME`` in a run) is timed
by ``lra.bench.measure`` (CUDA events, L2 flushed, median) in three passes:

* ``train``: forward + backward with the preset's attention dropout, what a training step pays;
* ``train_p0``: the same without dropout (how much of it dropout costs);
* ``eval``: forward alone without dropout, under ``torch.no_grad``, what a validation pays.

Heads narrower than 8 go through the backend's zero padding of the head dim (Pathfinder's 4). A kernel that cannot
take a shape is a row with its status and reason. Prints each time over flash's in the same pass and writes
``<out_dir>/<name or sdpa_kernels>.csv``; on CPU the times are wall clock and only say that the paths run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

import lra.attention
import lra.data
from lra.attention.softmax import SDPA_KERNELS
from lra.bench.loop import parse_entry, train_config
from lra.bench.measure import Measurement, Settings, Workload, measure
from lra.bench.run import device_slug, resolve_device
from lra.model.config import ModelConfig
from lra.results.environment import describe_device
from lra.results.files import write_csv

PASSES = ("train", "train_p0", "eval")
COLUMNS = ("device", "torch", "preset", "batch", "heads", "length", "head_dim", "dropout", "pass", "kernel",
           "ms", "vs_flash", "peak_mib", "status", "note")


@dataclass(frozen=True)
class AttentionShape:
    """The attention core's inputs in one of a preset's training steps."""

    preset: str
    batch: int
    heads: int
    length: int
    head_dim: int
    dropout: float


def preset_shape(entry: str) -> AttentionShape:
    """The attention shape of ``"NAME key=value ..."`` (``experiment=NAME``), read from its composed config and its
    task's spec (no data is read)."""
    name, overrides = parse_entry(entry)
    cfg = train_config([f"experiment={name}", *overrides])
    spec = lra.data.create(OmegaConf.to_container(cfg.task, resolve=True), data_dir=cfg.paths.data_dir,
                           seed=cfg.seed).spec
    model = ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
    return AttentionShape(entry, int(cfg.task.batch_size) * (2 if spec.dual else 1), model.num_heads,
                          spec.max_length + int(model.pooling == "cls"), model.head_dim, model.attention_dropout)


def workload(shape: AttentionShape, kernel: str, phase: str, device: torch.device) -> Workload:
    """One pass of the softmax backend held to ``kernel``."""
    dropout = shape.dropout if phase == "train" else 0.0
    backend = lra.attention.create("softmax", num_heads=shape.heads, head_dim=shape.head_dim, dropout=dropout,
                                   sdpa=kernel)
    backend.train(phase != "eval")
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(shape.batch, shape.heads, shape.length, shape.head_dim, device=device,
                           dtype=torch.bfloat16, generator=generator).requires_grad_(phase != "eval")
               for _ in range(3))
    grad = torch.randn_like(q)

    def step() -> None:
        if phase == "eval":
            with torch.no_grad():
                backend(q, k, v)
            return
        q.grad = k.grad = v.grad = None
        backend(q, k, v).backward(grad)
    return Workload(step)


def _row(device_name: str, shape: AttentionShape, phase: str, kernel: str, result: Measurement,
         flash_ms: float | None) -> dict[str, object]:
    ratio = result.time_ms / flash_ms if result.time_ms is not None and flash_ms else None
    return {"device": device_name, "torch": torch.__version__, "preset": shape.preset, "batch": shape.batch,
            "heads": shape.heads, "length": shape.length, "head_dim": shape.head_dim,
            "dropout": shape.dropout if phase == "train" else 0.0, "pass": phase, "kernel": kernel,
            "ms": None if result.time_ms is None else round(result.time_ms, 3),
            "vs_flash": None if ratio is None else round(ratio, 3),
            "peak_mib": None if result.peak_mib is None else round(result.peak_mib, 1),
            "status": result.status, "note": result.note}


def run(bench: Mapping, command: str) -> dict[str, Path]:
    """Measure every preset x pass x kernel; print the table, write the CSV; returns the path written."""
    device = resolve_device(str(bench["device"]))
    device_name = describe_device(device)
    timing = Settings(**bench.get("timing", {}))
    settings = bench["sdpa_kernels"]
    unknown = [kernel for kernel in settings["kernels"] if kernel not in SDPA_KERNELS]
    if unknown:
        raise ValueError(f"bench.sdpa_kernels.kernels: unknown {', '.join(unknown)}; valid: {', '.join(SDPA_KERNELS)}")
    kernels = ["flash", *(kernel for kernel in settings["kernels"] if kernel != "flash")]  # flash: the reference
    print(f"{command}\n{device_name}, torch {torch.__version__}, bf16, no padding, median of up to {timing.repeats}")
    rows = []
    for entry in settings["presets"]:
        shape = preset_shape(entry)
        print(f"\n{entry}: B={shape.batch} H={shape.heads} N={shape.length} d={shape.head_dim} "
              f"attention dropout {shape.dropout}\n{'pass':>8} {'kernel':>9} {'ms':>9} {'x flash':>8}")
        for phase in PASSES:
            flash_ms = None
            for kernel in kernels:
                result = measure(lambda s=shape, k=kernel, p=phase: workload(s, k, p, device), device, timing)
                flash_ms = result.time_ms if kernel == "flash" else flash_ms
                row = _row(device_name, shape, phase, kernel, result, flash_ms)
                rows.append(row)
                shown = (f"{result.time_ms:>9.3f} {'' if row['vs_flash'] is None else row['vs_flash']:>8}"
                         if result.status == "ok" else f" {result.status}: {result.note[:60]}")
                print(f"{phase:>8} {kernel:>9} {shown}", flush=True)
    out_dir = Path(bench.get("out_dir") or f"results/bench/{device_slug(device)}")
    path = out_dir / f"{bench.get('name') or 'sdpa_kernels'}.csv"
    write_csv(path, COLUMNS, rows)
    return {"csv": path}
