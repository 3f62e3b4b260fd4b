"""The LightningModule: cross-entropy training of an ``LRAClassifier`` with torchmetrics accuracy."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from lra.data.base import TaskSpec
from lra.model import LRAClassifier, ModelConfig


class LRAModule(L.LightningModule):
    """Trains one classifier; logs ``train/loss``, ``train/acc``, ``val/acc``, ``val/acc_best``, ``test/acc``."""

    def __init__(
        self,
        spec: TaskSpec,
        model: ModelConfig,
        attention: str,
        attention_options: dict,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[[Optimizer, int], LRScheduler] | None = None,
    ):
        super().__init__()
        self.model = LRAClassifier(spec, model, attention, attention_options)
        if model.compile:
            self.model.compile()  # in place: parameter names (and checkpoints) stay those of the plain model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # validate_args=False: the checks read values back from the GPU, a device sync on every step
        accuracy = partial(MulticlassAccuracy, spec.num_classes, average="micro", validate_args=False)
        self.train_acc, self.val_acc, self.test_acc = accuracy(), accuracy(), accuracy()
        self.val_acc_best = MaxMetric()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["inputs"], batch.get("padding_mask"))

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return F.cross_entropy(logits.float(), batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._step(batch)
        self.train_acc(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_acc(logits, batch["labels"])
        self.log("val/loss", loss, on_epoch=True, batch_size=len(logits))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.test_acc(logits, batch["labels"])
        self.log("test/loss", loss, on_epoch=True, batch_size=len(logits))
        self.log("test/acc", self.test_acc, on_epoch=True)

    def configure_optimizers(self):
        factory = self.optimizer_factory
        if (self.device.type == "cuda" and isinstance(factory, partial) and factory.func is torch.optim.AdamW
                and "fused" not in factory.keywords):
            factory = partial(factory, fused=True)  # one kernel for all parameters instead of one per tensor
        optimizer = factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, self.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
