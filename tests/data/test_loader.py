"""Batch sampling: resumable by (seed, epoch), with optional length bucketing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lra.data.listops import ListOpsDataModule
from lra.data.loader import ResumableBatchSampler


def test_epochs_are_reproducible_and_different():
    sampler = ResumableBatchSampler(10, 3, shuffle=True, drop_last=True, seed=5)
    first = list(sampler)
    assert len(first) == 3 and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_resume_skips_the_consumed_batches():
    sampler = ResumableBatchSampler(10, 2, shuffle=True, seed=1)
    full = list(sampler)
    sampler.skip = 3
    assert list(sampler) == full[3:]
    assert list(sampler) == full  # the skip applies once


def test_bucketing_groups_similar_lengths_and_covers_every_example():
    lengths = np.random.default_rng(0).integers(1, 4000, 1000)
    plain = ResumableBatchSampler(1000, 10, shuffle=True, seed=0)
    bucketed = ResumableBatchSampler(1000, 10, shuffle=True, seed=0, lengths=lengths, pool_batches=20)
    batches = list(bucketed)
    assert sorted(i for b in batches for i in b) == list(range(1000))

    def padding(batch_list) -> int:
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batch_list)

    assert padding(batches) < padding(list(plain)) / 5
    assert list(bucketed) == batches  # deterministic for (seed, epoch)
    bucketed.set_epoch(1)
    assert list(bucketed) != batches


def test_bucketing_of_dual_lengths_uses_the_longer_document():
    lengths = np.array([[1, 9], [8, 2], [1, 1], [2, 1]])
    sampler = ResumableBatchSampler(4, 2, shuffle=False, lengths=lengths, pool_batches=2)
    assert sorted(list(sampler)) == [[1, 0], [2, 3]]


def test_unshuffled_bucketing_keeps_one_batch_order_that_is_not_by_length():
    lengths = np.arange(100, 0, -1)
    sampler = ResumableBatchSampler(100, 10, shuffle=False, lengths=lengths, pool_batches=10)
    batches = list(sampler)
    assert sorted(batches) == sorted([list(range(i + 9, i - 1, -1)) for i in range(0, 100, 10)])
    assert batches[0] != list(range(99, 89, -1))  # a prefix is not the ten shortest
    sampler.set_epoch(3)  # Lightning sets the epoch of evaluation samplers too
    assert list(sampler) == batches


def test_bucketed_epochs_leave_out_a_random_few_never_the_longest():
    """With drop_last, an epoch holds every example once but the remainder (< batch), drawn at random."""
    lengths = np.arange(1, 1004)
    sampler = ResumableBatchSampler(1003, 10, shuffle=True, drop_last=True, seed=3, lengths=lengths,
                                    pool_batches=20)
    left_out = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        taken = [i for batch in sampler for i in batch]
        assert len(taken) == len(set(taken)) == 1000
        left_out.append(set(range(1003)) - set(taken))
    assert all(len(rest) == 3 for rest in left_out) and len(set().union(*left_out)) > 3
    assert min(lengths[list(set().union(*left_out))]) < 900  # not the longest of their pools


def test_bucketed_training_resumes_at_any_step(tmp_path):
    """A bucketed loader stopped after k batches and restored from its state goes on with the same batches."""
    def loader(epoch: int = 0):
        data = ListOpsDataModule(data_dir=tmp_path / "data", source="generate", max_length=96, num_train=120,
                                 num_val=8, num_test=8, generator={"max_depth": 4, "max_args": 4, "min_length": 8,
                                 "max_length": 96}, generator_workers=1, batch_size=8, bucket=True, pad_multiple=4,
                                 seed=7)
        data.setup()
        train = data.train_dataloader()
        train.batch_sampler.set_epoch(epoch)
        return train

    whole = [batch["inputs"] for batch in loader()]
    assert len({b.shape[1] for b in whole}) > 1  # trimmed: widths vary with the bucket
    for k in (0, 1, 5, len(whole) - 1):
        first = loader()
        iterator = iter(first)
        for _ in range(k):
            next(iterator)
        resumed = loader()
        resumed.load_state_dict(first.state_dict())
        rest = [batch["inputs"] for batch in resumed]
        assert len(rest) == len(whole) - k and all(torch.equal(a, b) for a, b in zip(rest, whole[k:], strict=True))


@pytest.mark.parametrize("bucketed", [False, True])
def test_ranks_take_disjoint_shards_of_each_global_batch(bucketed):
    lengths = np.random.default_rng(1).integers(1, 500, 203) if bucketed else None
    one = ResumableBatchSampler(203, 8, shuffle=True, drop_last=True, seed=4, lengths=lengths)
    ranks = [ResumableBatchSampler(203, 8, shuffle=True, drop_last=True, seed=4, lengths=lengths, num_replicas=2,
                                   rank=r) for r in (0, 1)]
    whole, shards = list(one), [list(r) for r in ranks]
    assert all(len(s) == len(whole) == 25 for s in shards) and all(len(b) == 4 for s in shards for b in s)
    for batch, first, second in zip(whole, *shards, strict=True):  # the same global batches, split
        assert not set(first) & set(second) and sorted(first + second) == sorted(batch)
    for rank in ranks:  # a resume is the same batch on every rank
        rank.skip = 7
    assert [list(r) for r in ranks] == [s[7:] for s in shards]


def test_a_last_evaluation_batch_smaller_than_the_ranks_leaves_no_empty_batch():
    shards = [list(ResumableBatchSampler(9, 4, shuffle=False, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(9))
    assert all(batch for shard in shards for batch in shard)
