"""Text (IMDB): aclImdb folder, its tarball and Hugging Face copies give the same exact bytes."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from lra.data import create
from lra.data.errors import DataError, DataNotFoundError

from .fixtures import REVIEWS, tar_gz, write_imdb

# Sorted neg before pos, by file id; stripped as tfds does (bytes.strip()).
TRAIN = [
    (0, REVIEWS[("train", "neg", "3_1.txt")].strip()),
    (0, REVIEWS[("train", "neg", "10_2.txt")].strip()),
    (1, REVIEWS[("train", "pos", "0_9.txt")].strip()),
    (1, REVIEWS[("train", "pos", "7_10.txt")].strip()),
]
TEST = [(0, b"Meh"), (1, b"Fine")]


def text_module(tmp_path: Path, **options):
    return create(
        {"name": "text", "batch_size": 2, "max_length": 16, **options}, data_dir=tmp_path / "data", seed=0
    )


def ids(document: bytes, width: int) -> list[int]:
    cut = list(document[:width])
    return [b + 1 for b in cut] + [0] * (width - len(cut))


def rows(dm, split: str) -> list[tuple[int, list[int], list[bool]]]:
    """Every example of a split as (label, ids, mask), sorted: the stored order is shuffled."""
    data = dm.splits[split]
    batch = data.__getitems__(list(range(len(data))))
    return sorted(
        zip(batch["labels"].tolist(), batch["inputs"].tolist(), batch["padding_mask"].tolist(), strict=True)
    )


def check_splits(dm, width: int = 16) -> None:
    dm.prepare_data()
    dm.setup()
    for split, expected in (("train", TRAIN), ("test", TEST)):
        assert rows(dm, split) == sorted(
            (label, ids(doc, width), [i >= len(doc[:width]) for i in range(width)]) for label, doc in expected
        )


def test_folder_bytes_are_shifted_by_one_and_stripped(tmp_path: Path, hf_home):
    write_imdb(tmp_path / "src")
    dm = text_module(tmp_path, source_dir=str(tmp_path / "src"))
    check_splits(dm)
    assert dm.spec.vocab_size == 257 and dm.validation_split == "test"
    cafe = next(x for _, x, _ in rows(dm, "train") if x[0] == ord("C") + 1)
    assert cafe[:5] == [ord("C") + 1, ord("a") + 1, ord("f") + 1, 0xC3 + 1, 0xA9 + 1]  # UTF-8 of é
    assert "LRA's protocol" in dm.describe_source()["validation"]


def test_archive_is_read_without_unpacking(tmp_path: Path, hf_home):
    base = write_imdb(tmp_path / "src")
    archive = tar_gz(base, tmp_path / "aclImdb_v1.tar.gz")
    dm = text_module(tmp_path, source_dir=str(archive))
    check_splits(dm)
    assert "archive" in dm.describe_source()["data_source"]


def test_data_raw_is_found_without_configuration(tmp_path: Path, hf_home):
    write_imdb(tmp_path / "data" / "raw")
    check_splits(text_module(tmp_path))


def hf_copy() -> datasets.DatasetDict:
    split = {"train": TRAIN, "test": TEST}
    return datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(
                {"text": [d.decode() + " " for _, d in rows], "label": [y for y, _ in rows]}
            )
            for s, rows in split.items()
        }
    )


def test_saved_hugging_face_dataset(tmp_path: Path, hf_home):
    hf_copy().save_to_disk(str(tmp_path / "imdb_saved"))
    dm = text_module(tmp_path, source_dir=str(tmp_path / "imdb_saved"))
    check_splits(dm)
    assert "Hugging Face" in dm.describe_source()["data_source"]


def test_hugging_face_hub_cache_is_read_offline(tmp_path: Path, hf_home):
    snapshot = hf_home / "hub" / "datasets--stanfordnlp--imdb" / "snapshots" / "abc123" / "plain_text"
    snapshot.mkdir(parents=True)
    for split, data in hf_copy().items():
        data.to_parquet(str(snapshot / f"{split}-00000-of-00001.parquet"))
    check_splits(text_module(tmp_path))


def test_truncation_to_max_length(tmp_path: Path, hf_home):
    write_imdb(tmp_path / "src")
    dm = text_module(tmp_path, source_dir=str(tmp_path / "src"), max_length=4)
    check_splits(dm, width=4)


def test_holdout_validation_is_a_fixed_slice_of_train(tmp_path: Path, hf_home):
    write_imdb(tmp_path / "src")
    dm = text_module(tmp_path, source_dir=str(tmp_path / "src"), validation="holdout", holdout_fraction=0.25)
    dm.prepare_data()
    dm.setup()
    assert dm.validation_split == "val" and len(dm.splits["val"]) == 1 and len(dm.splits["train"]) == 3
    held = dm.splits["val"].__getitems__([0])["inputs"][0].tolist()
    kept = dm.splits["train"].__getitems__([0, 1, 2])["inputs"].tolist()
    assert held in [ids(d, 16) for _, d in TRAIN] and held not in kept
    assert "held-out 25%" in dm.describe_source()["validation"]
    assert next(iter(dm.val_dataloader()))["inputs"].tolist() == [held]


def test_trimming_cuts_padding_and_drops_the_mask_when_none_is_left(tmp_path: Path, hf_home):
    write_imdb(tmp_path / "src")
    dm = text_module(
        tmp_path, source_dir=str(tmp_path / "src"), max_length=64, trim_padding=True, pad_multiple=4
    )
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["test"].__getitems__([0, 1])  # "Meh" and "Fine": 3 and 4 bytes
    assert batch["inputs"].shape == (2, 4)
    assert sorted(batch["padding_mask"].tolist()) == [[False] * 4, [False] * 3 + [True]]
    fine = [i for i in (0, 1) if batch["labels"][i] == 1][0]
    alone = dm.splits["test"].__getitems__([fine])
    assert alone["inputs"].shape == (1, 4) and "padding_mask" not in alone


def write_test_reviews(root: Path, sizes: list[int]) -> None:
    """``aclImdb`` with one train review per class and test reviews of the given byte lengths."""
    for split, label, name, text in [("train", "neg", "0_1.txt", b"bad"), ("train", "pos", "1_9.txt", b"good")] + [
        ("test", ("neg", "pos")[i % 2], f"{i}_5.txt", bytes([65 + i]) * size) for i, size in enumerate(sizes)
    ]:
        (root / "aclImdb" / split / label).mkdir(parents=True, exist_ok=True)
        (root / "aclImdb" / split / label / name).write_bytes(text)


@pytest.mark.parametrize("trim_eval", [True, False])
def test_evaluation_batches_are_sorted_by_length_and_trimmed(tmp_path: Path, hf_home, trim_eval: bool):
    sizes = [40, 5, 20, 2, 33, 12, 9]
    write_test_reviews(tmp_path / "src", sizes)
    dm = text_module(tmp_path, source_dir=str(tmp_path / "src"), max_length=64, pad_multiple=4, eval_batch_size=2,
                     trim_eval=trim_eval)
    dm.prepare_data()
    dm.setup()
    seen = []
    for batch in dm.val_dataloader():
        lengths = (~batch["padding_mask"]).sum(-1).tolist() if "padding_mask" in batch else [batch["inputs"].shape[1]]
        width = batch["inputs"].shape[1]
        assert width == (-(-max(lengths) // 4) * 4 if trim_eval else 64)
        for row in batch["inputs"].tolist():
            size = sum(v != 0 for v in row)
            assert row == ids(bytes([row[0] - 1]) * size, width)
            seen.append(size)
    assert sorted(seen) == sorted(sizes)  # every review once
    if trim_eval:  # neighbours in length share a batch (the last one is the odd one out)
        assert sorted(tuple(sorted(seen[i:i + 2])) for i in range(0, 6, 2)) == [(2, 5), (9, 12), (20, 33)]
    assert next(iter(dm.train_dataloader()))["inputs"].shape == (2, 64)  # training is left alone


def test_stored_order_mixes_the_classes(tmp_path: Path, hf_home):
    for i in range(40):
        (tmp_path / "src" / "aclImdb" / "test" / ("pos" if i % 2 else "neg")).mkdir(
            parents=True, exist_ok=True
        )
        (tmp_path / "src" / "aclImdb" / "test" / ("pos" if i % 2 else "neg") / f"{i}_5.txt").write_text("x")
        (tmp_path / "src" / "aclImdb" / "train" / ("pos" if i % 2 else "neg")).mkdir(
            parents=True, exist_ok=True
        )
        (tmp_path / "src" / "aclImdb" / "train" / ("pos" if i % 2 else "neg") / f"{i}_5.txt").write_text("y")
    dm = text_module(tmp_path, source_dir=str(tmp_path / "src"))
    dm.prepare_data()
    dm.setup()
    first_half = dm.splits["test"].__getitems__(list(range(20)))["labels"]
    assert 0 < int(first_half.sum()) < 20  # a prefix (limit_val_batches) holds both classes


def test_missing_data_names_the_places_and_the_fetch_command(tmp_path: Path, hf_home):
    with pytest.raises(DataNotFoundError) as error:
        text_module(tmp_path).prepare_data()
    message = str(error.value)
    assert (
        "raw/aclImdb" in message
        and "stanfordnlp/imdb" in message
        and "python -m lra.data fetch imdb" in message
    )


def test_truncated_archive_is_reported(tmp_path: Path, hf_home):
    base = write_imdb(tmp_path / "src")
    archive = tar_gz(base, tmp_path / "aclImdb_v1.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        text_module(tmp_path, source_dir=str(archive)).prepare_data()


def test_bad_options_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="task.validation must be test"):
        text_module(tmp_path, validation="train")
    with pytest.raises(DataError, match="not an aclImdb folder"):
        text_module(tmp_path, source_dir=str(tmp_path)).prepare_data()


def test_reviews_are_called_imdb_only_with_its_counts_and_digest(tmp_path: Path, hf_home, monkeypatch):
    """The folder and the archive here hold 4 + 2 reviews: user-supplied. With the released counts set to
    those, the folder is IMDB; the archive also needs the published sha256 (lra.data.fetch's)."""
    import dataclasses

    from lra.data import fetch
    from lra.data.cache import sha256_file

    base = write_imdb(tmp_path / "src")
    archive = tar_gz(base, tmp_path / "aclImdb_v1.tar.gz")
    dm = text_module(tmp_path, source_dir=str(base))
    dm.prepare_data()
    assert dm.describe_source()["data_source"] == (
        "user-supplied IMDB-format reviews (aclImdb folder) (6 rows: train 4, test 2; the release has "
        "train 25,000, test 25,000)")
    monkeypatch.setattr("lra.data.text.RELEASED_ROWS", {"train": 4, "test": 2})
    again = text_module(tmp_path, source_dir=str(base))
    again.prepare_data()
    assert again.describe_source()["data_source"] == "IMDB reviews (Maas et al. 2011; aclImdb folder)"
    packed = text_module(tmp_path, source_dir=str(archive))
    packed.prepare_data()
    assert packed.describe_source()["data_source"].endswith("its sha256 is not the published one)")
    published = dataclasses.replace(fetch.ARCHIVES["imdb"], sha256=sha256_file(archive))
    monkeypatch.setitem(fetch.ARCHIVES, "imdb", published)
    checked = text_module(tmp_path, source_dir=str(archive))
    checked.prepare_data()
    assert checked.describe_source()["data_source"] == "IMDB reviews (Maas et al. 2011; aclImdb archive)"
