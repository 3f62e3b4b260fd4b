"""``python -m lra.bench``: the efficiency benchmark, configured by ``conf/bench.yaml`` (Hydra)."""

from __future__ import annotations

import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lra.bench import tracking
from lra.bench.run import config_from, run


def command_line() -> str:
    """The command that reproduces this run: the module and its overrides, shell-quoted."""
    overrides = HydraConfig.get().overrides.task
    return " ".join(["python -m lra.bench", *(shlex.quote(o) for o in overrides)])


@hydra.main(version_base=None, config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    try:
        config = config_from(OmegaConf.to_container(cfg.bench, resolve=True))
        tracking.check_available(config.wandb.enabled)
    except (ValueError, TypeError, RuntimeError) as error:  # bad settings: the message, not a traceback
        raise SystemExit(f"lra.bench: {error}") from None
    run(config, command_line())


if __name__ == "__main__":
    main()
