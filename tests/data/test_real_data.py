"""The real copies in ../shared/data (IMDB reviews, CIFAR-10 JPEG): whole preparations, so slow."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from lra.data import create

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
IMDB = SHARED / "imdb" / "aclImdb_v1_labeled.tar.gz"
CIFAR = SHARED / "cifar10" / "cifar10_jpeg_q75.tar.gz"


@pytest.mark.slow
@pytest.mark.skipif(not IMDB.is_file(), reason=f"{IMDB} not present")
def test_real_imdb_archive(tmp_path: Path, hf_home):
    dm = create(
        {"name": "text", "batch_size": 32, "max_length": 4000, "source_dir": str(IMDB)},
        data_dir=tmp_path,
        seed=0,
    )
    dm.prepare_data()
    dm.setup()
    for split in ("train", "test"):
        labels = np.asarray(dm.splits[split].labels)
        assert len(labels) == 25_000 and labels.sum() == 12_500
    with tarfile.open(IMDB) as archive:
        review = archive.extractfile("aclImdb/test/neg/0_2.txt").read().strip()
    stored = np.asarray(dm.splits["test"].inputs)  # raw bytes; batches add 1
    cut = np.frombuffer(review[:4000], dtype=np.uint8)
    same = (stored[:, : len(cut)] == cut).all(axis=1) & (dm.splits["test"].lengths == len(cut))
    [row] = np.flatnonzero(same)
    batch = dm.splits["test"].__getitems__([int(row)])
    assert batch["inputs"][0, : len(cut)].tolist() == [b + 1 for b in cut] and batch["labels"].item() == 0


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_file(), reason=f"{CIFAR} not present")
def test_real_cifar_jpeg_copy(tmp_path: Path, hf_home):
    dm = create({"name": "image", "batch_size": 256, "source_dir": str(CIFAR)}, data_dir=tmp_path, seed=0)
    dm.prepare_data()
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [45_000, 5_000, 10_000]
    assert np.bincount(np.asarray(dm.splits["val"].labels)).tolist() == [500] * 10
    assert dm.describe_source()["data_source"] == "CIFAR-10, JPEG q75 copy"
