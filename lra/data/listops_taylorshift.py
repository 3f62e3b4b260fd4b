"""ListOps as TaylorShift (Nauen et al. 2024) generates it: ``task.variant=taylorshift`` of ``task=listops``.

FIRST and LAST join the operators, MED is the upper median, and every batch has one length drawn from
``[generator.min_length, generator.max_length]`` with trees grown to exactly that length, drawn afresh
every epoch (``num_train`` trees per epoch; the stream depends on the run seed and the epoch, so a
resumed run sees the same batches). Batches carry no padding: their width is the batch's length.
Validation and test are fixed sets (``generator_seed``) generated once in blocks of
``eval_batch_size`` trees that share a length, as TaylorShift's evaluation batches do. Vocabulary: 17
real tokens (ids 1..17). The LRA variant's source and batching options (``source_dir``, ``trim_padding``,
``bucket``, ``trim_eval``, ``pad_multiple``) do not apply.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lra.data import cache
from lra.data.base import BatchForm
from lra.data.generate.listops import TAYLORSHIFT_OPERATORS, ListOpsSettings, taylorshift_batch
from lra.data.listops import FORMAT_VERSION, TOKEN_ID, VOCAB, ListOpsDataModule
from lra.data.loader import ResumableBatchSampler


class FreshListOps(Dataset):
    """TaylorShift's training stream: every batch drawn afresh from (seed, its global batch position)."""

    form = BatchForm(trim=True)  # each batch has exactly its drawn length: nothing to pad

    def __init__(self, num_samples: int, settings: ListOpsSettings, seed: int):
        self.num_samples = num_samples
        self.settings = settings
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.seed}:{indices[0]}")
        length, trees = taylorshift_batch(rng, len(indices), self.settings)
        inputs = torch.tensor([[TOKEN_ID[t] for t in tokens] for tokens, _ in trees], dtype=torch.int64)
        labels = torch.tensor([value for _, value in trees], dtype=torch.int64)
        return {"inputs": inputs.reshape(len(indices), length), "labels": labels}


class EpochStampedSampler(ResumableBatchSampler):
    """In-order batches of ``epoch * num_samples + i``, so a fresh-data batch knows its epoch."""

    def batches(self) -> list[np.ndarray]:
        return [batch + self.epoch * self.num_samples for batch in super().batches()]


def taylorshift_eval_set(
    count: int,
    block: int,
    settings: ListOpsSettings,
    seed: str,
    max_length: int,
) -> dict[str, np.ndarray]:
    """A fixed evaluation set in blocks of ``block`` trees of one length (one evaluation batch each)."""
    inputs = np.zeros((count, max_length), dtype=np.uint8)
    lengths = np.zeros(count, dtype=np.int32)
    labels = np.zeros(count, dtype=np.int8)
    for start in range(0, count, block):
        size = min(block, count - start)
        length, trees = taylorshift_batch(random.Random(f"{seed}:{start}"), size, settings)
        for i, (tokens, value) in enumerate(trees, start=start):
            inputs[i, :length] = [TOKEN_ID[t] for t in tokens]
            lengths[i] = length
            labels[i] = value
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


class TaylorShiftListOpsDataModule(ListOpsDataModule):
    """``task.variant=taylorshift``: the LRA variant's options, its data generated the TaylorShift way."""

    variant = "taylorshift"
    operators = TAYLORSHIFT_OPERATORS

    def __init__(self, *, variant: str = "taylorshift", source: str = "auto", **options: Any):
        super().__init__(variant=variant, source=source, **options)
        if source == "release":
            raise ValueError("task.variant=taylorshift generates its data; task.source=release does not apply")
        if self.tokenizer != "lra":
            raise ValueError("task.variant=taylorshift generates token ids, not text: task.tokenizer does not apply")
        if self.generator.max_length > self.max_length:
            raise ValueError(
                f"task.generator.max_length {self.generator.max_length} exceeds task.max_length "
                f"{self.max_length}: TaylorShift trees have exactly their drawn length"
            )
        self.source = "generate"
        self.generated = True
        self.form = FreshListOps.form
        self.trim_eval = self.bucket = False  # LRA's batching options: these batches have one length each
        self.spec = replace(self.spec, vocab_size=len(VOCAB), pads=False, fixed_length=False)

    def build_cache(self) -> Path:
        self.source_label = (
            f"TaylorShift long_listops generator, lengths {self.generator.min_length}.."
            f"{self.generator.max_length}, fresh training trees every epoch"
        )
        settings = {
            "variant": self.variant,
            "max_length": self.max_length,
            "generator": self.generator.__dict__,
            "seed": self.generator_seed,
            "val": self.sizes["val"],
            "test": self.sizes["test"],
            "block": self.eval_batch_size,
        }

        def build(writer: cache.CacheWriter) -> None:
            for split in ("val", "test"):
                arrays = taylorshift_eval_set(
                    self.sizes[split],
                    self.eval_batch_size,
                    self.generator,
                    f"{self.generator_seed}:{split}",
                    self.max_length,
                )
                for field, array in arrays.items():
                    writer.save(f"{split}.{field}", array)

        return cache.prepared(
            self.data_dir,
            "listops",
            settings,
            [],
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": self.source_label},
        )

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.splits["train"] = FreshListOps(self.sizes["train"], self.generator, self.seed)

    def train_dataloader(self) -> DataLoader:
        sampler = EpochStampedSampler(self.sizes["train"], self.batch_size, shuffle=False, drop_last=True,
                                      **self.replicas())
        return self._loader(self.splits["train"], sampler)
