"""``python -m lra.analysis sparse [key=value ...]``: see ``conf/analysis.yaml`` and ``lra.analysis.run``."""

from __future__ import annotations

import shlex
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

COMMANDS = ("sparse",)
USAGE = "usage: python -m lra.analysis sparse [key=value ...]   (settings: conf/analysis.yaml, sparse.*)"


def command_line() -> str:
    """The command that reproduces this run: the module, the command and its overrides, shell-quoted."""
    overrides = HydraConfig.get().overrides.task
    return " ".join(["python -m lra.analysis sparse", *(shlex.quote(o) for o in overrides)])


@hydra.main(version_base="1.3", config_path="../../conf", config_name="analysis")
def main(cfg: DictConfig) -> None:
    from lra.analysis.run import run
    from lra.data import DataError
    from lra.train.config import ConfigError

    try:
        written = run(cfg, command_line())
    except (ValueError, ConfigError, DataError) as error:  # bad settings or inputs: the message, not a traceback
        raise SystemExit(f"lra.analysis: {error}") from None
    print("\n".join(f"wrote {path}" for path in written))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(USAGE)
    sys.argv.pop(1)
    main()
