"""Data loading that resumes where a killed run stopped: same epoch, same next batch.

Lightning saves the ``state_dict`` of a train DataLoader that has one, and loads it back before the
first batch is drawn. The order of an epoch depends only on (seed, epoch), so the state is just
the epoch and how many of its batches the training loop has taken.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of indices; shuffled by (seed, epoch) when ``shuffle``; can start mid-epoch."""

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool, drop_last: bool = False, seed: int = 0):
        if num_samples < 1:
            raise ValueError("cannot sample from an empty split")
        if drop_last and num_samples < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {num_samples} examples of the split")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # batches of the current epoch already consumed before a restart

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        start, self.skip = self.skip, 0
        for b in range(start, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position in the epoch survives a checkpoint (Lightning's stateful protocol)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taken = 0  # batches handed out in the current pass

    def __iter__(self) -> Iterator:
        sampler = self.batch_sampler
        self.taken = sampler.skip
        for batch in super().__iter__():
            self.taken += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        # Lightning draws one batch ahead of the step it is on, so one batch handed out is not yet consumed.
        return {"epoch": self.batch_sampler.epoch, "consumed": max(self.taken - 1, 0)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.epoch = state["epoch"]
        self.batch_sampler.skip = state["consumed"]


