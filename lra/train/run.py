"""What ``train.py`` and ``evaluate.py`` call: one training run, or one evaluation of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import lra.data
from lra.model import ModelConfig
from lra.results.environment import environment
from lra.results.records import ResultsStore, now
from lra.train.checkpoints import (
    CONFIG_KEY,
    CheckedCheckpointIO,
    RandomStateCheckpoint,
    checkpoint_callbacks,
    checkpoint_paths,
    checkpoint_writers,
    load_checkpoint,
    remove_orphans,
)
from lra.train.config import ConfigError, attention_choice, check_top_level, validate
from lra.train.console import ProgressBar, print_summary
from lra.train.efficiency import EfficiencyMonitor, speed_options
from lra.train.history import ValidationHistory, recorded_history
from lra.train.identity import RUN_ID_KEY, RunPlace, RunStamp, finished_record, resolve_run, run_id_shared
from lra.train.logging import finish_wandb, make_wandb_logger, replay_history, run_location, wandb_segments
from lra.train.module import LRAModule
from lra.train.stopping import DivergedError, DivergenceGuard, StopOnSignal

__all__ = ["CONFIG_KEY", "RunDiverged", "evaluate", "load_checkpoint", "train"]


class RunDiverged(Exception):
    """The run stopped because its loss stopped being finite; its record says ``diverged``. The message names
    the step and the last finite checkpoint."""


def build_module(cfg: DictConfig, spec: lra.data.TaskSpec) -> LRAModule:
    """The Lightning module of ``cfg``; a model or backend setting its class refuses is a config error."""
    attention = attention_choice(cfg)
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        model = ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
        return LRAModule(spec, model, attention.name, attention.options,
                         optimizer=hydra.utils.instantiate(cfg.optimizer), scheduler=scheduler)
    except ValueError as error:  # the backends and ModelConfig name the key, its value and the valid ones
        raise ConfigError(str(error)) from None


def prepare_data(cfg: DictConfig) -> lra.data.LRADataModule:
    datamodule = lra.data.create(OmegaConf.to_container(cfg.task, resolve=True), data_dir=cfg.paths.data_dir,
                                 seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def make_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list[L.Callback]) -> L.Trainer:
    """Checkpoints are written right after a validation, the best first, so that last.ckpt always
    records a best checkpoint that exists and a validation that has happened: a run killed at any
    moment resumes into exactly the state an uninterrupted run had at that validation (last.ckpt follows
    a validation once ``checkpoint_every_s`` have passed since its last write). last.ckpt is written once
    more when training stops (max_steps, a trainer.max_time cap, a stop signal), so a capped run goes on
    from where it stopped.
    The trainer gets its logger later (``trainer.logger``): it is built before the run has a record, so
    that a setting Lightning refuses is a config error, not a failed run."""
    callbacks = [*extra_callbacks, ProgressBar(refresh_rate=cfg.progress_refresh_steps),
                 *checkpoint_writers(run_dir / "checkpoints", float(cfg.checkpoint_every_s))]
    try:
        # use_distributed_sampler=False: the data modules' samplers shard the global batch themselves
        return L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=False, callbacks=callbacks,
                         default_root_dir=run_dir, plugins=[CheckedCheckpointIO()], use_distributed_sampler=False)
    except (MisconfigurationException, ValueError, TypeError) as error:
        raise ConfigError(f"trainer: {error}") from None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test the best and the last checkpoints, write the run record; return it.

    Config, data and checkpoint errors are raised before the run has a record; from the first record on,
    the process ends the run ``finished``, ``failed`` (with its error) or ``diverged``: only a killed process
    leaves it ``running`` (until it is resumed)."""
    validate(cfg)
    place = resolve_run(cfg)
    main = rank_zero_only.rank == 0  # under data parallelism, rank 0 alone writes the record and logs
    store = ResultsStore(cfg.paths.results_dir, writable=main)
    if (finished := finished_record(store, place, cfg)) is not None:
        print(f"run {place.run_id} is already finished (step {finished['metrics'].get('step')}); left as it is. "
              f"record: {store.path(place.run_id)}", flush=True)
        return finished
    stop = StopOnSignal.install()  # before the data load: a stop asked for meanwhile ends training at once
    L.seed_everything(cfg.seed, workers=True)
    datamodule = prepare_data(cfg)
    module = build_module(cfg, datamodule.spec)
    monitor, history = EfficiencyMonitor(cfg.measure_warmup_steps), ValidationHistory()
    stamp = RunStamp(OmegaConf.to_yaml(cfg, resolve=True), place.run_id, place.resumes)
    trainer = make_trainer(cfg, place.run_dir, [DivergenceGuard(cfg.progress_refresh_steps), monitor, history,
                                                RandomStateCheckpoint(), stamp, stop])
    if place.resume_from is not None and main:
        remove_orphans(place.resume_from.parent, place.resume_from, place.checkpoint)
    record = base_record(cfg, place, datamodule, module, store)
    store.save(record)
    logger = None
    try:
        logger = make_wandb_logger(cfg, place.run_id, place.run_dir, datamodule.spec.name) if main else None
        attach_logger(trainer, logger, record, place)
        with run_id_shared(place.run_id):
            trainer.fit(module, datamodule=datamodule, ckpt_path=place.resume_from, weights_only=True)
        # read before the tests: loading a checkpoint to test it restores the callbacks' states
        fitted = {"history": list(history.history),
                  "efficiency": {**monitor.summary(), "speed": speed_options(module, datamodule)}}
        metrics = test_checkpoints(cfg, trainer, module, datamodule, place)
    except DivergedError as error:
        finish_wandb(logger, exit_code=1)
        raise RunDiverged(diverged(store, record, error, trainer, place, history, monitor)) from None
    except BaseException as error:
        store.save({**record, "status": "failed", "error": describe_error(error)})
        finish_wandb(logger, exit_code=1)
        raise
    record.update(status="finished", metrics=metrics, **fitted,
                  paths={**record["paths"], "checkpoints": checkpoint_paths(trainer, place.resume_from)})
    record["metrics"]["step"] = trainer.global_step
    if logger is not None:
        efficiency = {f"efficiency/{key}": value for key, value in record["efficiency"].items() if key != "segments"}
        logger.experiment.summary.update({**metrics, **efficiency, "params": record["params"]})
    store.save(record)
    finish_wandb(logger, exit_code=0)
    if main:
        print_summary(record, store.path(place.run_id))
    return record


def attach_logger(trainer: L.Trainer, logger: WandbLogger | None, record: dict[str, Any], place: RunPlace) -> None:
    """Give the trainer its logger, the record the wandb run's location, and a resumed run's wandb run the
    validation history its checkpoint carries."""
    trainer.logger = logger
    record["paths"].update(wandb=run_location(logger), wandb_segments=wandb_segments(logger, place.run_dir))
    if place.checkpoint is not None:
        replay_history(logger, recorded_history(place.checkpoint))


def describe_error(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt | SystemExit):  # Lightning turns Ctrl-C into SystemExit(1)
        return f"interrupted ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"


def diverged(store: ResultsStore, record: dict[str, Any], error: DivergedError, trainer: L.Trainer,
             place: RunPlace, history: ValidationHistory, monitor: EfficiencyMonitor) -> str:
    """Record a diverged run; return the message that names the step and the last finite checkpoint."""
    _, last = checkpoint_callbacks(trainer)
    if last.last_model_path:
        finite = {"last_finite_checkpoint": last.last_model_path, "last_finite_step": last.saved_step}
    elif place.resume_from is not None:
        finite = {"last_finite_checkpoint": str(place.resume_from),
                  "last_finite_step": place.checkpoint.get("global_step")}
    else:
        finite = {"last_finite_checkpoint": None, "last_finite_step": None}
    (guard,) = (callback for callback in trainer.callbacks if isinstance(callback, DivergenceGuard))
    divergence = {"step": error.step, "checked_every": guard.check_every, **finite}
    path = store.save({**record, "status": "diverged", "error": str(error), "divergence": divergence,
                       "history": list(history.history), "efficiency": monitor.summary()})
    where = (f"last finite checkpoint: {finite['last_finite_checkpoint']} (step {finite['last_finite_step']})"
             if finite["last_finite_checkpoint"] else "no checkpoint was written before it")
    return (f"run {place.run_id} diverged: {error} (checked every {divergence['checked_every']} steps).\n"
            f"{where}; lower optimizer.lr or clip gradients (trainer.gradient_clip_val) and train again.\n"
            f"record: {path}")


def base_record(cfg: DictConfig, place: RunPlace, datamodule: lra.data.LRADataModule, module: LRAModule,
                store: ResultsStore) -> dict[str, Any]:
    previous = store.load(place.run_id) or {}
    return {
        "created": now(),  # kept in memory: the record is saved again at the end, and created means the start
        **previous,
        "run_id": place.run_id,
        "kind": "train",
        "status": "running",
        "task": datamodule.spec.name,
        "task_variant": cfg.task.get("variant"),
        "sequence_length": datamodule.spec.max_length,
        "attention": attention_choice(cfg).name,
        "preset": cfg.get("preset"),
        "seed": cfg.seed,
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "protocol": {
            "validation_split": datamodule.validation_split,
            "test_checkpoints": {"best": "highest val/acc", "last": "last training step"},
            "data_source": datamodule.describe_source(),
            "train_batches": datamodule.describe_batches(),
            "attention_padding": attention_choice(cfg).backend_class.padding_protocol,
        },
        "environment": environment(),
        "paths": {"run_dir": str(place.run_dir)},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "resumed": place.resumes,
    }


def test_checkpoints(cfg: DictConfig, trainer: L.Trainer, module: LRAModule, datamodule: lra.data.LRADataModule,
                     place: RunPlace) -> dict[str, Any]:
    best, _ = checkpoint_callbacks(trainer)
    metrics: dict[str, Any] = {"val/acc_best": _float(best.best_model_score)}
    if not should_test(cfg.test_after_fit, trainer):
        return metrics
    metrics["test/majority_acc"] = datamodule.majority_accuracy("test")
    for label, path in checkpoint_paths(trainer, place.resume_from).items():
        if not path:
            continue
        (result,) = trainer.test(module, datamodule=datamodule, ckpt_path=path, weights_only=True, verbose=False)
        metrics[f"test/acc@{label}"] = result["test/acc"]
        metrics[f"test/loss@{label}"] = result["test/loss"]
    return metrics


def should_test(setting: bool | str, trainer: L.Trainer) -> bool:
    """``test_after_fit``: true, false, or ``finished``: only when training reached ``trainer.max_steps``, not when a
    stop signal or a time cap ended it (it goes on later, and its tests would be spent on a checkpoint it replaces)."""
    return trainer.global_step >= trainer.max_steps if setting == "finished" else bool(setting)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint on a split with the config stored inside it; write an eval record."""
    check_top_level(cfg, "evaluate")
    if not cfg.get("ckpt"):
        raise ConfigError("evaluate.py needs ckpt=PATH (a .ckpt written by train.py)")
    checkpoint = load_checkpoint(cfg.ckpt)
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    run_cfg.paths = cfg.paths
    datamodule = prepare_data(run_cfg)
    module = build_module(run_cfg, datamodule.spec)
    module.load_state_dict(checkpoint["state_dict"])
    split = cfg.split
    if split not in datamodule.splits:
        raise ConfigError(f"split={split!r}; this task's splits: {', '.join(datamodule.splits)}")
    loader = datamodule.eval_dataloader(split)
    try:
        trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False,
                            precision=run_cfg.trainer.precision)
    except (MisconfigurationException, ValueError) as error:
        raise ConfigError(f"accelerator={cfg.accelerator!r}: {error}") from None
    (result,) = trainer.test(module, dataloaders=loader, verbose=False)
    run_id = checkpoint[RUN_ID_KEY]
    eval_id = f"{run_id}-{Path(cfg.ckpt).stem}-{split}"
    metrics = {f"{split}/acc": result["test/acc"], f"{split}/loss": result["test/loss"],
               f"{split}/majority_acc": datamodule.majority_accuracy(split)}
    record = {"run_id": eval_id, "kind": "eval", "source_run": run_id, "checkpoint": str(Path(cfg.ckpt).resolve()),
              "split": split, "task": datamodule.spec.name, "attention": attention_choice(run_cfg).name,
              "step": checkpoint.get("global_step"), "metrics": metrics,
              "environment": environment(), "config": OmegaConf.to_container(run_cfg, resolve=True)}
    path = ResultsStore(cfg.paths.results_dir, kind="evals").save(record)
    chance = 100 * record["metrics"][f"{split}/majority_acc"]
    print(f"{split} accuracy of {cfg.ckpt} (step {record['step']}): {100 * result['test/acc']:.2f}% "
          f"(always the most common label: {chance:.2f}%)\nrecord: {path}")
    return record
