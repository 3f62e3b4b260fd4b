"""Training-loop overhead: the same model, data and optimizer under a bare PyTorch loop and under Lightning.

The harness's loop should come within 5% of a bare loop's steps/s. Both runners train an
``LRAClassifier`` with LRA's released ListOps Transformer settings (emb 512, 8 heads, 4 layers, mlp
1024, N=2000, batch 32: shared/reference/published.md §2.1) under bf16 autocast, SDPA attention and
fused AdamW, on real ListOps batches (LRA's generator through ``lra.data.listops``' data module and
loader, in a temporary folder). Each runner builds the model from the same seed, runs ``warmup_steps``,
then times ``steps`` steps by wall clock between CUDA synchronisations (data loading included, as in
training). Runners alternate for ``rounds`` rounds, each round starting one runner later, so neither
drift in clock speed nor going first favours one of them.

Runners: ``bare`` (a plain loop), ``lightning`` (a minimal ``LightningModule`` in ``lightning.Trainer``
with logging, checkpointing and progress bars off: Lightning's own overhead) and ``harness``
(``lra.train.run.train``, what ``python train.py`` runs: ``LRAModule`` with its metrics and logging
calls, the progress bar, the efficiency monitor, one validation and its checkpoints after the timed
steps; wandb off, constant learning rate). The harness's steps/s is its own ``EfficiencyMonitor``'s
(``record['efficiency']``), timed over the same steps.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from lra.bench.measure import MIB, release
from lra.bench.workloads import precision
from lra.data.listops import ListOpsDataModule
from lra.model import LRAClassifier, ModelConfig
from lra.train.run import train

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PRECISIONS = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}
ADAMW_BETAS, ADAMW_EPS, ADAMW_WEIGHT_DECAY = (0.9, 0.98), 1e-9, 0.01


@dataclass(frozen=True)
class LoopSettings:
    attention: str = "softmax"
    d_model: int = 512
    heads: int = 8
    layers: int = 4
    mlp_dim: int = 1024
    length: int = 2000
    min_length: int = 500  # ListOps examples are drawn with min_length < length < length (LRA: 500, 2000)
    dropout: float = 0.1
    attention_dropout: float = 0.1  # LRA's released ListOps Transformer (conf/model/lra_base.yaml)
    batch_size: int = 32
    dtype: str = "bf16"
    warmup_steps: int = 10
    steps: int = 50
    rounds: int = 3
    runners: tuple[str, ...] = ("bare", "lightning", "harness")
    num_workers: int = 0
    lr: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class LoopResult:
    runner: str
    round: int
    seconds_per_step: float
    peak_mib: float | None


def run_loops(settings: LoopSettings, device: torch.device,
              log: Callable[[str], None] = print) -> list[LoopResult]:
    unknown = sorted(set(settings.runners) - set(RUNNERS))
    if unknown:
        raise ValueError(f"bench.loop.runners: unknown {', '.join(unknown)}; known: {', '.join(RUNNERS)}")
    with tempfile.TemporaryDirectory(prefix="lra-bench-listops-") as data_dir:
        data = _data(settings, Path(data_dir))
        results = []
        runners = list(settings.runners)
        for round_index in range(settings.rounds):
            shift = round_index % len(runners)
            for runner in runners[shift:] + runners[:shift]:
                result = RUNNERS[runner](settings, data, device, round_index)
                gc.collect()  # the trainer holds reference cycles; free its model before the next runner
                release(device)
                log(f"loop {runner} round {round_index}: {1 / result.seconds_per_step:.2f} steps/s, "
                    f"peak {result.peak_mib if result.peak_mib is None else round(result.peak_mib)} MiB")
                results.append(result)
        return results


def _data(settings: LoopSettings, data_dir: Path) -> ListOpsDataModule:
    total = settings.batch_size * (settings.warmup_steps + settings.steps)
    data = ListOpsDataModule(data_dir=data_dir, batch_size=settings.batch_size,
                             num_workers=settings.num_workers, source="generate", max_length=settings.length,
                             num_train=total,
                             num_val=settings.batch_size, num_test=settings.batch_size,
                             generator={"min_length": settings.min_length, "max_length": settings.length})
    data.prepare_data()
    data.setup("fit")
    return data


def _model(settings: LoopSettings, data: ListOpsDataModule, device: torch.device) -> LRAClassifier:
    torch.manual_seed(settings.seed)
    config = ModelConfig(d_model=settings.d_model, num_layers=settings.layers, num_heads=settings.heads,
                         mlp_dim=settings.mlp_dim, dropout=settings.dropout,
                         attention_dropout=settings.attention_dropout)
    return LRAClassifier(data.spec, config, settings.attention).to(device)


def _optimizer(model: torch.nn.Module, settings: LoopSettings, device: torch.device) -> torch.optim.Optimizer:
    """The harness's AdamW (conf/optimizer/adamw.yaml), fused on CUDA as the harness makes it."""
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=ADAMW_BETAS, eps=ADAMW_EPS,
                             weight_decay=ADAMW_WEIGHT_DECAY, fused=device.type == "cuda")


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
          dtype: str) -> torch.Tensor:
    with precision(device, dtype):
        logits = model(batch["inputs"], batch.get("padding_mask"))
    return F.cross_entropy(logits.float(), batch["labels"])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_bare(settings: LoopSettings, data: ListOpsDataModule, device: torch.device,
             round_index: int) -> LoopResult:
    model = _model(settings, data, device)
    optimizer = _optimizer(model, settings, device)
    model.train()
    _reset_peak(device)
    start = 0.0
    for step, batch in enumerate(data.train_dataloader()):
        if step == settings.warmup_steps:
            _synchronize(device)
            start = time.perf_counter()
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        _loss(model, batch, device, settings.dtype).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return LoopResult("bare", round_index, (time.perf_counter() - start) / settings.steps, _peak(device))


class _MinimalModule(L.LightningModule):
    def __init__(self, model: LRAClassifier, settings: LoopSettings):
        super().__init__()
        self.model = model
        self.settings = settings

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        logits = self.model(batch["inputs"], batch.get("padding_mask"))
        return F.cross_entropy(logits.float(), batch["labels"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return _optimizer(self.model, self.settings, self.device)


class _StepClock(L.Callback):
    """Starts the clock at the first timed step and stops it after the last."""

    def __init__(self, warmup_steps: int, device: torch.device):
        self.warmup_steps = warmup_steps
        self.device = device
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:
        if trainer.global_step == self.warmup_steps:
            _synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        _synchronize(self.device)
        self.end = time.perf_counter()


def run_lightning(settings: LoopSettings, data: ListOpsDataModule, device: torch.device,
                  round_index: int) -> LoopResult:
    module = _MinimalModule(_model(settings, data, device), settings)
    clock = _StepClock(settings.warmup_steps, device)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        precision=PRECISIONS[settings.dtype],
                        max_steps=settings.warmup_steps + settings.steps,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    _reset_peak(device)
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return LoopResult("lightning", round_index, (clock.end - clock.start) / settings.steps, _peak(device))


def harness_overrides(settings: LoopSettings, data_dir: Path, device: torch.device) -> list[str]:
    """``train.py`` overrides that train the same model on the same batches as the other runners."""
    steps = settings.warmup_steps + settings.steps
    return [
        "task=listops", "task.source=generate", f"task.max_length={settings.length}",
        f"task.num_train={settings.batch_size * steps}", f"task.num_val={settings.batch_size}",
        f"task.num_test={settings.batch_size}", f"task.generator.min_length={settings.min_length}",
        f"task.generator.max_length={settings.length}", f"task.batch_size={settings.batch_size}",
        f"task.num_workers={settings.num_workers}",
        f"attention={settings.attention}", "model=lra_base", f"model.d_model={settings.d_model}",
        f"model.qkv_dim={settings.d_model}", f"model.num_layers={settings.layers}",
        f"model.num_heads={settings.heads}", f"model.mlp_dim={settings.mlp_dim}",
        f"model.dropout={settings.dropout}", f"model.attention_dropout={settings.attention_dropout}",
        "optimizer=adamw", f"optimizer.lr={settings.lr}", "scheduler=constant",
        f"trainer={'gpu' if device.type == 'cuda' else 'cpu'}", f"precision={PRECISIONS[settings.dtype]}",
        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", "trainer.limit_val_batches=1",
        f"measure_warmup_steps={settings.warmup_steps}", "logger=none", "test_after_fit=false",
        f"seed={settings.seed}", f"paths.data_dir={data_dir}", f"paths.models_dir={data_dir / 'models'}",
        f"paths.results_dir={data_dir / 'results'}",
    ]


def _train_config(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with overrides; inside ``python -m lra.bench`` Hydra already searches conf/."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_harness(settings: LoopSettings, data: ListOpsDataModule, device: torch.device,
                round_index: int) -> LoopResult:
    record = train(_train_config(harness_overrides(settings, data.data_dir, device)))
    efficiency = record["efficiency"]
    peak = efficiency["peak_memory_mib"] if efficiency["memory_kind"].startswith("cuda") else None
    return LoopResult("harness", round_index, 1 / efficiency["steps_per_s"], peak)


RUNNERS = {"bare": run_bare, "lightning": run_lightning, "harness": run_harness}
