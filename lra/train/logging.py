"""The wandb logger: offline unless the user opts in, grouped by task and tagged by backend."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf


def wandb_mode(configured: str) -> str:
    """``auto``: WANDB_MODE if set, else online when an API key is known (``wandb login``), else offline."""
    if configured != "auto":
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import wandb

        return "online" if wandb.api.api_key else "offline"
    except Exception:  # a broken or absent login is "not logged in"
        return "offline"


def make_wandb_logger(cfg: DictConfig, run_id: str, run_dir: Path, task_name: str) -> WandbLogger | None:
    settings = cfg.logger.get("wandb")
    if not settings or settings.mode == "disabled":
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    tags = [f"attention:{cfg.attention.name}", f"task:{task_name}", *(OmegaConf.to_container(settings.tags) or [])]
    if cfg.get("preset"):
        tags.append(f"preset:{cfg.preset}")
    logger = WandbLogger(
        project=settings.project,
        entity=settings.entity,
        group=settings.group or task_name,
        name=f"{task_name}-{cfg.attention.name}-{run_id}",
        id=run_id,
        resume="allow",
        save_dir=str(run_dir),
        mode=wandb_mode(settings.mode),
        tags=tags,
        job_type="train",
        log_model=False,
    )
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def run_location(logger: WandbLogger | None) -> str | None:
    """The run's URL when online, its local folder when offline."""
    if logger is None:
        return None
    run = logger.experiment
    return run.url if getattr(run, "url", None) else str(Path(run.dir).parent)


def finish_wandb(logger: WandbLogger | None, exit_code: int) -> None:
    if logger is not None:
        logger.experiment.finish(exit_code=exit_code)
