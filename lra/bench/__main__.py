"""``python -m lra.bench``: the efficiency benchmark, configured by ``conf/bench.yaml`` (Hydra)."""

from __future__ import annotations

import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lra.bench.run import config_from, run


def command_line() -> str:
    """The command that reproduces this run: the module and its overrides, shell-quoted."""
    overrides = HydraConfig.get().overrides.task
    return " ".join(["python -m lra.bench", *(shlex.quote(o) for o in overrides)])


@hydra.main(version_base=None, config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    run(config_from(OmegaConf.to_container(cfg.bench, resolve=True)), command_line())


if __name__ == "__main__":
    main()
