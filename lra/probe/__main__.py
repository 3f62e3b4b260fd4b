"""``python -m lra.probe task=pathfinder|image [task.KEY=VALUE ...] [epochs=5 ...]``: see ``conf/probe.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lra.conf import CONF_DIR, compose, exit_status, integer, number
from lra.data import DataError


def probe(cfg: DictConfig) -> None:
    from lra.data.prepare import prepare_verbosely
    from lra.probe import cnn

    task = OmegaConf.to_container(cfg.task, resolve=True)
    cnn.check_task(task.get("name"))  # before preparing, which can take minutes for a task it rejects
    if task["batch_size"] != cfg.batch_size:
        raise DataError("probe: set the batch size with batch_size=N (the probe's), not task.batch_size")
    epochs, max_train, seed = integer(cfg, "epochs"), integer(cfg, "max_train"), integer(cfg, "seed")
    lr = number(cfg, "lr")
    datamodule = prepare_verbosely("probe", task, data_dir=cfg.paths.data_dir, seed=seed)
    result = cnn.run_probe(datamodule, epochs=epochs, lr=lr, seed=seed, max_train=max_train)
    print(f"test acc {result['test_acc']:.4f} (chance {result['chance']:.4f}) after {epochs} epochs on "
          f"{result['train_examples']} training images, {result['seconds']:.1f} s")
    path = Path(cfg.out) if cfg.out else cnn.default_report_path(Path(cfg.paths.results_dir), task)
    settings = {"epochs": epochs, "batch_size": cfg.batch_size, "lr": lr, "seed": seed,
                "max_train": max_train}
    cnn.write_report(path, task, datamodule, settings, result)
    print(f"report: {path} (a check of the data with a small CNN, not an LRA result)")


def main(argv: list[str] | None = None) -> int:
    overrides = sys.argv[1:] if argv is None else argv
    if overrides[:1] in (["-h"], ["--help"]):
        print((CONF_DIR / "probe.yaml").read_text())
        return 0
    return exit_status(lambda: probe(compose("probe", overrides)), (DataError, ValueError))  # UnknownTaskError


if __name__ == "__main__":
    sys.exit(main())
