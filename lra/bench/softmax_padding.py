"""``python -m lra.bench bench.level=softmax_padding``: softmax attention on padded batches, SDPA with a mask
against packed variable-length FlashAttention, the measurement behind ``softmax.padding`` (``VARLEN_FROM_LENGTH``).

For each length N (``bench.softmax_padding.lengths``) and head width d (``bench.head_dim``) it times forward +
backward of the attention core (``bench.batch_size``, ``bench.heads``, bf16; ``lra.bench.measure``: CUDA
events, L2 flushed, median of ``bench.timing.repeats`` after ``bench.timing.warmup``) on a batch whose real
lengths are spread uniformly over [N/4, N] (as ListOps' 500-2000 of 2000), for: ``unpadded`` (no mask,
FlashAttention: the floor), ``mask`` (SDPA with the boolean padding mask) and ``varlen`` (real tokens packed,
FlashAttention varlen; CUDA only: elsewhere its rows say why not). It reports the peak memory above the
inputs and checks that mask and varlen agree on real tokens. Writes ``<bench.out_dir>/<bench.name or
softmax_padding>.csv``; on CPU the times are wall clock and only say that the path runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

import lra.attention
from lra.bench.measure import Measurement, Settings, Workload, measure
from lra.bench.run import device_slug, resolve_device
from lra.results.environment import describe_device
from lra.results.files import write_csv

PATHS = ("unpadded", "mask", "varlen")
COLUMNS = ("device", "torch", "batch", "heads", "length", "head_dim", "path", "ms_fwd_bwd", "peak_mib",
           "real_fraction", "status", "note")


def padded_batch(batch: int, heads: int, length: int, head_dim: int,
                 device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """q, k, v in bf16 (the same for every path: one seed) and the padding mask of lengths in [N/4, N]."""
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, head_dim, device=device, dtype=torch.bfloat16,
                           generator=generator).requires_grad_() for _ in range(3))
    lengths = torch.randint(length // 4, length + 1, (batch,), device=device, generator=generator)
    mask = torch.arange(length, device=device)[None, :] >= lengths[:, None]
    return [q, k, v], mask


def _backend(path: str, heads: int, head_dim: int) -> torch.nn.Module:
    padding = "mask" if path == "unpadded" else path
    return lra.attention.create("softmax", num_heads=heads, head_dim=head_dim, padding=padding)


def workload(path: str, shape: tuple[int, int, int, int], device: torch.device) -> Workload:
    """Forward + backward of one path; ``unpadded`` runs the same batch without its mask."""
    batch, heads, length, head_dim = shape
    (q, k, v), mask = padded_batch(batch, heads, length, head_dim, device)
    backend, grad = _backend(path, heads, head_dim), torch.randn_like(q)
    key_padding_mask = None if path == "unpadded" else mask

    def step() -> None:
        q.grad = k.grad = v.grad = None
        backend(q, k, v, key_padding_mask=key_padding_mask).backward(grad)
    return Workload(step)


def agreement(shape: tuple[int, int, int, int], device: torch.device) -> str:
    """max |varlen - mask| over real tokens, or "" where varlen cannot run."""
    batch, heads, length, head_dim = shape
    (q, k, v), mask = padded_batch(batch, heads, length, head_dim, device)
    with torch.no_grad():
        try:
            varlen = _backend("varlen", heads, head_dim)(q, k, v, key_padding_mask=mask)
        except (RuntimeError, ValueError):
            return ""
        masked = _backend("mask", heads, head_dim)(q, k, v, key_padding_mask=mask)
    real = ~mask[:, None, :, None].expand_as(masked)
    return f"{(varlen - masked)[real].abs().max().item():.2e}"


def _row(device_name: str, shape: tuple[int, int, int, int], path: str, result: Measurement,
         real_fraction: float) -> dict[str, object]:
    batch, heads, length, head_dim = shape
    return {"device": device_name, "torch": torch.__version__, "batch": batch, "heads": heads, "length": length,
            "head_dim": head_dim, "path": path,
            "ms_fwd_bwd": None if result.time_ms is None else round(result.time_ms, 3),
            "peak_mib": None if result.peak_mib is None else round(result.peak_mib, 1),
            "real_fraction": round(real_fraction, 3), "status": result.status, "note": result.note}


def run(bench: Mapping, command: str) -> dict[str, Path]:
    """Measure every length x head dim x path; print the table, write the CSV; returns the path written."""
    device = resolve_device(str(bench["device"]))
    device_name = describe_device(device)
    timing = Settings(**bench.get("timing", {}))
    head_dims = bench["head_dim"] if isinstance(bench["head_dim"], list) else [bench["head_dim"]]
    print(f"{command}\n{device_name}, torch {torch.__version__}, B={bench['batch_size']}, H={bench['heads']}, bf16, "
          f"fwd+bwd, median of up to {timing.repeats}; real lengths uniform in [N/4, N]")
    print(f"{'N':>6} {'d':>4} {'path':>9} {'ms':>9} {'MiB':>9} {'max |varlen - mask|':>20}")
    rows = []
    for length in bench["softmax_padding"]["lengths"]:
        for head_dim in head_dims:
            shape = (int(bench["batch_size"]), int(bench["heads"]), int(length), int(head_dim))
            real_fraction = (~padded_batch(*shape, device)[1]).float().mean().item()
            for path in PATHS:
                result = measure(lambda p=path, s=shape: workload(p, s, device), device, timing)
                rows.append(_row(device_name, shape, path, result, real_fraction))
                shown = (f"{result.time_ms:>9.2f} {'' if result.peak_mib is None else f'{result.peak_mib:.0f}':>9}"
                         if result.status == "ok" else f" {result.status}: {result.note[:80]}")
                difference = agreement(shape, device) if path == "varlen" and result.status == "ok" else ""
                print(f"{length:>6} {head_dim:>4} {path:>9} {shown} {difference:>20}", flush=True)
    out_dir = Path(bench.get("out_dir") or f"results/bench/{device_slug(device)}")
    path = out_dir / f"{bench.get('name') or 'softmax_padding'}.csv"
    write_csv(path, COLUMNS, rows)
    return {"csv": path}

