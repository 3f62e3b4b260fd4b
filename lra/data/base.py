"""What every task hands the model: a ``TaskSpec`` and batches of one fixed form.

A batch is a dict:
    ``inputs``: ``(B, N)`` int64 token ids (0 = padding) or float32 values; ``(B, 2, N)`` for dual tasks
        (Retrieval: two documents per example).
    ``padding_mask``: same shape as ``inputs``, ``True`` where the position is padding; absent for tasks
        whose inputs never pad (Image, Pathfinder), so attention can take its mask-free fast path.
    ``labels``: ``(B,)`` int64.

Splits live in a prepared cache (``lra.data.cache``): per split, ``inputs`` ``(n, [2,] N)``,
``lengths`` ``(n, [2])`` and ``labels`` ``(n,)`` arrays, memory-mapped, so workers share pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lra.data.loader import ResumableBatchSampler, ResumableDataLoader

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """What the model must know about a task's inputs and outputs."""

    name: str
    num_classes: int
    max_length: int  # positions per document
    vocab_size: int | None  # token ids 0..vocab_size-1 with 0 = padding; None for float inputs
    dual: bool = False  # two documents per example (Retrieval)
    pads: bool = True  # whether any example is shorter than max_length


class CachedSplit(Dataset):
    """One split of a prepared cache, memory-mapped; fetched a whole batch at a time."""

    def __init__(self, directory: Path, split: str, spec: TaskSpec, float_inputs: bool = False):
        self.inputs = np.load(directory / f"{split}.inputs.npy", mmap_mode="r")
        self.lengths = np.load(directory / f"{split}.lengths.npy", mmap_mode="r")
        self.labels = np.load(directory / f"{split}.labels.npy", mmap_mode="r")
        if not (len(self.inputs) == len(self.lengths) == len(self.labels)):
            raise ValueError(f"cache {directory} split {split}: arrays disagree in length; delete it to rebuild")
        self.spec = spec
        self.float_inputs = float_inputs

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        order = np.sort(np.asarray(indices))  # sorted reads are sequential on the memory map
        back = np.argsort(np.argsort(np.asarray(indices)))
        inputs = torch.from_numpy(np.asarray(self.inputs[order])[back].astype(np.int64))
        if self.float_inputs:
            inputs = inputs.float().div_(255.0)
        batch = {"inputs": inputs, "labels": torch.from_numpy(np.asarray(self.labels[order])[back].astype(np.int64))}
        if self.spec.pads:
            lengths = torch.from_numpy(np.asarray(self.lengths[order])[back].astype(np.int64))
            positions = torch.arange(inputs.shape[-1])
            batch["padding_mask"] = positions >= lengths[..., None]
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


class LRADataModule(L.LightningDataModule):
    """Base of every task: ``prepare_data`` builds the cache once, ``setup`` memory-maps it.

    Subclasses set ``spec`` and implement ``build_cache() -> Path`` (find or generate the source,
    tokenise, write the cache atomically; return its directory). Validation split naming: the split
    that serves as validation is reported by ``validation_split`` (IMDB validates on test, as LRA did).
    """

    spec: TaskSpec
    validation_split: str = "val"
    float_inputs: bool = False

    def __init__(self, *, data_dir: str | Path, batch_size: int, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir: Path | None = None
        self.splits: dict[str, CachedSplit] = {}

    def build_cache(self) -> Path:
        raise NotImplementedError

    def describe_source(self) -> dict[str, object]:
        """What the data came from, for the run record (overridden by tasks with several sources)."""
        return {"cache": str(self.cache_dir) if self.cache_dir else None}

    def prepare_data(self) -> None:
        self.cache_dir = self.build_cache()

    def setup(self, stage: str | None = None) -> None:
        if self.cache_dir is None:
            self.cache_dir = self.build_cache()
        if not self.splits:
            self.splits = {s: CachedSplit(self.cache_dir, s, self.spec, self.float_inputs) for s in SPLITS}

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableBatchSampler(len(self.splits["train"]), self.batch_size, shuffle=True,
                                        drop_last=True, seed=self.seed)
        return self._loader(self.splits["train"], sampler)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.validation_split)

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def eval_dataloader(self, split: str) -> DataLoader:
        sampler = ResumableBatchSampler(len(self.splits[split]), self.eval_batch_size, shuffle=False)
        return self._loader(self.splits[split], sampler)

    def _loader(self, dataset: CachedSplit, sampler: ResumableBatchSampler) -> DataLoader:
        return ResumableDataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=_identity,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )
