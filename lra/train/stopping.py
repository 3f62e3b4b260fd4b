"""Why training stops before ``max_steps``: a loss that stopped being finite, or a signal asking it to."""

from __future__ import annotations

import signal
import threading
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn


class DivergedError(RuntimeError):
    """Training produced a non-finite loss (or weights) at ``step``."""

    def __init__(self, step: int, what: str = "training loss"):
        super().__init__(f"non-finite {what} at step {step}")
        self.step = step


class DivergenceGuard(L.Callback):
    """Stops a run whose training loss stops being finite, before any checkpoint is written from it.

    Each step's loss is copied, on the device, into a window of ``check_every`` slots (one small copy: no host
    sync, no kernel beyond it); the host reads the window when it is full (every ``check_every`` steps, the
    progress bar's refresh interval, where the host waits for the device anyway), before every validation
    (where the weights are checked too) and when training stops. A run is so stopped at most ``check_every``
    steps after its loss went NaN or infinite, naming the first such step, and its checkpoints (written after
    validations) all hold finite weights. Under ``16-mixed`` an overflowing step that the grad scaler would
    skip also counts: such a loss is not a number to train on either.
    """

    def __init__(self, check_every: int):
        self.check_every = max(1, check_every)
        self.window: torch.Tensor | None = None
        self.steps: list[int] = []  # the step of each filled slot of the window

    def on_train_start(self, trainer, pl_module) -> None:
        self.window = torch.zeros(self.check_every, device=pl_module.device)
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or self.window is None:
            return
        self.window[len(self.steps)].copy_(loss.detach())
        self.steps.append(trainer.global_step)
        if len(self.steps) == self.check_every:
            self.check(trainer, pl_module, weights=False)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer, pl_module, weights=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self.check(trainer, pl_module, weights=True)  # before LastCheckpoint's final write

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule, weights: bool) -> None:
        """Raise ``DivergedError`` if any process saw a non-finite loss since the last check (one host sync,
        and one reduction across processes, which all reach the same checks at the same steps)."""
        finite = torch.isfinite(self.window[: len(self.steps)]) if self.window is not None else torch.ones(0)
        bad = (~finite).nonzero().flatten().tolist()
        steps, self.steps = self.steps, []
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            raise DivergedError(steps[bad[0]] if bad else trainer.global_step)
        if weights and not bool(torch.stack([p.isfinite().all() for p in pl_module.parameters()]).all()):
            raise DivergedError(trainer.global_step, "weights")


class StopOnSignal(L.Callback):
    """Stops training cleanly on SIGUSR1: the step under way ends, Lightning stops as at ``max_steps``
    (``LastCheckpoint`` writes ``last.ckpt`` when training ends), the checkpoints are tested if
    ``test_after_fit`` and the record is written. What a campaign sends before its wall-clock budget ends.

    Lightning's own SIGTERM handling raises ``SIGTERMException`` at the next batch instead and saves
    nothing, so a process stopped that way resumes from its last validation, not from where it stopped.
    Lightning claims SIGUSR1 only on SLURM with auto-requeue, and only where no handler is installed.
    """

    SIGNAL = signal.SIGUSR1

    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> StopOnSignal:
        """A callback whose handler listens from now on (signals reach only the main thread's handlers)."""
        callback = cls()
        if threading.current_thread() is threading.main_thread():
            signal.signal(cls.SIGNAL, callback.request)
        return callback

    def request(self, signum: int, frame: Any) -> None:
        self.requested = True

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        if self.requested:
            trainer.should_stop = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_requested(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_requested(trainer)
