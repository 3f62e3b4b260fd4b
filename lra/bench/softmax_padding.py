"""Time softmax attention on padded batches: SDPA with a mask vs packed variable-length FlashAttention.

A GPU timing for the choice of ``softmax.padding``; run from the repository root on a CUDA machine:

    python -m lra.bench.softmax_padding [--csv results/bench/<device>/softmax_padding/softmax_padding.csv]

For each length N and head width d it times forward + backward of the attention core (B=32, H=4, bf16,
CUDA events, median of --repeats after --warmup) on a batch whose real lengths are spread uniformly over
[N/4, N] (as ListOps' 500-2000 of 2000), for: ``unpadded`` (no mask, FlashAttention: the floor),
``mask`` (SDPA with the boolean padding mask) and ``varlen`` (real tokens packed, FlashAttention varlen).
It also reports the peak memory above the inputs and checks that mask and varlen agree on real tokens.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

import lra.attention


def padded_batch(batch: int, heads: int, length: int, head_dim: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, head_dim, device="cuda", dtype=torch.bfloat16,
                           generator=generator).requires_grad_() for _ in range(3))
    lengths = torch.randint(length // 4, length + 1, (batch,), device="cuda", generator=generator)
    mask = torch.arange(length, device="cuda")[None, :] >= lengths[:, None]
    return [q, k, v], mask


def time_path(backend, tensors, mask, warmup: int, repeats: int) -> tuple[float, float, torch.Tensor]:
    """(median ms of forward + backward, peak MiB above the inputs, output)."""
    q, k, v = tensors
    grad = torch.randn_like(q)

    def step() -> torch.Tensor:
        for t in tensors:
            t.grad = None
        out = backend(q, k, v, key_padding_mask=mask)
        out.backward(grad)
        return out

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), peak, out.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    device = torch.cuda.get_device_name()
    print(f"{device}, torch {torch.__version__}, B={args.batch}, H={args.heads}, bf16, fwd+bwd, "
          f"median of {args.repeats}; real lengths uniform in [N/4, N]")
    print(f"{'N':>6} {'d':>4} {'path':>9} {'ms':>9} {'MiB':>9} {'max |varlen - mask|':>20}")
    rows = []
    for length in args.lengths:
        for head_dim in args.head_dims:
            tensors, mask = padded_batch(args.batch, args.heads, length, head_dim)
            outputs = {}
            for path in ("unpadded", "mask", "varlen"):
                padding = "mask" if path == "unpadded" else path
                backend = lra.attention.create("softmax", num_heads=args.heads, head_dim=head_dim, padding=padding)
                try:
                    ms, mib, outputs[path] = time_path(backend, tensors, None if path == "unpadded" else mask,
                                                       args.warmup, args.repeats)
                except RuntimeError as error:  # e.g. no varlen kernel in this torch
                    print(f"{length:>6} {head_dim:>4} {path:>9}  unavailable: {error}", flush=True)
                    continue
                difference = ""
                if path == "varlen":
                    real = ~mask[:, None, :, None].expand_as(outputs["mask"])
                    difference = f"{(outputs['varlen'] - outputs['mask'])[real].abs().max().item():.2e}"
                print(f"{length:>6} {head_dim:>4} {path:>9} {ms:>9.2f} {mib:>9.0f} {difference:>20}", flush=True)
                rows.append({"device": device, "torch": torch.__version__, "batch": args.batch,
                             "heads": args.heads, "length": length, "head_dim": head_dim, "path": path,
                             "ms_fwd_bwd": round(ms, 3), "peak_mib": round(mib, 1),
                             "real_fraction": round((~mask).float().mean().item(), 3)})
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.csv.with_suffix(".tmp")
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        temporary.replace(args.csv)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
