"""Train one LRA task with one attention backend: ``python train.py [overrides]`` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

from lra.train.cli import check_overrides, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lra.train.cli import run_or_explain
    from lra.train.run import train

    record = run_or_explain(train, cfg)
    return record["metrics"].get("val/acc_best")  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    check_overrides("train", sys.argv[1:])
    main()
