"""``python -m lra.tables [checkpoint=best|last] [wandb=ENTITY/PROJECT] [...]``: see ``conf/tables.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lra.results.records import RecordError
from lra.tables.build import Settings, build


@hydra.main(version_base="1.3", config_path="../../conf", config_name="tables")
def main(cfg: DictConfig) -> None:
    settings = Settings(runs_dir=Path(cfg.runs_dir), bench_dir=Path(cfg.bench_dir), tables_dir=Path(cfg.tables_dir),
                        report=Path(cfg.report) if cfg.report else None, checkpoint=cfg.checkpoint,
                        wandb=cfg.wandb, figure_length=cfg.figure3.length, figure_device=cfg.figure3.device,
                        analysis_dir=Path(cfg.analysis_dir) if cfg.analysis_dir else None,
                        not_run=dict(cfg.not_run or {}))
    try:
        written = build(settings)
    except (RecordError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(f"wrote {path}" for path in written))


if __name__ == "__main__":
    main()
