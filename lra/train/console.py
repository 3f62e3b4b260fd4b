"""What a run shows on the console: its progress bar, and once finished its accuracy against the majority label,
throughput, memory and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Lightning's bar, with the ``LRAModule``'s last logged training values (``train_metrics``, host numbers:
    reading them costs no device sync)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return {**super().get_metrics(trainer, pl_module), **pl_module.train_metrics}


def _share(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.0f}%"


def _throughput(eff: dict[str, Any]) -> str:
    if not eff.get("measured_steps"):
        return f"not measured: no step came after the {eff.get('warmup_steps')} warm-up steps (measure_warmup_steps)"
    return (f"{eff['samples_per_s']} samples/s, {eff['tokens_per_s']} tokens/s (real), "
            f"{eff['padded_tokens_per_s']} tokens/s (padded), over {eff['measured_steps']} steps")


def print_summary(record: dict[str, Any], record_path: Path) -> None:
    """A finished run's lines on the console, from its record."""
    eff, metrics, checkpoints = record["efficiency"], record["metrics"], record["paths"]["checkpoints"]
    pct = lambda key: f"{100 * metrics[key]:.2f}%" if metrics.get(key) is not None else "n/a"  # noqa: E731
    memory = "peak GPU memory of training (max allocated)" if eff["memory_kind"].startswith("cuda") else \
        "peak RSS (CPU)"
    wandb = record["paths"].get("wandb_segments") or [record["paths"].get("wandb") or "off"]
    lines = [
        f"run {record['run_id']}: {record['task']} / {record['attention']}  ({record['params']:,} parameters, "
        f"{metrics['step']} steps, validation split: {record['protocol']['validation_split']})",
        f"  test accuracy: {pct('test/acc@best')} (best-val checkpoint), {pct('test/acc@last')} (last);"
        f" always the most common label: {pct('test/majority_acc')}; best val accuracy {pct('val/acc_best')}",
        f"  throughput: {_throughput(eff)}; validation {_share(eff.get('validation_fraction'))} of "
        f"{eff.get('fit_seconds')} s training",
        f"  {memory}: {eff['peak_memory_mib']} MiB",
        f"  checkpoints: {checkpoints['best'] or '-'} (best), {checkpoints['last']} (last)",
        f"  record: {record_path}",
        f"  wandb: {', '.join(wandb)}",
    ]
    print("\n".join(lines), flush=True)
