"""Where each run of a campaign stands, read from the run records and the checkpoints, and the GPU time left.

A run is *done* when a record of its identity (``lra.train.identity.identity_key`` of the record's resolved
config; a record written before a config key existed counts where the run leaves that key at its preset's
value, ``predating``) finished all of its preset's steps and holds a test accuracy. Otherwise its latest ``last.ckpt``
(``models/<task>/<attention>/<identity>/*/checkpoints/``, the one ``ckpt_path=last`` resumes) says how far it
got: *untested* (trained to the end, not tested yet), *partial* (at step s of S), or *new* (no checkpoint
here; a record may say it got further on another machine, whose checkpoint this one lacks).

Time left is the steps left over the training speed that records measured (``efficiency.steps_per_s``): of
runs with the same setting (identity up to the seed), else of runs with the same preset, backend and
sequence length, else with the same task, backend and length under another preset, else of other backends
with the same preset and length (a rough guess, better than the default); on a GPU, of those the
ones that shared it with the fewest other processes, the newest three (median). Training steps only:
validation, start-up and the tests come on top.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lra.campaign.grid import PlannedRun, preset_config
from lra.results.records import read_records
from lra.train.identity import identity_key, latest_checkpoint

DONE, UNTESTED, PARTIAL, NEW = "done", "untested", "partial", "new"


@dataclass(frozen=True)
class RunState:
    kind: str  # done | untested | partial | new
    step: int  # steps trained (of the checkpoint, or the done record)
    detail: str = ""  # test accuracy of a done run; a record's progress that has no checkpoint here

    def describe(self, max_steps: int) -> str:
        text = {DONE: "done", UNTESTED: f"trained {self.step:,} of {max_steps:,}, tests pending",
                PARTIAL: f"at step {self.step:,} of {max_steps:,}", NEW: "not started"}[self.kind]
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class Rate:
    steps_per_s: float
    source: str  # "3 runs, same setting" | "default"


class Records:
    """The training records under ``results/runs/``, indexed by run identity and by setting."""

    def __init__(self, runs_dir: Path):
        self.records: list[tuple[str, str, dict[str, Any]]] = []  # (identity, setting, record)
        for _, record in read_records(runs_dir):
            if isinstance(record.get("config"), dict):
                config = OmegaConf.create(record["config"])
                self.records.append((identity_key(config), setting_key(config), record))

    def of(self, run: PlannedRun) -> list[dict[str, Any]]:
        """The records of this run: of its identity, or written before config keys that it leaves at their
        preset's value existed (``predating``)."""
        found = []
        for identity, _, record in self.records:
            if identity == run.identity:
                found.append(record)
            elif ((record.get("preset"), record.get("attention"), record.get("seed"))
                  == (run.config.get("preset"), run.backend, run.seed)
                  and identity_key(predating(record["config"], run)) == run.identity):
                found.append(record)
        return found

    def rate(self, run: PlannedRun, default: float) -> Rate:
        wanted = setting_key(run.config)
        same_setting = [r for _, setting, r in self.records if setting == wanted]
        similar = [r for _, _, r in self.records if _similar(r, run, same_preset=True)]
        model = [r for _, _, r in self.records if _similar(r, run, same_preset=False)]
        # other backends train at other speeds, but nearer to this run's than a fixed default is
        neighbours = [r for _, _, r in self.records if _similar(r, run, same_preset=True, same_backend=False)]
        for records, label in ((same_setting, "same setting"), (similar, "same preset, backend and length"),
                               (model, "same task, backend and length, another preset"),
                               (neighbours, "other backends, same preset and length")):
            rates = gpu_rates(records)
            if rates:
                return Rate(statistics.median(rates), f"{len(rates)} run{'s' * (len(rates) > 1)}, {label}")
        return Rate(float(default), "default")


def predating(record_config: dict[str, Any], run: PlannedRun) -> DictConfig:
    """A record's config as the run's would read had it been written today: a key added since (``task.trim_eval``,
    a new backend option) takes the run's value where that is also the preset's own value (a new option's default
    keeps the earlier behaviour: the project's rule), and keys the code no longer has are dropped. A key the run
    sets away from its preset's value still tells the record apart."""
    planned = OmegaConf.to_container(run.config, resolve=True)
    preset = OmegaConf.to_container(preset_config(run.entry.experiment, run.backend), resolve=True)
    return OmegaConf.create(_fill(record_config, planned, preset))


def _fill(record: dict[str, Any], planned: dict[str, Any], preset: Any) -> dict[str, Any]:
    preset = preset if isinstance(preset, dict) else {}
    filled = {}
    for key, value in planned.items():
        if key in record and isinstance(value, dict) and isinstance(record[key], dict):
            filled[key] = _fill(record[key], value, preset.get(key))
        elif key in record:
            filled[key] = record[key]
        elif key in preset and preset[key] == value:
            filled[key] = value
    return filled


def setting_key(config) -> str:
    """The run identity with the seed left out: runs of one setting train at one speed."""
    unseeded = config.copy()
    unseeded.seed = None
    return identity_key(unseeded)


def _similar(record: dict[str, Any], run: PlannedRun, same_preset: bool, same_backend: bool = True) -> bool:
    task, planned = record["config"].get("task") or {}, run.config.task
    return ((record.get("preset") == run.config.get("preset")) == same_preset
            and (record.get("attention") == run.backend) == same_backend and record.get("task") == planned.name
            and task.get("max_length") == planned.get("max_length")
            and task.get("resolution") == planned.get("resolution"))


def gpu_rates(records: list[dict[str, Any]], newest: int = 3) -> list[float]:
    """steps/s measured on a GPU, from the runs that shared theirs with the fewest processes (unknown: alone), the
    ``newest`` of them (the code gets faster)."""
    measured = []
    for record in records:
        efficiency = record.get("efficiency") or {}
        if str(efficiency.get("memory_kind", "")).startswith("cuda") and efficiency.get("steps_per_s"):
            processes = efficiency.get("device_processes") or 1
            measured.append((processes, str(record.get("updated", "")), efficiency["steps_per_s"]))
    fewest = min((processes for processes, _, _ in measured), default=None)
    alone = sorted((updated, rate) for processes, updated, rate in measured if processes == fewest)
    return [rate for _, rate in alone[-newest:]]


def checkpoint_step(path: Path) -> int:
    """The global step of a checkpoint, read without loading its tensors (memory-mapped)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def state_of(run: PlannedRun, records: Records) -> RunState:
    own = records.of(run)
    for record in sorted(own, key=lambda r: r.get("created") or "", reverse=True):  # the latest, as the tables count
        metrics = record.get("metrics") or {}
        if (record.get("status") == "finished" and (metrics.get("step") or 0) >= run.max_steps
                and metrics.get("test/acc@best") is not None):
            return RunState(DONE, int(metrics["step"]), f"test {100 * metrics['test/acc@best']:.2f}%")
    checkpoint = latest_checkpoint(run.config)
    if checkpoint is not None:
        step = checkpoint_step(checkpoint)
        return RunState(UNTESTED if step >= run.max_steps else PARTIAL, step)
    furthest = max(((record.get("metrics") or {}).get("step") or 0 for record in own), default=0)
    detail = f"a record reached step {furthest:,}; its checkpoint is not here" if furthest else ""
    return RunState(NEW, 0, detail)


def seconds_left(run: PlannedRun, state: RunState, rate: Rate) -> float:
    return 0.0 if state.kind in (DONE, UNTESTED) else (run.max_steps - state.step) / rate.steps_per_s


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def render(runs: list[PlannedRun], states: list[RunState], rates: list[Rate]) -> str:
    """The plan as a table: each run, its state, the GPU time it has left and the rate behind the estimate."""
    header = ("preset", "backend", "seed", "state", "GPU time left", "estimated at")
    rows = []
    for run, state, rate in zip(runs, states, rates, strict=True):
        left = seconds_left(run, state, rate)
        rows.append((run.entry.label, run.backend, str(run.seed), state.describe(run.max_steps),
                     format_duration(left) if left else ("tests only" if state.kind == UNTESTED else "-"),
                     "" if not left else f"{rate.steps_per_s:g} steps/s ({rate.source})"))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines)


def summary(runs: list[PlannedRun], states: list[RunState], rates: list[Rate], default_rate: float) -> str:
    counts = {kind: sum(state.kind == kind for state in states) for kind in (DONE, UNTESTED, PARTIAL, NEW)}
    total = sum(seconds_left(run, state, rate) for run, state, rate in zip(runs, states, rates, strict=True))
    defaults = sum(rate.source == "default" and state.kind in (PARTIAL, NEW)
                   for state, rate in zip(states, rates, strict=True))
    text = (f"{len(runs)} runs: {counts[DONE]} done, {counts[UNTESTED]} trained and waiting for their tests, "
            f"{counts[PARTIAL]} partial, {counts[NEW]} not started. GPU time left: {format_duration(total)} of "
            "training steps at the measured rates (validation, start-up and tests come on top)")
    if defaults:
        text += f"; {defaults} of them at the default {default_rate:g} steps/s (no record of their setting)"
    return text + "."
