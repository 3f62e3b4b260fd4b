"""Check and time the fused TaylorShift kernels on a CUDA GPU in one run: a benchmark level.

``python -m lra.bench bench.level=taylorshift_kernels [bench.taylorshift_kernels.sections=[check,table] ...]``
(settings: ``bench.taylorshift_kernels`` in ``conf/bench.yaml``; output folder ``bench.out_dir``)

Sections run in the order given:

* check: outputs and all input gradients against a float64 quadratic-form reference (fresh random inputs,
  padding, N not divisible by the tiles, d in {16, 32, 64}, bf16 and fp32), every config of the sweep too;
  the caching allocator is filled with NaN first so that an unwritten element shows, and each check calls
  twice (Triton's launch path, then the direct launch of the compiled kernels).
* sweep: forward+backward time and per-kernel device times (torch profiler) of several tilings per d; then
  picks, per d, the fastest summary tiling and the fastest per-row tiling among those that passed, checks
  the combination, and hands it to the table.
* overhead: host microseconds per call at a tiny size, with and without the direct launch, beside SDPA.
* table: forward+backward time (median of ``triton.testing.do_bench``) and peak memory above the inputs
  (q, k, v and the output gradient) beside PyTorch SDPA, B=32, H=4, bf16, d in {32, 64}.
* report: the compiler's registers, spills, shared memory and tensor-core instructions per kernel.
* direct: the fused direct kernel (``taylorshift_direct``, from the raw q, k, v) forward+backward with its default
  tiling and with ``atomic_query_grad``, beside SDPA, B=32, H=4, bf16, at ``direct_lengths``.

Prints a short table last; the full results go to ``<bench.out_dir>/<bench.name or taylorshift_kernels>.json``.
Needs CUDA and Triton; exits with status 1 when a check fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

from lra.attention.kernels import runtime
from lra.attention.kernels import taylorshift as ts
from lra.attention.kernels import taylorshift_direct as td
from lra.bench.run import device_slug
from lra.results.environment import environment
from lra.results.files import write_text

SECTIONS = ("check", "sweep", "overhead", "table", "report", "direct")
CUOBJDUMP = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
SDPA_MAX_LENGTH = 32768  # beyond, one SDPA step takes seconds: the quadratic trend is clear by then


def log(*parts: object) -> None:
    print(*parts, flush=True)


def reference(q, k, v, mask, a=0.5, b=1.0, c=1.0):
    """The direct quadratic form in float64."""
    s = q.double() @ k.double().transpose(-1, -2)
    w = a * s * s + b * s + c
    if mask is not None:
        w = w.masked_fill(mask[:, None, None, :], 0.0)
    return (w @ v.double()) / w.sum(-1, keepdim=True)


def inputs(batch, heads, n, d, dtype, temperature=1.5, grad=True):
    q = F.normalize(torch.randn(batch, heads, n, d, device="cuda"), dim=-1) * temperature
    k = F.normalize(torch.randn(batch, heads, n, d, device="cuda"), dim=-1)
    v = torch.randn(batch, heads, n, d, device="cuda")
    return [t.to(dtype).requires_grad_(grad) for t in (q, k, v)]


def poison_allocator() -> None:
    junk = torch.full((2**28,), float("nan"), device="cuda")
    del junk


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("nan")
    return ((x.double() - ref).norm() / ref.norm()).item()


def check_one(n, d, dtype, config=None, batch=2, heads=3, padded=True) -> dict:
    """Relative errors of outputs and gradients against the float64 reference; the worst of two calls,
    since the first launches through Triton's compile path and the second through the cached handle."""
    q, k, v = inputs(batch, heads, n, d, dtype)
    mask = None
    if padded:
        mask = torch.zeros(batch, n, dtype=torch.bool, device="cuda")
        mask[1, n - n // 3 :] = True
    dout = torch.randn(batch, heads, n, d, device="cuda").to(dtype)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = reference(*ref_inputs, mask)
    ref.backward(dout.double())
    errors: dict[str, float] = {}
    for _ in range(2):
        for t in (q, k, v):
            t.grad = None
        poison_allocator()
        out = ts.fused_taylorshift(q, k, v, mask, config=config)
        out.backward(dout)
        torch.cuda.synchronize()
        found = {"out": relative_error(out, ref)}
        for name, x, r in zip(("dq", "dk", "dv"), (q, k, v), ref_inputs, strict=True):
            found[name] = relative_error(x.grad, r.grad)
        if padded:
            padded_grads = torch.cat([k.grad[1, :, n - n // 3 :].flatten(), v.grad[1, :, n - n // 3 :].flatten()])
            found["padded_grad_max"] = padded_grads.abs().max().item()
        for key, value in found.items():
            errors[key] = value if math.isnan(value) else max(errors.get(key, 0.0), value)
    limit = 1e-4 if dtype == torch.float32 else 1e-2
    ok = all(not math.isnan(e) and e < limit for key, e in errors.items() if key != "padded_grad_max")
    ok = ok and errors.get("padded_grad_max", 0.0) == 0.0
    return {"n": n, "d": d, "dtype": str(dtype), "ok": ok, **errors}


def fwd_bwd_step(fn, q, k, v, dout) -> Callable[[], None]:
    """One forward+backward of ``fn``, the input gradients dropped first so that they are allocated anew."""

    def step() -> None:
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).backward(dout)
    return step


def time_fwd_bwd(fn, q, k, v, dout) -> tuple[float, float]:
    """(median ms, peak MiB above the inputs) of forward+backward."""
    step = fwd_bwd_step(fn, q, k, v, dout)
    step()
    torch.cuda.synchronize()
    for t in (q, k, v):
        t.grad = None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    ms = triton.testing.do_bench(step, warmup=25, rep=200, grad_to_none=[q, k, v], return_mode="median")
    return ms, peak


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def fused(config=None):
    return lambda q, k, v: ts.fused_taylorshift(q, k, v, None, config=config)


def dense_flops(n: int, d: int, bh: int) -> float:
    """Six passes of 2 N d^2 d multiply-adds over the rows, with the dense d^2 features."""
    return 12 * n * d**3 * bh


def measure_ceilings() -> dict:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = triton.testing.do_bench(lambda: a @ b, return_mode="median")
    src = torch.randn(2**28, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    return {"bf16_tflops": 2 * 8192**3 / ms / 1e9, "copy_tb_s": 2 * src.numel() * 4 / copy_ms / 1e9}


SWEEPS = {  # summary variants (summary_*) and per-row variants; the best of each kind is combined
    32: {
        "default": {},
        "sum_dense": {"summary_block_m": 4, "summary_block_n": 32, "summary_symmetric": False},
        "sum_sym16_w8": {"summary_warps": 8},
        "sum_sym8": {"summary_block_m": 8, "summary_block_n": 8},
        "sum_steps2": {"summary_steps": 2},
        "sum_rows32_steps8": {"summary_rows": 32, "summary_steps": 8},
        "rows128_w8": {"rows": 128, "warps": 8},
        "qgb2": {"query_grad_block": 2},
    },
    64: {
        "default": {},
        "sum_steps2": {"summary_steps": 2},
        "sum_sym8": {"summary_block_m": 8, "summary_block_n": 8},
        "sum_bm4": {"summary_block_m": 4, "summary_block_n": 64, "summary_symmetric": False},
        "rows64_bm2": {"rows": 64, "block_m": 2, "query_grad_block": 2, "key_grad_block": 2},
    },
}
PER_ROW_FIELDS = ("rows", "block_m", "block_n", "query_grad_block", "key_grad_block", "warps")


def sweep_configs(d: int) -> dict[str, ts.KernelConfig]:
    base = ts.default_config(d)
    return {name: dataclasses.replace(base, **changes) for name, changes in SWEEPS.get(d, {}).items()}


def kernel_times(fn, q, k, v, dout, repeats=5) -> dict[str, float]:
    """Mean device ms per call of each CUDA kernel in forward+backward, from the torch profiler."""
    step = fwd_bwd_step(fn, q, k, v, dout)
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)
        if device_us > 0:
            totals[event.key[:60]] += device_us / repeats / 1e3
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def compile_report() -> list[dict]:
    rows = []
    kernels = [ts._summary_kernel, ts._forward_kernel, ts._backward_query_kernel, ts._backward_key_kernel]
    for fn in kernels:
        for cache in fn.device_caches.values():
            for key, compiled in cache[0].items():
                sass = sass_counts(compiled.asm.get("cubin"))
                rows.append({
                    "kernel": fn.__name__,
                    "key": str(key)[:300],
                    "regs": compiled.n_regs,
                    "spills": compiled.n_spills,
                    "shared": compiled.metadata.shared,
                    "warps": compiled.metadata.num_warps,
                    "ttgir_wgmma": compiled.asm.get("ttgir", "").count("warp_group_dot"),
                    "ttgir_mma": compiled.asm.get("ttgir", "").count("tt.dot"),
                    **sass,
                })
    return rows


def sass_counts(cubin: bytes | None) -> dict:
    if not cubin:
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        try:
            sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return {}
    return {op: sass.count(op) for op in ("HGMMA", "HMMA", "LDL", "STL", "BAR.SYNC", "LDS", "STS")}


def run_checks(sweep_ds) -> list[dict]:
    results = []
    for d in (16, 32, 64):
        for dtype in (torch.bfloat16, torch.float32):
            for n in (1000, 4133):
                results.append(check_one(n, d, dtype))
                log("check", results[-1])
    results.append(check_one(777, 32, torch.bfloat16, padded=False))
    log("check", results[-1])
    for d in sweep_ds:
        for name, config in sweep_configs(d).items():
            r = check_one(1500, d, torch.bfloat16, config=config)
            results.append({"config": name, **r})
            log("check", results[-1])
    return results


def run_table(ds, lengths, deadline, picks) -> list[dict]:
    rows = []
    for d in ds:
        for n in lengths:
            if time.time() > deadline:
                log("table: out of time before", d, n)
                return rows
            for name, fn in (("fused", fused(picks.get(d))), ("sdpa", sdpa)):
                if name == "sdpa" and n > SDPA_MAX_LENGTH:
                    continue
                q, k, v = inputs(32, 4, n, d, torch.bfloat16)
                dout = torch.randn_like(v)
                try:
                    ms, mib = time_fwd_bwd(fn, q, k, v, dout)
                except torch.OutOfMemoryError:
                    ms, mib = float("nan"), float("nan")
                rows.append({"d": d, "n": n, "impl": name, "ms": ms, "peak_mib": mib})
                log("table", rows[-1])
                del q, k, v, dout
                torch.cuda.empty_cache()
    return rows


def run_direct(ds, lengths, deadline) -> list[dict]:
    """The fused direct kernel's two backward passes against its atomic dq, and SDPA, forward+backward."""
    rows = []
    for d in ds:
        default = td.direct_config(d)
        forms = {"direct": default, "direct-atomic-dq": dataclasses.replace(default, atomic_query_grad=True)}
        for n in lengths:
            if time.time() > deadline:
                log("direct: out of time before", d, n)
                return rows
            q, k, v = (torch.randn(32, 4, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            tau = torch.ones(4, device="cuda")
            dout = torch.randn_like(v)
            fns = {name: (lambda q, k, v, c=config, t=tau: td.fused_direct_taylorshift(q, k, v, t, config=c))
                   for name, config in forms.items()}
            for name, fn in (*fns.items(), ("sdpa", sdpa)):
                ms, mib = time_fwd_bwd(fn, q, k, v, dout)
                rows.append({"d": d, "n": n, "impl": name, "ms": ms, "peak_mib": mib})
                log("direct", rows[-1])
            del q, k, v, dout
            torch.cuda.empty_cache()
    return rows


def pick_configs(sweep: list[dict], checks: list[dict]) -> dict[int, ts.KernelConfig]:
    """Per d, the fastest summary tiling and the fastest per-row tiling among configs that passed their check,
    measured at the largest swept N."""
    failed = {(r["d"], r["config"]) for r in checks if "config" in r and not r["ok"]}
    picks = {}
    for d in sorted({r["d"] for r in sweep}):
        n = max(r["n"] for r in sweep if r["d"] == d)
        rows = [r for r in sweep if r["d"] == d and r["n"] == n and (d, r["config"]) not in failed]
        if not rows:
            continue
        summary = min(rows, key=lambda r: r["kernels"].get("_summary_kernel", math.inf))
        per_row = min(rows, key=lambda r: sum(v for k, v in r["kernels"].items() if k != "_summary_kernel"))
        best_summary, best_rows = sweep_configs(d)[summary["config"]], sweep_configs(d)[per_row["config"]]
        picks[d] = dataclasses.replace(best_summary, **{f: getattr(best_rows, f) for f in PER_ROW_FIELDS})
        log("pick", d, "summary from", summary["config"], "per-row from", per_row["config"], picks[d])
    return picks


def pick_and_check(result: dict) -> dict[int, ts.KernelConfig]:
    """The picked tilings that pass their own checks (recorded in ``result``)."""
    picks = pick_configs(result["sweep"], result.get("check", []))
    result["picks"] = {d: dataclasses.asdict(c) for d, c in picks.items()}
    checks = [
        {"config": "picked", **check_one(n, d, dtype, config=config)}
        for d, config in picks.items()
        for dtype in (torch.bfloat16, torch.float32)
        for n in (1000, 4133)
    ]
    for r in checks:
        log("check", r)
    result.setdefault("check", []).extend(checks)
    return {d: c for d, c in picks.items() if all(r["ok"] for r in checks if r["d"] == d)}


def run_sweep(sizes, deadline) -> list[dict]:
    rows = []
    for d, n in sizes:
        q, k, v = inputs(32, 4, n, d, torch.bfloat16)
        dout = torch.randn_like(v)
        for name, config in sweep_configs(d).items():
            if time.time() > deadline:
                log("sweep: out of time before", d, n, name)
                return rows
            fn = fused(config)
            ms, mib = time_fwd_bwd(fn, q, k, v, dout)
            per_kernel = kernel_times(fn, q, k, v, dout)
            rows.append({"d": d, "n": n, "config": name, "ms": ms, "peak_mib": mib, "kernels": per_kernel})
            log("sweep", json.dumps(rows[-1]))
    return rows


def run_overhead() -> dict:
    """Wall-clock microseconds per call at a tiny size, where the host, not the GPU, sets the pace."""
    result = {}
    q, k, v = inputs(1, 1, 64, 32, torch.bfloat16)
    dout = torch.randn_like(v)
    for name, fn, fast in (("fused", fused(), True), ("fused_slow_launch", fused(), False), ("sdpa", sdpa, True)):
        runtime.FAST_LAUNCH = fast
        for mode in ("fwd", "fwd_bwd"):
            def forward(fn=fn) -> None:
                with torch.no_grad():
                    fn(q, k, v)
            step = forward if mode == "fwd" else fwd_bwd_step(fn, q, k, v, dout)
            for _ in range(20):
                step()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(200):
                step()
            torch.cuda.synchronize()
            result[f"{name}_{mode}_us"] = (time.perf_counter() - start) / 200 * 1e6
    runtime.FAST_LAUNCH = True
    log("overhead", result)
    return result


def run(bench: Mapping, command: str) -> dict[str, Path]:
    """The sections of ``bench.taylorshift_kernels``; writes the JSON, prints the summary; exits 1 on a failed check."""
    if not torch.cuda.is_available():
        raise RuntimeError("bench.level=taylorshift_kernels needs a CUDA GPU (the fused kernels are Triton on CUDA)")
    settings = bench["taylorshift_kernels"]
    unknown = [section for section in settings["sections"] if section not in SECTIONS]
    if unknown:
        raise ValueError(f"bench.taylorshift_kernels.sections: {', '.join(map(str, unknown))}; valid: "
                         f"{', '.join(SECTIONS)}")
    start = time.time()
    deadline = start + float(settings["budget_s"])
    sections = list(settings["sections"])
    sweep_sizes = [tuple(int(part) for part in str(size).split(":")) for size in settings["sweep_sizes"]]
    env = {**environment(), "triton": triton.__version__, "command": command,
           "sms": torch.cuda.get_device_properties(0).multi_processor_count, "date": time.strftime("%Y-%m-%d %H:%M")}
    log("env", env)
    if "table" in sections and "sweep" not in sections:
        log("table uses the default configs")
    result: dict = {"env": env, "ceilings": measure_ceilings()}
    log("ceilings", result["ceilings"])
    picks: dict[int, ts.KernelConfig] = {}
    for section in sections:
        if section == "check":
            result["check"] = run_checks(sorted({d for d, _ in sweep_sizes}) if "sweep" in sections else [])
        elif section == "sweep":
            result["sweep"] = run_sweep(sweep_sizes, deadline)
            picks = pick_and_check(result)
        elif section == "table":
            result["table"] = run_table(list(settings["dims"]), list(settings["lengths"]), deadline, picks)
        elif section == "overhead":
            result["overhead"] = run_overhead()
        elif section == "report":
            result["report"] = compile_report()
        elif section == "direct":
            result["direct"] = run_direct(list(settings["dims"]), list(settings["direct_lengths"]), deadline)
    out_dir = Path(bench.get("out_dir") or f"results/bench/{device_slug(torch.device('cuda'))}")
    path = out_dir / f"{bench.get('name') or 'taylorshift_kernels'}.json"
    write_text(path, json.dumps(result, indent=1, default=str))
    summarize(result)
    log(f"elapsed {time.time() - start:.0f} s")
    if "check" in result and not all(r["ok"] for r in result["check"]):
        log(f"wrote {path}")
        sys.exit(1)
    return {"json": path}


def summarize(result: dict) -> None:
    checks = result.get("check", [])
    if checks:
        failed = [r for r in checks if not r["ok"]]
        worst = {}
        for r in checks:
            key = r["dtype"]
            worst[key] = max(worst.get(key, 0.0), *(r[x] for x in ("out", "dq", "dk", "dv")))
        log(f"CHECK {len(checks) - len(failed)}/{len(checks)} passed; worst relative error {worst}")
        for r in failed:
            log("FAILED", r)
    table = result.get("table", [])
    by_key = {(r["d"], r["n"], r["impl"]): r for r in table}
    if table:
        log(f"{'d':>3} {'N':>6} {'fused ms':>9} {'MiB':>7} {'sdpa ms':>9} {'MiB':>7} {'speedup':>8} {'TFLOP/s':>8}")
    for (d, n, impl), r in by_key.items():
        if impl != "fused":
            continue
        s = by_key.get((d, n, "sdpa"), {"ms": float("nan"), "peak_mib": float("nan")})
        log(f"{d:>3} {n:>6} {r['ms']:>9.3f} {r['peak_mib']:>7.0f} {s['ms']:>9.3f} {s['peak_mib']:>7.0f} "
            f"{s['ms'] / r['ms']:>8.2f} {dense_flops(n, d, 128) / r['ms'] / 1e9:>8.1f}")
    for r in result.get("sweep", []):
        names = {"_summary_kernel": "sum", "_forward_kernel": "fwd", "_backward_query_kernel": "bq",
                 "_backward_key_kernel": "bk"}
        top = " ".join(f"{names.get(k, k[:12])}={v:.3f}" for k, v in r["kernels"].items() if v > 0.01)
        log(f"SWEEP d={r['d']} N={r['n']:>5} {r['config']:<16} {r['ms']:7.3f} ms {r['peak_mib']:5.0f} MiB "
            f"kernels={sum(r['kernels'].values()):.3f} | {top}")
    if "overhead" in result:
        log("OVERHEAD", {k: round(v) for k, v in result["overhead"].items()})
    direct = {(r["d"], r["n"], r["impl"]): r["ms"] for r in result.get("direct", [])}
    for (d, n, impl), ms in direct.items():
        if impl != "sdpa":
            log(f"DIRECT d={d} N={n:>5} {impl:<17} {ms:8.3f} ms, {ms / direct.get((d, n, 'sdpa'), math.nan):.2f}x SDPA")
    spilling = [r for r in result.get("report", []) if r["spills"] or r.get("LDL")]
    log(f"REPORT {len(result.get('report', []))} compiled kernels, {len(spilling)} with spills")

