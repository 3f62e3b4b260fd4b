"""Training loops side by side: the harness against a bare PyTorch loop, Lightning alone, and a lean ceiling.

For each task preset (``bench.loop.presets``: ``conf/experiment/<preset>.yaml`` with optional overrides, e.g.
``"lra/text task.max_length=1000"``) the runners train the preset's model on the preset's batches:

- ``lean``: the ceiling, the shortest fast loop a user would write by hand: the same architecture and
  parameter count (``LeanModel``), full-length random tokens, no padding mask, no dropout, flash SDPA,
  fused AdamW, the preset's autocast dtype, one batch reused.
- ``bare``: a plain loop over the harness's own model (``LRAClassifier``, compiled and unpadded as the
  harness would), data module, loader and optimizer: what the harness costs above it is its overhead.
- ``lightning``: the same model in a minimal ``LightningModule`` and ``lightning.Trainer`` (logging,
  checkpoints and progress bars off): Lightning's own overhead.
- ``harness``: ``lra.train.run.train`` on the composed preset, what ``python train.py experiment=PRESET``
  runs (wandb off, one validation after the timed steps); its steps/s is its own ``EfficiencyMonitor``'s.

A runner may carry train.py overrides after its name (``"harness task.bucket=true"``, ``"bare
model.unpad=false"``), applied to its config only; the label is the whole string. Each runner runs
``warmup_steps`` untimed steps (compilation, allocator growth), then ``steps`` timed ones, wall clock between
CUDA synchronisations, data loading included. Runners alternate for ``rounds`` rounds, each round starting
one runner later, so neither clock drift nor going first favours one.
"""

from __future__ import annotations

import contextlib
import gc
import math
import shlex
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lra.bench.measure import MIB, release
from lra.data import LRADataModule
from lra.data.base import TaskSpec
from lra.model import LRAClassifier, ModelConfig
from lra.model.embedding import sinusoidal_table
from lra.train.run import prepare_data, train

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass(frozen=True)
class LoopSettings:
    presets: tuple[str, ...] = ("lra/listops",)
    overrides: tuple[str, ...] = ()  # train.py overrides for every preset and runner (data sizes, sources)
    runners: tuple[str, ...] = ("lean", "bare", "lightning", "harness")
    warmup_steps: int = 20
    steps: int = 60
    rounds: int = 3
    budget_s: float | None = None  # once spent, no further runner starts; the files are still written
    seed: int = 0
    profile_steps: int = 0  # lean and bare: this many steps after the timed ones under torch.profiler (round 0)


@dataclass(frozen=True)
class LoopResult:
    preset: str
    runner: str
    round: int
    seconds_per_step: float
    peak_mib: float | None
    batch: int
    length: int
    params: int
    dtype: str
    attention: str
    heads: int
    head_dim: int
    note: str = ""
    profile: str = ""  # torch.profiler's table of the profiled steps, where they ran


@dataclass
class Preset:
    """One preset's composed config and what every runner shares."""

    label: str
    overrides: list[str]
    data_dir: Path
    spec: TaskSpec | None = None  # set once the cache is prepared

    def config(self, runner_overrides: list[str] = ()) -> DictConfig:
        paths = [f"paths.data_dir={self.data_dir}", f"paths.models_dir={self.data_dir / 'models'}",
                 f"paths.results_dir={self.data_dir / 'results'}"]
        return train_config([*self.overrides, *runner_overrides, *paths])


def parse_entry(entry: str) -> tuple[str, list[str]]:
    """``"NAME key=value ..."`` -> (NAME, overrides)."""
    name, *overrides = shlex.split(entry)
    return name, overrides


def train_config(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with overrides; inside ``python -m lra.bench`` Hydra already searches conf/."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_loops(settings: LoopSettings, device: torch.device,
              log: Callable[[str], None] = print) -> list[LoopResult]:
    runners = [parse_entry(entry) for entry in settings.runners]
    unknown = sorted({name for name, _ in runners} - set(RUNNERS))
    if unknown:
        raise ValueError(f"bench.loop.runners: unknown {', '.join(unknown)}; known: {', '.join(RUNNERS)}")
    deadline = time.monotonic() + settings.budget_s if settings.budget_s else math.inf
    results = []
    for entry in settings.presets:
        name, overrides = parse_entry(entry)
        with tempfile.TemporaryDirectory(prefix="lra-bench-loop-") as data_dir:
            preset = Preset(entry, [f"experiment={name}", *overrides, *settings.overrides], Path(data_dir))
            preset.spec = prepare_data(preset.config()).spec  # the cache, once, before any runner is timed
            for round_index in range(settings.rounds):
                shift = round_index % len(runners)
                for label, (runner, runner_overrides) in _rotated(settings.runners, runners, shift):
                    if time.monotonic() > deadline:
                        log(f"loop: bench.loop.budget_s spent, {entry} / {label} round {round_index} not run")
                        continue
                    profiled = replace(settings, profile_steps=settings.profile_steps if round_index == 0 else 0)
                    try:
                        result = RUNNERS[runner](preset, runner_overrides, profiled, device)
                    except Exception:  # one runner's failure (a preset it does not fit) must not lose the others
                        log(f"loop {entry} / {label} round {round_index} failed:\n{traceback.format_exc()}")
                        continue
                    finally:
                        gc.collect()  # trainers hold reference cycles: free their models before the next runner
                        release(device)
                    result = LoopResult(**{**vars(result), "runner": label, "round": round_index})
                    log(f"loop {entry} / {label} round {round_index}: {1 / result.seconds_per_step:.2f} steps/s, "
                        f"peak {None if result.peak_mib is None else round(result.peak_mib)} MiB")
                    results.append(result)
    return results


def _rotated(labels: tuple[str, ...], runners: list, shift: int) -> Iterator[tuple[str, tuple[str, list[str]]]]:
    pairs = list(zip(labels, runners, strict=True))
    yield from pairs[shift:] + pairs[:shift]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None


def _autocast(cfg: DictConfig, device: torch.device):
    dtype = AUTOCAST.get(str(cfg.precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _dtype_label(cfg: DictConfig) -> str:
    return {"bf16-mixed": "bf16", "16-mixed": "fp16"}.get(str(cfg.precision), "fp32")


def _optimizer(cfg: DictConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The preset's optimizer, fused on CUDA as the harness makes it."""
    factory = hydra.utils.instantiate(cfg.optimizer)
    fused = {"fused": True} if device.type == "cuda" and factory.func is torch.optim.AdamW else {}
    return factory(model.parameters(), **fused)


@dataclass(frozen=True)
class _Trained:
    """The harness's model on the device, how the harness would call it for training (compiled or not), and
    whether its training batches run packed (``LRAModule.on_fit_start`` decides the same way)."""

    model: LRAClassifier
    forward: Callable
    packs: bool


def _model(cfg: DictConfig, datamodule: LRADataModule, device: torch.device, seed: int) -> _Trained:
    torch.manual_seed(seed)
    config = ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
    model = LRAClassifier(datamodule.spec, config, cfg.attention.name,
                          {k: v for k, v in OmegaConf.to_container(cfg.attention, resolve=True).items()
                           if k != "name"}).to(device)
    mode = config.compile_mode(datamodule.spec, device, datamodule.training_shape())
    return _Trained(model, torch.compile(model, mode=mode) if mode else model, model.trains_packed(device, mode))


def _timed_steps(step: Callable[[dict | None], None], batches: Iterator[dict | None], settings: LoopSettings,
                 device: torch.device) -> tuple[float, str]:
    """Seconds per step over ``settings.steps`` steps after ``settings.warmup_steps``, and the profile of
    ``settings.profile_steps`` more (untimed: the profiler's own cost stays out of the speed)."""
    for _ in range(settings.warmup_steps):
        step(next(batches))
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(settings.steps):
        step(next(batches))
    _synchronize(device)
    seconds = (time.perf_counter() - start) / settings.steps
    return seconds, _profiled(step, batches, settings.profile_steps, device) if settings.profile_steps else ""


def _profiled(step: Callable[[dict | None], None], batches: Iterator[dict | None], steps: int,
              device: torch.device) -> str:
    """torch.profiler's operators of ``steps`` steps, by their own device time (CPU time on the CPU)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step(next(batches))
        _synchronize(device)
    order = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return f"{steps} steps\n" + profiler.key_averages().table(sort_by=order, row_limit=40)


def _forever(datamodule: LRADataModule) -> Iterator[dict]:
    epoch = 0
    while True:
        loader = datamodule.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _result(preset: Preset, cfg: DictConfig, seconds: float, peak: float | None, params: int,
            note: str = "") -> LoopResult:
    model = ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
    return LoopResult(preset.label, "", 0, seconds, peak, int(cfg.task.batch_size), preset.spec.max_length,
                      params, _dtype_label(cfg), cfg.attention.name, model.num_heads, model.head_dim, note)


def run_bare(preset: Preset, overrides: list[str], settings: LoopSettings, device: torch.device) -> LoopResult:
    cfg = preset.config(overrides)
    datamodule = prepare_data(cfg)
    trained = _model(cfg, datamodule, device, settings.seed)
    model = trained.model
    optimizer = _optimizer(cfg, model, device)
    model.train()
    _reset_peak(device)

    def step(batch: dict) -> None:
        batch = {key: value.to(device, non_blocking=True) for key, value in _with_packing(trained, batch).items()}
        with _autocast(cfg, device):
            logits = trained.forward(batch["inputs"], batch.get("padding_mask"), batch.get("packing"))
        F.cross_entropy(logits.float(), batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, profile = _timed_steps(step, _forever(datamodule), settings, device)
    return replace(_result(preset, cfg, seconds, _peak(device), _count(model)), profile=profile)


def _with_packing(trained: _Trained, batch: dict) -> dict:
    """The batch with its packing made on the host where it trains packed, as the harness's module does."""
    mask = batch.get("padding_mask")
    return batch if mask is None or not trained.packs else {**batch, "packing": trained.model.packing_for(mask)}


class _MinimalModule(L.LightningModule):
    def __init__(self, cfg: DictConfig, trained: _Trained):
        super().__init__()
        self.cfg = cfg
        self.model = trained.model
        self.__dict__["trained"] = trained  # the compiled callable outside the module tree, as the harness keeps it

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        return _with_packing(self.trained, batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        logits = self.trained.forward(batch["inputs"], batch.get("padding_mask"), batch.get("packing"))
        return F.cross_entropy(logits.float(), batch["labels"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return _optimizer(self.cfg, self.model, self.device)


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


def run_lightning(preset: Preset, overrides: list[str], settings: LoopSettings,
                  device: torch.device) -> LoopResult:
    cfg = preset.config(overrides)
    datamodule = prepare_data(cfg)
    trained = _model(cfg, datamodule, device, settings.seed)
    clock = _StepClock(settings.warmup_steps, device)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        precision=cfg.precision, max_steps=settings.warmup_steps + settings.steps,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    _reset_peak(device)
    trainer.fit(_MinimalModule(cfg, trained), train_dataloaders=datamodule.train_dataloader())
    return _result(preset, cfg, (clock.end - clock.start) / settings.steps, _peak(device), _count(trained.model))


def harness_overrides(settings: LoopSettings, device: torch.device) -> list[str]:
    """What turns a preset's train.py run into the timed span: its steps, one validation, no wandb."""
    steps = settings.warmup_steps + settings.steps
    return [f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}", f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}", "trainer.limit_val_batches=1",
            f"measure_warmup_steps={settings.warmup_steps}", "logger=none", "test_after_fit=false",
            f"seed={settings.seed}"]


def run_harness(preset: Preset, overrides: list[str], settings: LoopSettings, device: torch.device) -> LoopResult:
    cfg = preset.config([*overrides, *harness_overrides(settings, device)])
    record = train(cfg)
    efficiency = record["efficiency"]
    peak = efficiency["peak_memory_mib"] if efficiency["memory_kind"].startswith("cuda") else None
    note = "; ".join(f"{key}={value}" for key, value in efficiency["speed"].items())
    return _result(preset, cfg, 1 / efficiency["steps_per_s"], peak, record["params"], note)


class LeanModel(nn.Module):
    """The preset's architecture as a user would write it in a hurry: pre-norm blocks on flash SDPA, no
    padding mask, no dropout. Same parameters as ``LRAClassifier`` (the bench checks the count)."""

    def __init__(self, spec: TaskSpec, cfg: ModelConfig):
        super().__init__()
        width, qkv = cfg.d_model, cfg.qkv_dim or cfg.d_model
        self.heads, self.cls_pool, self.dual = cfg.num_heads, cfg.pooling == "cls", spec.dual
        self.nli = cfg.dual_interaction == "nli"
        length = spec.max_length + int(self.cls_pool)
        self.embed = nn.Embedding(spec.vocab_size, width) if spec.vocab_size else nn.Linear(1, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if self.cls_pool else None
        if cfg.pos_encoding == "learned":
            self.position = nn.Parameter(torch.randn(length, width) * 0.02)
        else:
            self.register_buffer("position", sinusoidal_table(length, width) * (cfg.pos_encoding != "none"))
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "norm1": nn.LayerNorm(width), "qkv": nn.Linear(width, 3 * qkv, bias=False),
            "out": nn.Linear(qkv, width, bias=False), "norm2": nn.LayerNorm(width),
            "mlp": nn.Sequential(nn.Linear(width, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, width)),
        }) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(width)
        features = width * (4 if cfg.dual_interaction == "nli" else 2) if spec.dual else width
        hidden = [nn.Linear(features, cfg.mlp_dim), nn.ReLU()]
        if spec.dual:
            hidden += [nn.Linear(cfg.mlp_dim, cfg.mlp_dim // 2), nn.ReLU()]
        self.head = nn.Sequential(*hidden, nn.Linear(hidden[-2].out_features, spec.num_classes))

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs if inputs.dtype == torch.long else inputs.unsqueeze(-1))
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        x = x + self.position[: x.shape[1]]
        for block in self.blocks:
            batch, length, _ = x.shape
            q, k, v = block["qkv"](block["norm1"](x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            x = x + block["out"](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
            x = x + block["mlp"](block["norm2"](x))
        x = self.norm(x)
        return x[:, 0] if self.cls_pool else x.mean(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.dual:
            return self.head(self.encode(inputs))
        u, v = self.encode(inputs.flatten(0, 1)).view(len(inputs), 2, -1).unbind(1)
        return self.head(torch.cat([u, v, u * v, u - v] if self.nli else [u, v], dim=-1))


def run_lean(preset: Preset, overrides: list[str], settings: LoopSettings, device: torch.device) -> LoopResult:
    if overrides:
        raise ValueError(f"bench.loop.runners: lean takes no overrides, got {' '.join(overrides)}")
    cfg = preset.config()
    spec = preset.spec
    torch.manual_seed(settings.seed)
    model = LeanModel(spec, ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))).to(device)
    harness_params = _count(LRAClassifier(spec, ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True)),
                                          cfg.attention.name))
    batch = int(cfg.task.batch_size)
    shape = (batch, 2, spec.max_length) if spec.dual else (batch, spec.max_length)
    inputs = (torch.randint(1, spec.vocab_size, shape, device=device) if spec.vocab_size
              else torch.rand(shape, device=device))
    labels = torch.randint(0, spec.num_classes, (batch,), device=device)
    optimizer = _optimizer(cfg, model, device)
    _reset_peak(device)

    def step(_: None) -> None:
        with _autocast(cfg, device):
            logits = model(inputs)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, profile = _timed_steps(step, iter(lambda: None, 1), settings, device)
    params = _count(model)
    note = "" if params == harness_params else f"parameters differ from the harness's {harness_params}"
    return replace(_result(preset, cfg, seconds, _peak(device), params, note), profile=profile)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


RUNNERS = {"lean": run_lean, "bare": run_bare, "lightning": run_lightning, "harness": run_harness}
