"""``python -m lra.campaign NAME [budget=9m] [dry_run=true] [launcher=slurm] [...]``: see ``conf/campaign.yaml``.

Each call advances the campaign ``conf/campaign/NAME.yaml``: it reads where every run of the grid stands
(``lra.campaign.plan``), runs what is not done within the budget (``lra.campaign.runner``; with
``launcher=slurm`` as submitit multiruns, ``lra.campaign.slurm``), then rebuilds the tables.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lra.campaign.grid import PlannedRun, expand, parse_duration
from lra.campaign.plan import Rate, Records, RunState, render, seconds_left, state_of, summary
from lra.campaign.runner import Outcome, Runner, Timing, prepare_data_once, start_order, visible_devices
from lra.campaign.slurm import multirun_commands, shell
from lra.train.cli import run_or_explain
from lra.train.config import ConfigError


def campaign(cfg: DictConfig, name: str) -> int:
    """Plan, run what is left within the budget, rebuild the tables; the exit status (1 if a run failed)."""
    started = time.monotonic()
    timing = Timing(started, *(parse_duration(cfg[key], key) for key in
                               ("budget", "stop_margin", "min_slot", "tables_time")))
    runs = expand(cfg)
    paths = runs[0].config.paths
    records = Records(Path(paths.results_dir) / "runs")
    states = [state_of(run, records) for run in runs]
    rates = [records.rate(run, cfg.default_steps_per_s) for run in runs]
    print(f"campaign {name}: {len(runs)} runs\n\n{render(runs, states, rates)}\n\n"
          f"{summary(runs, states, rates, cfg.default_steps_per_s)}", flush=True)
    if cfg.launcher == "slurm":
        return _slurm(cfg, runs, states, paths.results_dir)
    if cfg.launcher != "local":
        raise ConfigError(f"launcher={cfg.launcher!r}; valid: local, slurm")
    if cfg.dry_run:
        return 0
    queue = start_order(runs, states)
    if not queue:
        print("\nevery run is done: nothing to run")
        return _tables(cfg, paths.results_dir)
    devices = visible_devices(cfg.gpus)
    log_dir = Path(paths.models_dir) / "campaigns" / name / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    print(f"\nbudget {cfg.budget}: runs stop {cfg.stop_margin} before its end; "
          f"{len(devices)} {'GPU(s)' if devices[0] is not None else 'CPU'} x {cfg.runs_per_gpu} runs\n", flush=True)
    runner = Runner(devices, int(cfg.runs_per_gpu), timing, log_dir, bool(cfg.test_partial),
                    on_exit=_reporter(paths.results_dir), needs=_needs(cfg, runs, rates))
    outcomes = runner.advance(prepare_data_once(queue))
    waiting = [outcome.run.label for outcome in outcomes if outcome.returncode is None]
    reason = ", or not enough to finish" if cfg.finishing_only else ""
    if waiting:
        print(f"\nnot started in this call (no time left for them{reason}): {len(waiting)} runs", flush=True)
    failed = [o for o in outcomes if o.returncode not in (0, None) and not o.stopped]
    status = _tables(cfg, paths.results_dir)
    after = Records(Path(paths.results_dir) / "runs")
    states = [state_of(run, after) for run in runs]
    print(f"\nafter this call: {summary(runs, states, rates, cfg.default_steps_per_s)}")
    if failed:
        print(f"{len(failed)} run(s) failed: " + "; ".join(f"{o.run.label} (log {o.log_path})" for o in failed))
    return 1 if failed else status


def _needs(cfg: DictConfig, runs: list[PlannedRun],
           rates: list[Rate]) -> Callable[[PlannedRun, RunState], float] | None:
    """With ``finishing_only``: a run's estimated seconds to its end, training at the measured rate plus
    ``run_overhead``."""
    if not cfg.finishing_only:
        return None
    overhead = parse_duration(cfg.run_overhead, "run_overhead")
    rate_of = {run.slug: rate for run, rate in zip(runs, rates, strict=True)}
    return lambda run, state: seconds_left(run, state, rate_of[run.slug]) + overhead


def _reporter(results_dir: str) -> Callable[[Outcome], None]:
    def report(outcome: Outcome) -> None:
        run = outcome.run
        state: RunState = state_of(run, Records(Path(results_dir) / "runs"))
        if outcome.returncode == 0 or outcome.stopped:
            print(f"exit   {run.label}: {state.describe(run.max_steps)}", flush=True)
        else:
            print(f"FAILED {run.label} (exit {outcome.returncode}): {_last_line(outcome.log_path)}; "
                  f"log {outcome.log_path}", flush=True)
    return report


def _last_line(path: Path | None) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()] if path else []
    return lines[-1] if lines else "no output"


def _slurm(cfg: DictConfig, runs: list[PlannedRun], states: list[RunState], results_dir: str) -> int:
    commands = multirun_commands(runs, states, [str(o) for o in cfg.overrides], [str(o) for o in cfg.slurm_overrides])
    print("\nSLURM: one job array per command (each job resumes itself, ckpt_path=auto):\n"
          + "\n".join(shell(command) for command in commands))
    if cfg.dry_run or not commands:
        return 0
    # Each multirun waits for its array's jobs; all arrays are submitted at once.
    processes = [subprocess.Popen(command) for command in commands]
    status = max(process.wait() for process in processes)
    return status or _tables(cfg, results_dir)


def _tables(cfg: DictConfig, results_dir: str) -> int:
    if not cfg.tables:
        return 0
    print("\nrebuilding the tables: python -m lra.tables", flush=True)
    return subprocess.run([sys.executable, "-m", "lra.tables", f"results_dir={results_dir}"]).returncode


@hydra.main(version_base="1.3", config_path="../../conf", config_name="campaign")
def main(cfg: DictConfig) -> None:
    sys.exit(run_or_explain(campaign, cfg, HydraConfig.get().runtime.choices["campaign"]))


def _name_as_override(argv: list[str]) -> list[str]:
    """``python -m lra.campaign NAME ...`` -> ``campaign=NAME ...`` (the campaign is a config group)."""
    if len(argv) > 1 and "=" not in argv[1] and not argv[1].startswith("-"):
        return [argv[0], f"campaign={argv[1]}", *argv[2:]]
    return argv


if __name__ == "__main__":
    sys.argv = _name_as_override(sys.argv)
    main()
