"""launcher=slurm: the runs not done as train.py multiruns through Hydra's submitit launcher (no real SLURM)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from lra.campaign.__main__ import campaign
from lra.campaign.plan import Records, state_of
from lra.campaign.slurm import multirun_commands
from lra.train.identity import identity_key
from tests.campaign.conftest import TINY_STEPS, compose_campaign, plan_runs, write_record
from tests.helpers import compose_train

LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.max_num_timeout=20"]


def _jobs(command: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of a ``train.py -m`` command line."""
    arguments = command[command.index("-m") + 1:]
    parsed = OverridesParser.create().parse_overrides(arguments)
    (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return batch


def test_the_multiruns_hold_exactly_the_runs_not_done(workdir: Path, campaign_dir: Path) -> None:
    runs = plan_runs(campaign_dir, ["backends=[softmax,linear]", "seeds=[0,1]"])
    done = next(run for run in runs if (run.backend, run.seed) == ("softmax", 0))
    write_record(done, "eeee0001", TINY_STEPS)
    records = Records(workdir / "results" / "runs")
    states = [state_of(run, records) for run in runs]
    common = list(compose_campaign("tiny", search=campaign_dir).overrides)
    commands = multirun_commands(runs, states, common, LAUNCHER)
    assert [c[c.index("-m") + 3:] for c in commands] == [  # after the launcher's two overrides
        ["task=listops_small", "attention=linear", *common, "seed=0,1", "ckpt_path=auto"],
        ["task=listops_small", "attention=softmax", *common, "seed=1", "ckpt_path=auto"]]
    identities = set()
    for command in commands:
        for job in _jobs(command):
            cfg = compose_train(job, hydra_config=True)
            assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
            assert cfg.hydra.launcher.max_num_timeout == 20 and cfg.hydra.launcher.gpus_per_node == 1
            assert cfg.ckpt_path == "auto"
            del cfg.hydra  # what the job's task function gets
            identities.add(identity_key(cfg))
    assert identities == {run.identity for run in runs} - {done.identity}


def test_the_dry_run_prints_the_commands(workdir: Path, campaign_dir: Path, capsys) -> None:
    cfg = compose_campaign("tiny", ["launcher=slurm", "dry_run=true"], campaign_dir)
    assert campaign(cfg, "tiny") == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if " -m hydra/launcher=slurm " in line]
    assert shlex.split(line)[-2:] == ["seed=0,1", "ckpt_path=auto"]
    assert not (workdir / "models").exists()
