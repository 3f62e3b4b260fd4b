"""The LightningModule: cross-entropy training of an ``LRAClassifier`` with torchmetrics accuracy."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_accuracy

from lra.data.base import LRADataModule, TaskSpec
from lra.model import LRAClassifier, ModelConfig

# The module packs batches before their copy because only it knows whether the model packs; Lightning warns
# whenever a module overrides this hook beside a data module, which is the design here.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule`")


class LRAModule(L.LightningModule):
    """Trains one classifier; logs ``train/loss``, ``train/acc`` (of the batch, every ``log_every_n_steps``),
    ``val/acc``, ``val/acc_best``, ``test/acc``."""

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
        self.spec = spec
        self.model_config = model
        # The compiled model for training steps, kept out of the module tree so that parameter names and
        # checkpoints stay those of the plain model; evaluation runs the plain model (its batches can be
        # trimmed to many widths, each a recompilation).
        self.__dict__["compiled"] = None
        self.speed: dict[str, Any] = {"compile": "off", "unpad": False, "unpad_eval": False}
        self.train_metrics: dict[str, float] = {}  # the last logged train/loss and train/acc
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # validate_args=False: the checks read values back from the GPU, a device sync on every step
        accuracy = partial(MulticlassAccuracy, spec.num_classes, average="micro", validate_args=False)
        self.val_acc, self.test_acc = accuracy(), accuracy()
        # Metric objects, so that under data-parallel training every rank reports the whole split's numbers:
        # torchmetrics reduces their states over the processes when they are computed.
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["inputs"], batch.get("padding_mask"), batch.get("packing"))

    def on_before_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict:
        """A padded batch that runs packed (training: ``speed["unpad"]``; evaluation: ``speed["unpad_eval"]``)
        gets its packing here, on the host, where the mask is: made on the GPU it would read the token count back
        and stall the host on every step."""
        mask = batch.get("padding_mask")
        packs = self.speed["unpad"] if self.trainer.training else self.speed["unpad_eval"]
        return batch if mask is None or not packs else {**batch, "packing": self.model.packing_for(mask)}

    def setup(self, stage: str) -> None:
        self.speed["unpad_eval"] = self.model.packs_on(self.trainer.strategy.root_device)

    def _step(self, batch: dict[str, torch.Tensor],
              model: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = (self.model if model is None else model)(batch["inputs"], batch.get("padding_mask"),
                                                          batch.get("packing"))
        return F.cross_entropy(logits.float(), batch["labels"]), logits

    def on_fit_start(self) -> None:
        device = self.trainer.strategy.root_device
        datamodule = getattr(self.trainer, "datamodule", None)
        shape = datamodule.training_shape() if isinstance(datamodule, LRADataModule) else None
        mode = self.model_config.compile_mode(self.spec, device, shape)
        if mode is not None and self.compiled is None:
            self.__dict__["compiled"] = self._compiled_or_none(mode, device, self.model.trains_packed(device, mode))
            self.speed["compile"] = self.speed["compile"] if self.compiled is None else f"on ({mode})"
        # in CUDA graphs a padded task trains padded; eager (or if compilation failed), packed where it can
        self.speed["unpad"] = self.model.trains_packed(device, None if self.compiled is None else mode)

    def _compiled_or_none(self, mode: str, device: torch.device, packs: bool) -> Callable | None:
        """The compiled model after one probe step on a batch like the training ones (its shape, a padding mask
        where the task pads, packed if ``packs``; forward and backward, random state untouched, gradients
        cleared), or None with a one-line message if compilation fails: training then runs eager."""
        compiled = torch.compile(self.model, mode=mode)
        datamodule = getattr(self.trainer, "datamodule", None)
        batch = getattr(datamodule, "batch_size", 1)
        shape = (batch, 2, self.spec.max_length) if self.spec.dual else (batch, self.spec.max_length)
        dtype = torch.long if self.spec.vocab_size is not None else torch.float32
        mask = torch.zeros(shape, dtype=torch.bool) if self.spec.pads else None
        packing = self.model.packing_for(mask).to(device) if packs and mask is not None else None
        inputs = torch.ones(shape, dtype=dtype, device=device)  # token 1: a real byte or symbol in every task
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                with self.trainer.precision_plugin.forward_context():
                    logits = compiled(inputs, None if mask is None else mask.to(device), packing)
                logits.float().sum().backward()
        except Exception as error:  # any compiler failure: train eager rather than not at all
            reason = f"{type(error).__name__}: {next(iter(str(error).strip().splitlines()), '')}"[:200]
            print(f"model.compile={self.model_config.compile}: torch.compile failed ({reason}); training eager",
                  file=sys.stderr, flush=True)
            self.speed["compile"] = f"failed ({reason})"
            return None
        finally:
            self.model.zero_grad(set_to_none=True)
        return compiled

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._step(batch, self.compiled)
        if (self.trainer.global_step + 1) % max(self.trainer.log_every_n_steps, 1) == 0:
            self._log_training(loss, logits, batch["labels"])
        return loss

    def _log_training(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """The batch's loss and accuracy, every ``log_every_n_steps``: read back once, sent to the logger and kept
        in ``train_metrics`` (the progress bar and the validation history read them there). Not through
        ``self.log``: Lightning turns every value in its result collection into a number at the end of every
        later step, a device sync per step that stalls the host on the GPU (about 1 ms a step on an H200)."""
        accuracy = multiclass_accuracy(logits, labels, self.spec.num_classes, average="micro", validate_args=False)
        values = torch.stack([loss.detach().float(), accuracy.float()]).tolist()
        self.train_metrics = dict(zip(("train/loss", "train/acc"), values, strict=True))
        if self.logger is not None:  # at the step Lightning gives its own logged values, and the validation after
            self.logger.log_metrics(self.train_metrics, step=self.trainer.global_step)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_acc(logits, batch["labels"])
        self.val_loss.update(loss, weight=len(logits))
        self.log("val/loss", self.val_loss, on_epoch=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.test_acc(logits, batch["labels"])
        self.test_loss.update(loss, weight=len(logits))
        self.log("test/loss", self.test_loss, on_epoch=True)
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
