"""Evaluate a trained checkpoint: ``python evaluate.py ckpt=PATH [split=test]``."""

import sys

import hydra
from omegaconf import DictConfig

from lra.train.cli import check_overrides, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from lra.train.cli import run_or_explain
    from lra.train.run import evaluate

    run_or_explain(evaluate, cfg)


if __name__ == "__main__":
    check_overrides("evaluate", sys.argv[1:])
    main()
