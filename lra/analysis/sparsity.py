"""Part 2 of ``python -m lra.analysis sparse``: how sparse the attention of trained checkpoints is.

For each checkpoint (written by ``train.py``), a few batches of random examples of its own task go through
the model in evaluation mode. A forward pre-hook on every encoder block's attention core receives the q, k
and padding mask the backend gets and rebuilds its weights (``lra.analysis.weights``); the backends' code is
not touched and their output is not changed. Per real query row, over real keys:

* ``k`` = how many keys hold ``mass`` (0.9) of the row's weight, the largest first: the row's effective
  number of non-zeros at that precision;
* a key's column load = in how many rows' ``mass`` sets it lies: the column side of the result's sparsity;
* the effective support ``exp(entropy)`` of the row.

A head is in the regime the sparse-approximation result covers when the 90th percentile of ``k`` over rows
and the 90th percentile of the column load over keys are both at most ``max_nonzeros`` (the largest s that
part 1 measures): a bounded number of non-zeros in each row and column, up to the ``1 - mass`` of each row
it leaves out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lra.analysis.weights import weight_function
from lra.attention.base import AttentionBackend
from lra.train.checkpoints import CONFIG_KEY, load_checkpoint
from lra.train.identity import RUN_ID_KEY
from lra.train.run import build_module, prepare_data


@dataclass(frozen=True)
class SparsitySettings:
    split: str = "test"
    batches: int = 2
    batch_size: int = 8
    seed: int = 0
    mass: float = 0.9
    max_nonzeros: int = 8


@dataclass
class HeadRecord:
    """What one (layer, head) showed over every example: per real row and per real key."""

    row_k: list[torch.Tensor] = field(default_factory=list)
    column_load: list[torch.Tensor] = field(default_factory=list)
    effective: list[torch.Tensor] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def row_sparsity(weights: torch.Tensor, mass: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For (n, n) row-stochastic weights: per row the number of keys holding ``mass`` of its weight (largest
    first), per key the number of rows whose ``mass`` set holds it, per row ``exp(entropy)``."""
    ordered, order = weights.sort(-1, descending=True)
    cumulative = ordered.cumsum(-1)
    k = (cumulative < mass * cumulative[..., -1:]).sum(-1) + 1
    in_set = torch.arange(weights.shape[-1], device=weights.device) < k[..., None]
    member = torch.zeros_like(in_set).scatter_(-1, order, in_set)
    effective = torch.special.entr(weights).sum(-1).exp()
    return k, member.sum(-2), effective


class SparsityProbe:
    """Forward pre-hooks on the attention cores of ``model.encoder.blocks`` that record ``row_sparsity`` per
    layer and head; a context manager (the hooks go when it exits)."""

    def __init__(self, model: nn.Module, mass: float):
        self.cores = [(layer, block.attn.core) for layer, block in enumerate(model.encoder.blocks)]
        for _, core in self.cores:
            weight_function(core)  # an unsupported backend fails before any batch runs
        self.mass = mass
        self.heads: dict[tuple[int, int], HeadRecord] = defaultdict(HeadRecord)
        self._handles: list[Any] = []

    def __enter__(self) -> SparsityProbe:
        self._handles = [core.register_forward_pre_hook(self._recorder(layer), with_kwargs=True)
                         for layer, core in self.cores]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _recorder(self, layer: int):
        def record(core: AttentionBackend, args: tuple, kwargs: dict) -> None:
            q, k = args[0], args[1]
            mask = kwargs.get("key_padding_mask", args[3] if len(args) > 3 else None)
            weights_of = weight_function(core)
            for b in range(q.shape[0]):  # one example at a time: (heads, n, n) is the largest tensor
                real = torch.ones(q.shape[-2], dtype=torch.bool, device=q.device) if mask is None else ~mask[b]
                qb, kb = q[b : b + 1, :, real].float(), k[b : b + 1, :, real].float()
                weights = weights_of(core, qb, kb, None)[0]
                for head in range(weights.shape[0]):
                    row_k, load, effective = row_sparsity(weights[head], self.mass)
                    entry = self.heads[(layer, head)]
                    entry.row_k.append(row_k.cpu())
                    entry.column_load.append(load.cpu())
                    entry.effective.append(effective.cpu())
                    entry.lengths.append(int(real.sum()))

        return record

    def summary(self, max_nonzeros: int) -> list[dict[str, Any]]:
        rows = []
        for (layer, head), entry in sorted(self.heads.items()):
            k = torch.cat(entry.row_k).double()
            load = torch.cat(entry.column_load).double()
            fraction = torch.cat([r / n for r, n in zip(entry.row_k, entry.lengths, strict=True)]).double()
            k_p90, load_p90 = float(k.quantile(0.9)), float(load.quantile(0.9))
            rows.append({
                "layer": layer, "head": head, "rows": len(k), "mean_length": float(np.mean(entry.lengths)),
                "k_mean": float(k.mean()), "k_median": float(k.median()), "k_p90": k_p90, "k_max": int(k.max()),
                "k_fraction_median": float(fraction.median()), "column_p90": load_p90,
                "column_max": int(load.max()), "effective_median": float(torch.cat(entry.effective).median()),
                "rows_within": float((k <= max_nonzeros).double().mean()),
                "columns_within": float((load <= max_nonzeros).double().mean()),
                "in_regime": k_p90 <= max_nonzeros and load_p90 <= max_nonzeros,
            })
        return rows


def checkpoint_sparsity(path: str | Path, paths: DictConfig, settings: SparsitySettings,
                        device: torch.device) -> list[dict[str, Any]]:
    """One row per (layer, head) of the checkpoint at ``path``, on random examples of its task's split."""
    checkpoint = load_checkpoint(path)
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    run_cfg.paths = paths
    run_cfg.model.compile = False  # hooks on the eager modules
    run_cfg.model.unpad = False  # padded batches through core.forward, whose hook sees q, k and the mask
    datamodule = prepare_data(run_cfg)
    if settings.split not in datamodule.splits:
        raise ValueError(f"split={settings.split!r}; this task's splits: {', '.join(datamodule.splits)}")
    module = build_module(run_cfg, datamodule.spec)
    module.load_state_dict(checkpoint["state_dict"])
    model = module.model.to(device).eval()
    split = datamodule.splits[settings.split]
    count = min(len(split), settings.batches * settings.batch_size)
    chosen = np.random.default_rng(settings.seed).choice(len(split), size=count, replace=False)
    with SparsityProbe(model, settings.mass) as probe, torch.no_grad():
        for indices in np.array_split(chosen, -(-count // settings.batch_size)):
            batch = split.__getitems__(indices.tolist())
            mask = batch.get("padding_mask")
            model(batch["inputs"].to(device), None if mask is None else mask.to(device))
    if not probe.heads:
        raise RuntimeError(f"{path}: no attention weights were captured (the cores' forward never ran)")
    context = {"checkpoint": str(path), "run_id": checkpoint.get(RUN_ID_KEY), "task": datamodule.spec.name,
               "attention": run_cfg.attention.name, "step": checkpoint.get("global_step"),
               "head_dim": model.encoder.blocks[0].attn.head_dim, "split": settings.split,
               "mass": settings.mass, "max_nonzeros": settings.max_nonzeros}
    return [{**context, **row} for row in probe.summary(settings.max_nonzeros)]
