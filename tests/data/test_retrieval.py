"""Retrieval (AAN): the release TSV format, both documents, byte cuts, masks, and bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from lra.data import create
from lra.data.errors import DataError, DataNotFoundError

from .fixtures import aan_row, write_aan

LONG = "é".encode() * 6000  # 12,000 bytes: past LRA's 10,000-byte cut


def retrieval_module(tmp_path: Path, **options):
    return create(
        {"name": "retrieval", "batch_size": 2, "max_length": 8, **options}, data_dir=tmp_path / "data", seed=0
    )


def release(tmp_path: Path, rows=None) -> Path:
    rows = rows or {
        "train": [aan_row("1", b"abc", b"hello world!"), aan_row("0", b'"quoted" text', b"x")],
        "val": [aan_row("0.0", b"v1", b"v2")],
        "test": [aan_row("1.0", LONG, b"t")],
    }
    write_aan(tmp_path / "lra_release" / "tsv_data", rows)
    return tmp_path / "lra_release"


def ids(document: bytes, width: int) -> list[int]:
    cut = list(document[:width])
    return [b + 1 for b in cut] + [0] * (width - len(cut))


def test_pairs_are_encoded_as_two_byte_documents(tmp_path: Path):
    dm = retrieval_module(tmp_path, source_dir=str(release(tmp_path)))
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["train"].__getitems__([0, 1])
    assert batch["inputs"].shape == (2, 2, 8) and batch["padding_mask"].shape == (2, 2, 8)
    assert batch["inputs"][0].tolist() == [ids(b"abc", 8), ids(b"hello world!", 8)]
    assert batch["inputs"][1].tolist() == [ids(b'"quoted" text', 8), ids(b"x", 8)]  # quotes are plain bytes
    assert batch["padding_mask"][0].tolist() == [[i >= 3 for i in range(8)], [False] * 8]
    assert batch["labels"].tolist() == [1, 0]
    assert dm.splits["val"].__getitems__([0])["labels"].tolist() == [0]  # new_aan_pairs.eval.tsv
    assert dm.spec.dual and dm.spec.vocab_size == 257
    assert "dual encoder" in dm.describe_source()["protocol"]


def test_documents_are_cut_at_10000_bytes_before_max_length(tmp_path: Path):
    dm = retrieval_module(tmp_path, source_dir=str(release(tmp_path)), max_length=12_000)
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["test"].__getitems__([0])
    assert int((~batch["padding_mask"][0, 0]).sum()) == 10_000
    assert batch["inputs"][0, 0, :10_000].tolist() == [b + 1 for b in LONG[:10_000]]


def test_trimmed_dual_batches_share_one_width(tmp_path: Path):
    dm = retrieval_module(
        tmp_path, source_dir=str(release(tmp_path)), max_length=64, trim_padding=True, pad_multiple=1
    )
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["train"].__getitems__([0, 1])
    assert batch["inputs"].shape == (2, 2, 13)  # the longest document: '"quoted" text'


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            b"1\tP1\tP2\tonly four\n",
            ":2: expected 5 tab-separated fields (label, id1, id2, text1, text2), got 4",
        ),
        (aan_row("yes", b"a", b"b"), ":2: label must be 0 or 1"),
        (aan_row("2", b"a", b"b"), ":2: label must be 0 or 1"),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path, row: bytes, message: str):
    rows = {
        "train": [aan_row("1", b"a", b"b"), row],
        "val": [aan_row("0", b"a", b"b")],
        "test": [aan_row("0", b"a", b"b")],
    }
    dm = retrieval_module(tmp_path, source_dir=str(release(tmp_path, rows)))
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    assert "new_aan_pairs.train.tsv" + message in str(error.value)


def test_missing_data_names_the_places_and_the_fetch_command(tmp_path: Path):
    with pytest.raises(DataNotFoundError) as error:
        retrieval_module(tmp_path).prepare_data()
    assert "raw/lra_release/tsv_data" in str(error.value)
    assert "python -m lra.data fetch lra_release" in str(error.value)


def test_tsvs_are_called_the_release_only_with_its_row_counts(tmp_path: Path, monkeypatch):
    dm = retrieval_module(tmp_path, source_dir=str(release(tmp_path)))
    dm.prepare_data()
    assert dm.describe_source()["data_source"] == (
        "user-supplied AAN-format pair TSVs (4 rows: train 2, val 1, test 1; the release has train 147,086, "
        "val 18,090, test 17,437)")
    monkeypatch.setattr("lra.data.retrieval.RELEASED_ROWS", {"train": 2, "val": 1, "test": 1})
    again = retrieval_module(tmp_path, source_dir=str(tmp_path / "lra_release"))
    again.prepare_data()
    assert again.describe_source()["data_source"] == "AAN pairs, LRA release tsv_data"
