"""The benchmark's wandb run: its config, every point, the summary tables and the plots.

On by default and offline (``bench.wandb.mode``); the ``WANDB_MODE`` environment variable, when set,
wins (``WANDB_MODE=online`` to upload, ``disabled`` to skip). ``bench.wandb.enabled=false`` turns it off.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from lra.results.bench import COLUMNS, Row
from lra.results.table import Table


def check_available(enabled: bool) -> None:
    """Fail before measuring, not after, when logging is asked for and wandb is missing."""
    if enabled and importlib.util.find_spec("wandb") is None:
        raise RuntimeError("bench.wandb.enabled is true but wandb is not installed; install it "
                           "(pip install wandb) or run with bench.wandb.enabled=false")


def log_run(*, project: str, mode: str, directory: str | None, name: str, config: dict, rows: list[Row],
            tables: list[Table], images: list[Path]) -> str | None:
    """Log one benchmark as one wandb run; returns the run's folder or URL."""
    import wandb

    run = wandb.init(project=project, name=name, job_type="bench", config=config,
                     mode=os.environ.get("WANDB_MODE", mode), dir=directory)
    try:
        run.log({"points": wandb.Table(columns=list(COLUMNS),
                                       data=[[row.get(key) for key in COLUMNS] for row in rows])})
        for table in tables:
            data = [[str(cell) for cell in row] for row in table.rows]
            run.log({table.title: wandb.Table(columns=table.columns, data=data)})
        for image in images:
            run.log({image.stem: wandb.Image(str(image))})
        return run.url or run.dir
    finally:
        run.finish()
