"""The wandb logger: offline unless the user opts in, grouped by task and tagged by backend.

Each process that trains a run writes its own wandb folder (offline) or continues the same online run. The
wandb service writes an offline run's file in batches (every 15 s), so a process killed (SIGKILL, a
preempted job) can leave its folder without the history it logged; a resumed run therefore logs the
validation history its checkpoint carries once more (``replay_history``), and the record and the summary
list every folder of the run (``wandb_segments``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from lra.train.config import attention_choice


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
    attention = attention_choice(cfg).name
    tags = [f"attention:{attention}", f"task:{task_name}", *(OmegaConf.to_container(settings.tags) or [])]
    if cfg.get("preset"):
        tags.append(f"preset:{cfg.preset}")
    logger = WandbLogger(
        project=settings.project,
        entity=settings.entity,
        group=settings.group or task_name,
        name=f"{task_name}-{attention}-{run_id}",
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


def replay_history(logger: WandbLogger | None, history: list[dict[str, float]]) -> None:
    """Log a resumed run's recorded validation points (val/acc, val/loss, train/loss at each validation)
    into this process's wandb run, at their own ``trainer/global_step``."""
    if logger is None:
        return
    for point in history:
        logger.log_metrics({key: value for key, value in point.items() if key != "step"}, step=point["step"])


def wandb_segments(logger: WandbLogger | None, run_dir: Path) -> list[str]:
    """Every wandb folder of the run (one per process that trained it), and its URL when online."""
    if logger is None:
        return []
    folders = [str(p) for p in sorted((run_dir / "wandb").glob("*run-*")) if p.is_dir() and not p.is_symlink()]
    location = run_location(logger)
    return [*folders, *([location] if location not in folders else [])]


def finish_wandb(logger: WandbLogger | None, exit_code: int) -> None:
    if logger is not None:
        logger.experiment.finish(exit_code=exit_code)
