"""TaylorShift's ListOps (``task.variant=taylorshift``): its own data module, chosen by the variant key."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lra.data import create
from lra.data.generate.listops import TAYLORSHIFT_OPERATORS, ListOpsSettings, taylorshift_batch
from lra.data.listops import TOKEN_ID, VOCAB, ListOpsDataModule
from lra.data.listops_taylorshift import TaylorShiftListOpsDataModule
from tests.helpers import compose_train

SMALL = {"max_length": 60, "num_train": 8, "num_val": 6, "num_test": 4, "batch_size": 4, "eval_batch_size": 3,
         "generator": {"min_length": 20, "max_length": 60}}


def datamodule(tmp_path: Path, seed: int = 0, **options):
    config = {"name": "listops", "variant": "taylorshift", **SMALL, **options}
    dm = create(config, data_dir=tmp_path / "data", seed=seed)
    dm.prepare_data()
    dm.setup()
    return dm


def ids(tokens: list[str]) -> list[int]:
    return [TOKEN_ID[t] for t in tokens]


def test_the_variant_key_picks_the_data_module(tmp_path: Path):
    lra = create({"name": "listops", "source": "generate", **SMALL}, data_dir=tmp_path, seed=0)
    assert type(lra) is ListOpsDataModule and lra.variant == "lra"
    taylorshift = create({"name": "listops", "variant": "taylorshift", **SMALL}, data_dir=tmp_path, seed=0)
    assert type(taylorshift) is TaylorShiftListOpsDataModule
    assert taylorshift.generator.operators == TAYLORSHIFT_OPERATORS
    assert compose_train(["experiment=taylorshift/listops"]).task.variant == "taylorshift"


def test_variant_redraws_every_epoch_and_resumes(tmp_path: Path):
    dm = datamodule(tmp_path)
    assert dm.spec.vocab_size == len(VOCAB) == 18 and not dm.spec.pads
    loader = dm.train_dataloader()
    first = [b["inputs"] for b in loader]
    assert len(first) == 2 and all("padding_mask" not in b for b in loader)
    assert all(20 <= x.shape[1] <= 60 for x in first)
    assert [b["inputs"].tolist() for b in loader] == [x.tolist() for x in first]  # same epoch, same data
    loader.batch_sampler.set_epoch(1)
    assert [b["inputs"].tolist() for b in loader] != [x.tolist() for x in first]
    loader.load_state_dict({"epoch": 1, "consumed": 1})
    resumed = list(loader)
    loader.batch_sampler.set_epoch(1)
    assert torch.equal(resumed[0]["inputs"], list(loader)[1]["inputs"])
    evaluation = list(dm.val_dataloader())
    assert [b["inputs"].shape[0] for b in evaluation] == [3, 3]
    assert all("padding_mask" not in b for b in evaluation)  # each block has one length: trimmed, no mask
    assert evaluation[0]["inputs"].min() > 0


def test_batches_are_the_generators_trees_at_their_documented_seeds(tmp_path: Path):
    """Training batch i of epoch e: ``Random(f"{seed}:{e * num_train + i * batch_size}")``; evaluation block
    at row r of a split: ``Random(f"{generator_seed}:{split}:{r}")``. Resumption and caches rest on it."""
    dm = datamodule(tmp_path, seed=5, generator_seed=2)
    settings = ListOpsSettings(operators=TAYLORSHIFT_OPERATORS, min_length=20, max_length=60)
    loader = dm.train_dataloader()
    for epoch in (0, 3):
        loader.batch_sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            _, trees = taylorshift_batch(random.Random(f"5:{epoch * 8 + i * 4}"), 4, settings)
            assert batch["inputs"].tolist() == [ids(tokens) for tokens, _ in trees]
            assert batch["labels"].tolist() == [value for _, value in trees]
    for split, count in (("val", 6), ("test", 4)):
        rows = [(ids(tokens), value) for start in range(0, count, 3)
                for tokens, value in taylorshift_batch(random.Random(f"2:{split}:{start}"), min(3, count - start),
                                                       settings)[1]]
        served = [(row.tolist(), int(label)) for batch in dm.eval_dataloader(split)
                  for row, label in zip(batch["inputs"], batch["labels"], strict=True)]
        assert sorted(served) == sorted(rows)


def test_what_does_not_apply_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ValueError, match="task.source=release does not apply"):
        create({"name": "listops", "variant": "taylorshift", "source": "release", **SMALL}, data_dir=tmp_path, seed=0)
    with pytest.raises(ValueError, match="generator.max_length 60 exceeds task.max_length 40"):
        create({"name": "listops", "variant": "taylorshift", **SMALL, "max_length": 40}, data_dir=tmp_path, seed=0)
    with pytest.raises(ValueError, match="ListOpsDataModule serves variant 'lra'"):
        ListOpsDataModule(data_dir=tmp_path, batch_size=2, variant="taylorshift")


def test_the_record_describes_the_variant(tmp_path: Path):
    source = datamodule(tmp_path).describe_source()
    assert source["variant"] == "taylorshift" and source["files"] == {}
    assert source["data_source"].startswith("TaylorShift long_listops generator, lengths 20..60")
    assert source["generator"]["operators"] == TAYLORSHIFT_OPERATORS and source["generator"]["seed"] == 0
