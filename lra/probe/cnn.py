"""A data learnability probe: does a small CNN learn an image-like task's prepared data?

The LRA Transformer can sit at chance on Pathfinder for a long time (a known plateau of LRA's own code),
so a flat curve from an attention model says nothing about whether the data are learnable. Linsley et al.
(2018) validated Pathfinder with CNNs; ``ProbeCNN`` does the same for our data: it trains on the cache and
splits that ``train.py`` would use, through the task's own data module, with no attention anywhere. Its
accuracy is a data check, not an LRA result.

``python -m lra.probe task=pathfinder ...`` runs it (``lra/probe/__main__.py``, ``conf/probe.yaml``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lra.data.base import LRADataModule
from lra.data.errors import DataError
from lra.results.environment import environment
from lra.results.files import write_json_atomic
from lra.results.records import now

PROBE_TASKS = ("image", "pathfinder")


def check_task(name: str | None) -> None:
    """Only the image-like tasks have a square grid of pixels for a CNN to look at."""
    if name not in PROBE_TASKS:
        accepted = " or ".join(f"task={t}" for t in PROBE_TASKS)
        raise DataError(f"probe takes {accepted} (the image tasks), got {f'task={name}' if name else 'no task'}")


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out), nn.ReLU())


class ProbeCNN(nn.Module):
    """A 9-layer CNN that checks that an image-like task's data are learnable; not an LRA model.

    Blocks of 3x3 convolution + BatchNorm + ReLU: 1->32 and 32->32 x3 at full resolution, max-pool,
    32->64 and 64->64 x2, max-pool, 64->64 x2, then global average pooling and a linear layer to the
    classes. Inputs are the task's flat row-major pixels, ``(B, side * side)``: token ids 0..255 or
    floats already divided by 255 (``task.pixels=floats``); both reach the network as ``pixel / 255``.
    """

    def __init__(self, num_classes: int, length: int):
        super().__init__()
        self.side = math.isqrt(length)
        if self.side * self.side != length:
            raise DataError(f"probe: {length} positions are not a square image")
        self.net = nn.Sequential(
            _block(1, 32), _block(32, 32), _block(32, 32), _block(32, 32), nn.MaxPool2d(2),
            _block(32, 64), _block(64, 64), _block(64, 64), nn.MaxPool2d(2),
            _block(64, 64), _block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        pixels = inputs if inputs.is_floating_point() else inputs.float() / 255.0
        return self.net(pixels.reshape(-1, 1, self.side, self.side))


class ProbeModule(L.LightningModule):
    """Cross-entropy training of ``ProbeCNN`` with AdamW; keeps one ``history`` entry per epoch."""

    def __init__(self, num_classes: int, length: int, lr: float):
        super().__init__()
        self.net = ProbeCNN(num_classes, length)
        self.lr = lr
        # validate_args=False: the checks read values back from the GPU, a sync on every step
        accuracy = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc, self.test_acc = accuracy, accuracy.clone()
        self.train_loss = MeanMetric()
        self.history: list[dict[str, float]] = []
        self.last_val_acc = float("nan")
        self.epoch_started = 0.0

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(batch["inputs"])
        return F.cross_entropy(logits.float(), batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.train_loss.update(loss.detach())
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_acc.update(self._loss(batch)[1], batch["labels"])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.test_acc.update(self._loss(batch)[1], batch["labels"])

    def on_train_epoch_start(self) -> None:
        self.epoch_started = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        self.last_val_acc = self.val_acc.compute().item()
        self.val_acc.reset()

    def on_train_epoch_end(self) -> None:
        # Lightning validates at the end of the training epoch, before this hook: both numbers are ready.
        entry = {"epoch": self.current_epoch + 1, "train_loss": self.train_loss.compute().item(),
                 "val_acc": self.last_val_acc, "seconds": time.perf_counter() - self.epoch_started}
        self.train_loss.reset()
        self.history.append(entry)
        print(f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, val acc {entry['val_acc']:.4f}, "
              f"{entry['seconds']:.1f} s", flush=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def _limit_train(datamodule: LRADataModule, max_train: int | None) -> None:
    """Keep the first ``max_train`` training examples; at least one full batch must remain."""
    train = datamodule.splits["train"]
    if max_train is not None:
        # Replacing the split keeps the data module's own loader (its sampler, seed and batch size).
        train = datamodule.splits["train"] = Subset(train, range(min(max_train, len(train))))
    if len(train) < datamodule.batch_size:  # the loader drops a last partial batch: no step would be taken
        raise DataError(f"probe: {len(train)} training examples, fewer than one batch "
                        f"(batch_size={datamodule.batch_size})")


def run_probe(datamodule: LRADataModule, *, epochs: int, lr: float = 1e-3, seed: int = 0,
              max_train: int | None = None) -> dict[str, object]:
    """Train ``ProbeCNN`` on the data module's train split for ``epochs``, validating after each; test the
    last weights. Returns the report's numbers (``history``, ``test_acc``, ``chance``: always answering the
    test split's most common label, ...).

    The batch size is the data module's. ``max_train`` keeps the first ``max_train`` training examples (a
    fair sample: both image tasks store train in a pseudo-random order).
    """
    check_task(datamodule.spec.name)
    if epochs < 1 or (max_train is not None and max_train < 1):
        raise DataError(f"probe: epochs and max_train must be at least 1, got {epochs} and {max_train}")
    datamodule.setup("fit")  # finds (or builds) and maps the cache, once per data module
    _limit_train(datamodule, max_train)
    L.seed_everything(seed, verbose=False)
    spec = datamodule.spec
    module = ProbeModule(spec.num_classes, spec.max_length, lr)
    precision = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=epochs, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return {
        "history": module.history,
        "test_acc": module.test_acc.compute().item(),
        "chance": datamodule.majority_accuracy("test"),
        "train_examples": len(datamodule.splits["train"]),
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "seconds": time.perf_counter() - started,
    }


def default_report_path(results_dir: Path, task: dict[str, object]) -> Path:
    """``<results>/probes/pathfinder-<resolution>-<difficulty>.json``, or ``<results>/probes/image.json``."""
    name = f"{task['name']}-{task['resolution']}-{task['difficulty']}" if task["name"] == "pathfinder" else task["name"]
    return results_dir / "probes" / f"{name}.json"


def write_report(path: Path, task: dict[str, object], datamodule: LRADataModule, settings: dict[str, object],
                 result: dict[str, object]) -> None:
    """The probe's JSON report, written atomically; its numbers are labelled a data check."""
    report = {
        "kind": "data probe (a small CNN; a check of the data, not an LRA result)",
        "task": task["name"],
        "task_settings": task,
        "data_source": datamodule.describe_source(),
        **settings,
        **result,
        "val_acc": [entry["val_acc"] for entry in result["history"]],
        "date": now(),
        "environment": environment(),
    }
    write_json_atomic(path, report)
