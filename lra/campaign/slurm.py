"""The campaign's runs that are not done, as Hydra multirun commands of ``train.py`` through the submitit launcher.

Each command sweeps one preset over the backends that lack the same seeds (``attention=a,b seed=0,1,2``), so the
sweep holds exactly the runs that are not done; Hydra submits it as one SLURM job array
(``conf/hydra/launcher/slurm.yaml``). Every job runs with ``ckpt_path=auto``: it resumes the latest ``last.ckpt``
of its identity, or starts. When SLURM's time limit nears, submitit requeues the job with the same arguments
(``hydra.launcher.max_num_timeout`` times), so each job resumes itself; nothing of ours schedules across machines.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lra.campaign.grid import Entry, PlannedRun
from lra.campaign.plan import DONE, RunState

TRAIN = Path(__file__).resolve().parents[2] / "train.py"


def multirun_commands(runs: list[PlannedRun], states: list[RunState], common: list[str],
                      launcher_overrides: list[str]) -> list[list[str]]:
    """One ``train.py -m`` command per preset and set of missing seeds."""
    missing: dict[Entry, dict[str, list[int]]] = {}
    for run, state in zip(runs, states, strict=True):
        if state.kind != DONE:
            missing.setdefault(run.entry, {}).setdefault(run.backend, []).append(run.seed)
    commands = []
    for entry, seeds_of in missing.items():
        by_seeds: dict[tuple[int, ...], list[str]] = {}
        for backend, seeds in seeds_of.items():
            by_seeds.setdefault(tuple(seeds), []).append(backend)
        for seeds, backends in by_seeds.items():
            commands.append([sys.executable, str(TRAIN), "-m", *launcher_overrides, *entry.train_overrides(),
                             f"attention={','.join(backends)}", *common, f"seed={','.join(map(str, seeds))}",
                             "ckpt_path=auto"])
    return commands


def shell(command: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)
