"""The validation history of a run: kept at each validation, carried in its checkpoints, for the record's curves."""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidationHistory(L.Callback):
    """Keeps (step, val/acc, val/loss, train/loss) at each validation, for the run record's curves."""

    def __init__(self):
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {**trainer.callback_metrics, **pl_module.train_metrics}
        point = {"step": trainer.global_step}
        for key in ("val/acc", "val/loss", "train/loss"):
            if key in metrics:
                point[key] = round(float(metrics[key]), 6)
        self.history.append(point)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])



def recorded_history(checkpoint: dict[str, Any]) -> list[dict[str, float]]:
    """The validation history a checkpoint carries (``ValidationHistory``'s state)."""
    state = checkpoint.get("callbacks", {}).get(ValidationHistory.__qualname__, {})
    return list(state.get("history", []))
