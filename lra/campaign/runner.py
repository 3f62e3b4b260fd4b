"""Advancing a campaign here: ``train.py`` subprocesses on this machine's GPUs, stopped before the budget ends.

Each task's data is prepared once, in this process, before any run starts (runs started together would each
build the same cache); a run whose data is missing is reported and left out. Runs start in the plan's order
(those trained but untested first, then the partial ones, then new ones), each with ``ckpt_path=auto``
(resume the latest ``last.ckpt`` of its identity, else start), on the GPU with the fewest campaign processes
(``CUDA_VISIBLE_DEVICES``; ``runs_per_gpu`` at most). ``stop_margin`` before the budget's end (less
``tables_time``) every process still training gets SIGUSR1 (``lra.train.stopping.StopOnSignal``): it ends its
step, validates, writes ``last.ckpt`` and its record, and exits. One still alive when the budget's end comes is
ended with SIGTERM, then SIGKILL (its process group: wandb's service with it); it resumes from its last
validation. A run tests its checkpoints when it reaches its last step (``test_after_fit=finished``), a stopped
one only with ``test_partial``. With ``needs`` (``finishing_only``), a run starts only if its estimated time
fits before the stop: where a stopped run's checkpoint cannot reach the next call, starting it wastes the time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import torch
from omegaconf import OmegaConf

from lra.campaign.grid import PlannedRun
from lra.campaign.plan import DONE, NEW, PARTIAL, UNTESTED, RunState, format_duration
from lra.train.cli import user_errors
from lra.train.config import ConfigError
from lra.train.run import prepare_data

TRAIN = Path(__file__).resolve().parents[2] / "train.py"
POLL_S = 0.5
KILL_GRACE_S = 15.0
START_ORDER = (UNTESTED, PARTIAL, NEW)


@dataclass(frozen=True)
class Timing:
    """The call's clock (``time.monotonic`` seconds): when runs stop starting, the stop, the hard end."""

    started: float
    budget: float
    stop_margin: float
    min_slot: float
    tables_time: float

    @property
    def end(self) -> float:
        return self.started + self.budget - self.tables_time

    @property
    def stop(self) -> float:
        return self.end - self.stop_margin

    @property
    def last_start(self) -> float:
        return self.stop - self.min_slot


@dataclass
class Child:
    run: PlannedRun
    device: str | None
    process: subprocess.Popen
    log: IO[str]
    log_path: Path
    stop_sent: bool = False
    term_sent_at: float | None = None


@dataclass
class Outcome:
    run: PlannedRun
    returncode: int | None  # None: never started (no slot or no time left)
    log_path: Path | None = None
    stopped: bool = False  # the budget's stop was sent to it


def visible_devices(gpus: str | int) -> list[str | None]:
    """Device ids for CUDA_VISIBLE_DEVICES (as the parent sees them), or ``[None]``: the CPU."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d for d in listed.split(",") if d.strip()] if listed is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    if str(gpus) != "auto":
        ids = ids[: int(gpus)]
    return ids or [None]


def prepare_data_once(queue: list[tuple[PlannedRun, RunState]]) -> list[tuple[PlannedRun, RunState]]:
    """Prepare each task's data once, here, before the runs start: processes started together would each build
    the same cache. A run whose data cannot be prepared (not downloaded) is reported and left out of this call."""
    prepared: dict[str, bool] = {}  # task settings and data folder -> ready
    for run, _ in queue:
        key = _data_key(run)
        if key in prepared:
            continue
        try:
            prepare_data(run.config)
            prepared[key] = True
        except user_errors() as error:
            prepared[key] = False
            print(f"skip   {run.config.task.name} runs with these task settings: {error}", flush=True)
    return [(run, state) for run, state in queue if prepared[_data_key(run)]]


def _data_key(run: PlannedRun) -> str:
    task = OmegaConf.to_container(run.config.task, resolve=True)
    return json.dumps([task, run.config.paths.data_dir], sort_keys=True)  # the seed only orders batches


def start_order(runs: list[PlannedRun], states: list[RunState]) -> list[tuple[PlannedRun, RunState]]:
    pending = [(run, state) for run, state in zip(runs, states, strict=True) if state.kind != DONE]
    return sorted(pending, key=lambda pair: START_ORDER.index(pair[1].kind))


class Runner:
    """Starts, places, stops and reaps the ``train.py`` processes of one call."""

    def __init__(self, devices: list[str | None], runs_per_gpu: int, timing: Timing, log_dir: Path,
                 test_partial: bool, on_exit: Callable[[Outcome], None],
                 clock: Callable[[], float] = time.monotonic,
                 needs: Callable[[PlannedRun, RunState], float] | None = None):
        if runs_per_gpu < 1:
            raise ConfigError(f"runs_per_gpu={runs_per_gpu}: at least 1 run per GPU")
        self.devices, self.runs_per_gpu, self.timing = devices, runs_per_gpu, timing
        self.log_dir, self.test_partial, self.on_exit = log_dir, test_partial, on_exit
        self.clock, self.needs = clock, needs
        self.children: list[Child] = []
        self.outcomes: list[Outcome] = []

    def advance(self, queue: list[tuple[PlannedRun, RunState]]) -> list[Outcome]:
        try:
            return self._advance(list(queue))
        except KeyboardInterrupt:  # the children live in sessions of their own: stop them, or they train on
            print("interrupted: asking every run to stop", flush=True)
            self.timing = replace(self.timing, budget=self.clock() - self.timing.started + self.timing.stop_margin
                                  + self.timing.tables_time)
            self._advance([])
            raise

    def _advance(self, queue: list[tuple[PlannedRun, RunState]]) -> list[Outcome]:
        while queue or self.children:
            now = self.clock()
            while queue and now < self.timing.last_start and (free := self._free_devices()):
                queue = self._finishing(queue, now)
                if queue:
                    self._start(*queue.pop(0), free[0])
            if queue and now >= self.timing.last_start:
                self.outcomes += [Outcome(run, None) for run, _ in queue]
                queue = []
            self._stop_and_end(now)
            self._reap()
            if self.children:
                time.sleep(POLL_S)
        return self.outcomes

    def _finishing(self, queue: list[tuple[PlannedRun, RunState]], now: float) -> list[tuple[PlannedRun, RunState]]:
        """The queue without the runs that ``needs`` says would not finish before the stop (reported, not started:
        later they would have even less time)."""
        if self.needs is None:
            return queue
        left, kept = self.timing.stop - now, []
        for run, state in queue:
            need = self.needs(run, state)
            if need <= left:
                kept.append((run, state))
                continue
            self.outcomes.append(Outcome(run, None))
            print(f"skip   {run.label}: needs about {format_duration(need)}, {format_duration(left)} left before the "
                  "stop", flush=True)
        return kept

    def _free_devices(self) -> list[str | None]:
        """Devices with a free slot, the least loaded first (the first of equals): round-robin placement."""
        load = {device: sum(child.device == device for child in self.children) for device in self.devices}
        return sorted((d for d in self.devices if load[d] < self.runs_per_gpu), key=lambda d: load[d])

    def _start(self, run: PlannedRun, state: RunState, device: str | None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{run.slug}.log"
        # finished: a run tests its checkpoints only if it reaches its last step in this call; one the budget stops
        # goes on in the next, and its tests would be spent on a checkpoint that call replaces
        tests = "true" if self.test_partial else "finished"
        overrides = [*run.overrides, "ckpt_path=auto", f"test_after_fit={tests}",
                     f"hydra.run.dir={self.log_dir / run.slug}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        log = open(log_path, "w")  # noqa: SIM115 -- closed when the child is reaped
        process = subprocess.Popen(self.command(overrides), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        self.children.append(Child(run, device, process, log, log_path))
        where = "the CPU" if device is None else f"GPU {device}"
        print(f"start  {run.label}: {state.describe(run.max_steps)}, on {where} (log {log_path})", flush=True)

    def command(self, overrides: list[str]) -> list[str]:
        return [sys.executable, str(TRAIN), *overrides]

    def _stop_and_end(self, now: float) -> None:
        for child in self.children:
            if now >= self.timing.stop and not child.stop_sent:
                child.process.send_signal(signal.SIGUSR1)  # the train.py process only: wandb's service goes on
                child.stop_sent = True
                print(f"stop   {child.run.label}: the budget's stop ({self.timing.stop_margin:.0f} s before its end)",
                      flush=True)
            if now >= self.timing.end and child.term_sent_at is None:
                _signal_group(child.process, signal.SIGTERM)
                child.term_sent_at = now
                print(f"end    {child.run.label}: still running at the budget's end; SIGTERM (it resumes from its "
                      "last validation)", flush=True)
            elif child.term_sent_at is not None and now >= child.term_sent_at + KILL_GRACE_S:
                _signal_group(child.process, signal.SIGKILL)

    def _reap(self) -> None:
        for child in list(self.children):
            returncode = child.process.poll()
            if returncode is None:
                continue
            child.log.close()
            self.children.remove(child)
            outcome = Outcome(child.run, returncode, child.log_path, child.stop_sent)
            self.outcomes.append(outcome)
            self.on_exit(outcome)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # its own session (start_new_session): train.py and its children only
    except ProcessLookupError:
        pass
