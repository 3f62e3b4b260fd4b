"""The benchmark run: settings from ``bench.*``, the sweep, and the files under ``results/bench/<device>/``.

Order: dtype, then head dim, then series, then lengths from short to long. A series stops growing N for
the current (d, dtype) after it runs out of memory or after a step slower than ``bench.stop_above_ms``;
the longer lengths are recorded as ``skipped`` with the reason. Past ``bench.time_budget_s`` every
remaining point is skipped, so a run under a wall-clock limit still writes its files. The CSV is
rewritten after each (d, dtype) group, so an interrupted run leaves the points it finished.
"""

from __future__ import annotations

import hashlib
import logging
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lra.bench import loop, plots, report, tracking
from lra.bench.measure import Measurement, Settings, measure, release, timer_name
from lra.bench.series import Series, parse_series
from lra.bench.workloads import DTYPES, LEVELS, MODES, ModelShape, build
from lra.results.bench import COLUMNS, Point, Row
from lra.results.environment import describe_device, git_commit
from lra.results.files import write_csv, write_text
from lra.results.records import now
from lra.results.table import Table

log = logging.getLogger("lra.bench")


@dataclass
class WandbSettings:
    enabled: bool = True
    mode: str = "offline"
    project: str = "lra-bench"
    dir: str | None = None


@dataclass
class BenchConfig:
    level: str
    mode: str
    series: list[Series]
    lengths: list[int]
    batch_size: int
    heads: int
    head_dims: list[int]
    dtypes: list[str]
    device: torch.device
    timing: Settings
    stop_above_ms: float | None
    time_budget_s: float | None
    shape: ModelShape
    loop: loop.LoopSettings
    out_dir: Path
    name: str
    commit: str | None = None
    wandb: WandbSettings = field(default_factory=WandbSettings)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _choice(key: str, value: object, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"bench.{key}={value!r}; valid: {', '.join(valid)}")
    return str(value)


def _positive_ints(key: str, values: object) -> list[int]:
    numbers = _as_list(values)
    if not numbers or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in numbers):
        raise ValueError(f"bench.{key} must be a positive integer or a list of them, got {values!r}")
    return numbers


def _commit(value: object) -> str | None:
    # Hydra reads an unquoted hash as a number: 48e3180 becomes inf, 1234567 an int; the hash is then lost.
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"bench.commit={value!r} was read as a number; quote the hash: bench.commit=\"'48e3180'\", "
                     "or set LRA_COMMIT=48e3180 in the environment")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("bench.device=cuda but torch sees no CUDA device; use bench.device=cpu or auto")
    return torch.device(_choice("device", name, ("auto", "cuda", "cpu")))


def device_slug(device: torch.device) -> str:
    """``results/bench/<slug>``: the GPU's name in lower case with dashes (e.g. nvidia-h100-80gb-hbm3)."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def config_from(bench: Mapping) -> BenchConfig:
    """``bench.*`` (a plain dict) -> checked settings; a bad value fails with the valid ones."""
    level = _choice("level", bench["level"], (*LEVELS, "loop"))
    mode = _choice("mode", bench["mode"], MODES)
    dtypes = [_choice("dtype", d, tuple(DTYPES)) for d in _as_list(bench["dtype"])]
    device = resolve_device(str(bench["device"]))
    name = bench.get("name") or (level if level == "loop" else f"{level}_{mode}")
    shape = ModelShape(**bench.get("model", {}))
    return BenchConfig(
        level=level, mode=mode,
        series=_labelled(parse_series(bench["attention"]), shape.compile if level == "model" else False)
        if level != "loop" else [],
        lengths=sorted(set(_positive_ints("lengths", bench["lengths"]))),
        batch_size=_positive_ints("batch_size", bench["batch_size"])[0],
        heads=_positive_ints("heads", bench["heads"])[0],
        head_dims=_positive_ints("head_dim", bench["head_dim"]),
        dtypes=dtypes, device=device,
        timing=Settings(**bench.get("timing", {})),
        stop_above_ms=bench.get("stop_above_ms"), time_budget_s=bench.get("time_budget_s"),
        shape=shape,
        loop=_loop_settings(bench.get("loop", {})),
        out_dir=Path(bench.get("out_dir") or f"results/bench/{device_slug(device)}"),
        name=str(name),
        commit=_commit(bench.get("commit")),
        wandb=WandbSettings(**bench.get("wandb", {})),
    )


def _labelled(series: list[Series], compile_mode: bool | str) -> list[Series]:
    """A compiled model's series are labelled so (``+compile``): their rows must not pass for the eager ones."""
    if compile_mode is False:
        return series
    return [replace(s, label=f"{s.label}+compile") for s in series]


def _loop_settings(values: Mapping) -> loop.LoopSettings:
    values = dict(values)
    for key in ("presets", "overrides", "runners"):
        if key in values:
            values[key] = tuple(str(v) for v in _as_list(values[key]))
    return loop.LoopSettings(**values)


def row_environment(device: torch.device, commit: str | None = None) -> dict[str, object]:
    """The columns of a benchmark row that say where, with what and when: device ("cpu" for any CPU), torch,
    date, commit, timer."""
    return {"device": describe_device(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "date": now(), "commit": commit or git_commit() or "", "timer": timer_name(device)}


def _row(point: Point, series: Series, result: Measurement, info: dict, command: str) -> Row:
    ok = result.status == "ok"
    return {
        "backend": series.backend, "series": series.label, "options": series.describe_options(),
        "level": point.level, "mode": point.mode, "dtype": point.dtype, "batch": point.batch,
        "heads": point.heads, "head_dim": point.head_dim, "length": point.length,
        "time_ms": result.time_ms, "peak_mib": result.peak_mib,
        "tokens_per_s": point.tokens / (result.time_ms / 1000) if ok and result.time_ms else None,
        "status": result.status, "note": result.note, "repeats": result.repeats, **info, "command": command,
    }


def sweep(config: BenchConfig, command: str, csv_path: Path | None = None) -> list[Row]:
    """Measure every series x head_dim x dtype x length; see the module docstring for the order."""
    info = row_environment(config.device, config.commit)
    deadline = time.monotonic() + config.time_budget_s if config.time_budget_s else None
    rows: list[Row] = []
    for dtype in config.dtypes:
        for head_dim in config.head_dims:
            for series in config.series:
                stopped = ""
                for length in [n for n in config.lengths if series.up_to is None or n <= series.up_to]:
                    point = Point(config.level, config.mode, dtype, config.batch_size, config.heads, head_dim,
                                  length)
                    if deadline is not None and time.monotonic() > deadline:
                        result = Measurement("skipped", note="bench.time_budget_s spent")
                    elif stopped:
                        result = Measurement("skipped", note=stopped)
                    else:
                        result = measure(lambda p=point, s=series: build(p, s, config.device, config.shape),
                                         config.device, config.timing)
                        stopped = _stop_reason(result, length, config.stop_above_ms)
                    rows.append(_row(point, series, result, info, command))
                    log.info("%s %s %s d=%d %s N=%d: %s", config.level, config.mode, dtype, head_dim,
                             series.label, length, _describe(result))
            if csv_path is not None:
                write_csv(csv_path, COLUMNS, rows)
    return rows


def _stop_reason(result: Measurement, length: int, stop_above_ms: float | None) -> str:
    if result.status == "oom":
        return f"out of memory at N={length}"
    if result.status == "ok" and stop_above_ms is not None and result.time_ms > stop_above_ms:
        return f"N={length} took {result.time_ms:.0f} ms > bench.stop_above_ms={stop_above_ms}"
    return ""


def _describe(result: Measurement) -> str:
    if result.status != "ok":
        return f"{result.status} {result.note}"
    memory = "" if result.peak_mib is None else f", {result.peak_mib:.0f} MiB"
    return f"{result.time_ms:.3f} ms{memory} (median of {result.repeats})"


def loop_rows(config: BenchConfig, command: str) -> list[Row]:
    info = row_environment(config.device, config.commit)
    rows = []
    for result in loop.run_loops(config.loop, config.device, log.info):
        point = Point("loop", "fwd_bwd", result.dtype, result.batch, result.heads, result.head_dim, result.length)
        measured = Measurement("ok", time_ms=1000 * result.seconds_per_step, peak_mib=result.peak_mib,
                               repeats=config.loop.steps,
                               note="; ".join(filter(None, [f"round {result.round}", f"params {result.params}",
                                                            result.note])))
        series = Series(label=result.runner, backend=result.attention)
        if result.profile:
            _write_profile(config, result)
        row = _row(point, series, measured, info, command)
        rows.append({**row, "options": f"preset={result.preset}", "timer": "wall_clock"})
    return rows


def _write_profile(config: BenchConfig, result: loop.LoopResult) -> None:
    """``<out_dir>/<name>_profile/<experiment>-<preset digest>__<runner>.txt``: the profiler's table, headed by the
    whole preset and runner (a preset's overrides would make too long a file name)."""
    digest = hashlib.sha1(result.preset.encode()).hexdigest()[:6]
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", f"{result.preset.split()[0]}-{digest}__{result.runner}")
    path = config.out_dir / f"{config.name}_profile" / f"{stem}.txt"
    write_text(path, f"preset: {result.preset}\nrunner: {result.runner}\n{result.profile}\n")
    log.info("wrote profile: %s", path)


def loop_medians(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Median ms/step over rounds, by preset (the ``options`` column) and runner."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        grouped.setdefault(str(row["options"]), {}).setdefault(str(row["series"]), []).append(float(row["time_ms"]))
    return {preset: {runner: statistics.median(times) for runner, times in runners.items()}
            for preset, runners in grouped.items()}


def loop_table(rows: list[Row]) -> Table:
    """Per preset and runner: median steps/s over rounds, against the bare loop and the lean ceiling."""
    medians = loop_medians(rows)
    body = []
    for preset, runners in medians.items():
        bare, lean = runners.get("bare"), runners.get("lean")
        for runner, ms in runners.items():
            group = [r for r in rows if r["options"] == preset and r["series"] == runner]
            peaks = [r["peak_mib"] for r in group if r["peak_mib"] is not None]
            note = str(group[0]["note"]).split("; ", 1)
            body.append([preset.removeprefix("preset="), runner, f"{1000 / ms:.2f}", f"{ms:.1f}",
                         f"{group[0]['batch'] * 1000 / ms:.0f}", f"{max(peaks):.0f}" if peaks else "",
                         f"{ms / bare:.3f}" if bare else "", f"{lean / ms:.2f}" if lean else "", len(group),
                         note[1] if len(note) > 1 else ""])
    caption = ("Median over rounds (wall clock, steady state, data loading included). time vs bare: the runner's "
               "ms/step over the bare loop's (target for the harness: at most 1.03). speed vs lean: steps/s over "
               "the lean loop's (full-length random tokens, no mask, no dropout; targets for the harness: at least "
               "0.9 on fixed-length presets, 1.0 on ListOps and Text). Peak: all allocated memory. Note: parameter "
               "count, and the speed options the harness ran with.")
    return Table("Training loops", ["preset", "runner", "steps/s", "ms/step", "samples/s", "peak MiB",
                                    "time vs bare", "speed vs lean", "rounds", "note"], body, caption=caption)


def summary_header(config: BenchConfig, rows: list[Row], command: str) -> list[str]:
    first = rows[0] if rows else row_environment(config.device, config.commit)
    timer = ("CUDA events around each step, L2 flushed between steps; median of up to "
             f"{config.timing.repeats} after {config.timing.warmup} warm-up steps"
             if config.device.type == "cuda" else "wall clock (CPU run): not comparable with GPU timings")
    memory = {"core": "peak allocated during one step minus what was allocated before it (q, k, v, the "
                      "output gradient, the backend's parameters)",
              "layer": "peak allocated during one step minus the inputs and the layer's parameters",
              "model": "peak allocated during one step, everything included (weights, gradients, optimizer)",
              "loop": "peak allocated during the run, everything included"}[config.level]
    loop_ = config.loop
    setup = (f"Level: loop; presets {', '.join(loop_.presets)} (each preset's own model, batch and precision)"
             f"{'; overrides ' + ' '.join(loop_.overrides) if loop_.overrides else ''}; {loop_.warmup_steps} "
             f"warm-up + {loop_.steps} timed steps per runner, {loop_.rounds} round(s)"
             if config.level == "loop" else
             f"Level: {config.level}, mode: {config.mode}; batch {config.batch_size}, heads {config.heads}")
    lines = [f"Device: {first['device']}; torch {first['torch']}; date {first['date']}; "
             f"commit {first['commit']}",
             f"Command: `{command}`",
             setup,
             f"Time: {timer}" if config.level != "loop" else "Time: wall clock over the timed steps",
             f"Memory: {memory}" if config.device.type == "cuda" else "Memory: not measured on CPU"]
    if config.level in ("layer", "model"):
        shape = config.shape
        layers = shape.layers if config.level == "model" else 1
        compiled = {False: "eager", True: "torch.compile (default mode)"}.get(shape.compile,
                                                                               f"torch.compile({shape.compile})")
        lines.append(f"Model: width heads x head_dim, {layers} layer(s), mlp {shape.mlp_dim}, dropout "
                     f"{shape.dropout}; parameters fp32, bf16/fp16 under autocast"
                     + (f"; {compiled}, the optimizer step eager" if config.level == "model" else ""))
    return lines


def write_outputs(config: BenchConfig, rows: list[Row], command: str) -> dict[str, Path]:
    """CSV, markdown summary, plots (and the wandb run); returns the paths written."""
    out = config.out_dir
    paths = {"csv": out / f"{config.name}.csv", "markdown": out / f"{config.name}.md"}
    write_csv(paths["csv"], COLUMNS, rows)
    tables: list[Table] = []
    images: list[Path] = []
    if config.level == "loop" and rows:
        tables.append(loop_table(rows))
        image = out / f"{config.name}.png"
        plots.plot_loop(image, loop_medians(rows), f"Training loops ({rows[0]['device']}, {rows[0]['date'][:10]})")
        images.append(image)
    for head_dim, dtype in report.groups(rows) if config.level != "loop" else []:
        tables.append(report.sweep_table(rows, config.series, head_dim, dtype))
        if config.level == "core":
            crossing_table = report.crossover_table(rows, config.series, head_dim, dtype, config.mode)
            tables += [crossing_table] if crossing_table else []
        else:
            tables.append(report.throughput_table(rows, config.series, head_dim, dtype))
        image = out / f"{config.name}_d{head_dim}_{dtype}.png"
        crossings = report.crossovers(rows, config.series, head_dim, dtype, config.mode) \
            if config.level == "core" else []
        memory_label = ("peak memory, all allocations (MiB)" if config.level == "model"
                        else "peak memory above inputs (MiB)")
        plots.plot_group(image, rows, config.series, head_dim, dtype,
                         f"{config.level} {config.mode}, d={head_dim}, {dtype}, B={config.batch_size}, "
                         f"H={config.heads} ({rows[0]['device']})", crossings, memory_label)
        images.append(image)
    if config.level == "core":
        beside = report.reference_table(rows, config.series)
        tables += [beside] if beside else []
    title = f"Attention benchmark: {config.level}" + ("" if config.level == "loop" else f", {config.mode}")
    markdown = report.render_markdown(title, summary_header(config, rows, command), tables)
    write_text(paths["markdown"], markdown)
    for index, image in enumerate(images):
        paths[f"plot{index}"] = image
    if config.wandb.enabled:
        where = tracking.log_run(project=config.wandb.project, mode=config.wandb.mode,
                                 directory=config.wandb.dir, name=f"bench-{config.name}",
                                 config=_plain(config), rows=rows, tables=tables, images=images)
        log.info("wandb run: %s", where)
    return paths


def _plain(config: BenchConfig) -> dict[str, object]:
    return {"level": config.level, "mode": config.mode, "series": [s.label for s in config.series],
            "lengths": config.lengths, "batch_size": config.batch_size, "heads": config.heads,
            "head_dims": config.head_dims, "dtypes": config.dtypes, "device": str(config.device),
            "timing": vars(config.timing), "model": vars(config.shape), "loop": vars(config.loop)}


def run(config: BenchConfig, command: str) -> dict[str, Path]:
    """Measure and write everything; returns the paths written."""
    tracking.check_available(config.wandb.enabled)
    log.info("lra.bench: %s -> %s", command, config.out_dir)
    if config.level == "loop":
        rows = loop_rows(config, command)
    else:
        rows = sweep(config, command, config.out_dir / f"{config.name}.csv")
    release(config.device)
    paths = write_outputs(config, rows, command)
    for kind, path in paths.items():
        log.info("wrote %s: %s", kind, path)
    return paths
