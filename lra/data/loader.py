"""Data loading that resumes where a killed run stopped: same epoch, same next batch.

Lightning saves the ``state_dict`` of a train DataLoader that has one, and loads it back before the
first batch is drawn. The order of an epoch depends only on (seed, epoch), so the state is just
the epoch and how many of its batches the training loop has taken.

Optional length bucketing (``lengths=``): the epoch's order is cut into pools of ``pool_batches``
batches, each pool is sorted by length and cut into batches, and the batches are shuffled (without
``shuffle``: once, the same order every epoch). Batches then hold examples of similar length, so
trimming them to their longest example cuts most padding; the mix of examples within a training batch
is no longer uniform, which changes SGD's statistics, so training buckets only where a task config
says so (evaluation always may: its predictions do not depend on the batch).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of indices; shuffled by (seed, epoch) when ``shuffle``; can start mid-epoch.

    Data-parallel: ``batch_size`` is the global batch; with ``num_replicas`` processes, the one of rank ``rank``
    takes every ``num_replicas``-th example of each global batch (a bucketed batch's slices stay alike in
    length). The ranks see disjoint shards that together are the one-process epoch, batch for batch, and
    resume at the same batch, since the order depends on (seed, epoch) alone.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        lengths: np.ndarray | None = None,
        pool_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if num_samples < 1:
            raise ValueError("cannot sample from an empty split")
        if drop_last and num_samples < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {num_samples} examples of the split")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.lengths = lengths
        self.pool_batches = pool_batches
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside the {num_replicas} processes")
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.skip = 0  # batches of the current epoch already consumed before a restart

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def batches(self) -> list[np.ndarray]:
        """Every batch of the current epoch for this rank, in order (a function of seed and epoch only)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
        if self.lengths is not None:
            order = self._bucketed(order, rng)
        batches = [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(len(self))]
        if self.num_replicas == 1:
            return batches
        shards = [batch[self.rank :: self.num_replicas] for batch in batches]
        return [shard for shard in shards if len(shard)]  # a last evaluation batch smaller than the ranks

    def _bucketed(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lengths = np.asarray(self.lengths)
        if lengths.ndim > 1:  # dual inputs: bucket by the longer document
            lengths = lengths.max(axis=tuple(range(1, lengths.ndim)))
        full = len(order) // self.batch_size
        # Training drops the examples that fill no whole batch: they are the last of the random order, set aside
        # before sorting, so those left out of an epoch are a random few, not the longest of a pool.
        kept = full * self.batch_size if self.drop_last else len(order)
        order, rest = order[:kept], order[kept:]
        pool = self.pool_batches * self.batch_size
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                for chunk in np.split(order, range(pool, len(order), pool))])
        # The batches in a random order, so a prefix of them (limit_val_batches) is not just the shortest
        # examples: a new order each epoch when shuffling, else one fixed order whatever the epoch.
        batch_order = (rng if self.shuffle else np.random.default_rng(self.seed)).permutation(full)
        head = order[: full * self.batch_size].reshape(full, self.batch_size)[batch_order].ravel()
        return np.concatenate([head, order[full * self.batch_size :], rest])

    def __iter__(self) -> Iterator[list[int]]:
        start, self.skip = self.skip, 0
        for batch in self.batches()[start:]:
            yield batch.tolist()


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
        # Lightning draws no batch ahead of the step it is on when the loader has a length (its fetcher
        # prefetches only to find the last batch of an unsized one), so every batch handed out is consumed.
        return {"epoch": self.batch_sampler.epoch, "consumed": self.taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.epoch = state["epoch"]
        self.batch_sampler.skip = state["consumed"]
