"""Retrieval (LRA): AAN citation pairs at byte level, 2-way "does one paper cite the other".

The protocol, pinned (PyTorch re-runs on the same data report about 20 points more than the LRA
paper, so every number must say which protocol made it): byte level; each document's UTF-8 bytes,
id = byte + 1 (0 = padding, tfds ``ByteTextEncoder``); each document cut to its first 10,000 bytes and
then to ``max_length`` (4000), as ``matching/input_pipeline.py`` does (it slices ``s.numpy()``, bytes,
not characters); the two documents of a pair are encoded separately by one shared encoder (a dual
encoder; no cross-attention, no concatenation of the pair) and combined only in the classifier head.
Batches hold both documents: ``inputs`` ``(B, 2, N)`` and ``padding_mask`` ``(B, 2, N)``.

Files (LRA release, ``lra_release/tsv_data/``): ``new_aan_pairs.{train,eval,test}.tsv``, no header,
columns label, id1, id2, text1, text2, tab-separated with no quoting (``use_quote_delim=False``);
``eval`` is our ``val``. A row without exactly five fields, or with a label other than 0 or 1, is
reported with its file and line. LRA's loader drops the last partial evaluation batch
(``drop_remainder=True``); we evaluate every pair.

Sources, in order: ``source_dir`` (the ``lra_release`` root or its ``tsv_data`` folder), then
``<data_dir>/raw/lra_release/tsv_data``. ``trim_eval`` (on), ``trim_padding`` and ``bucket`` (off)
cut padding as for Text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lra.data import cache, provenance
from lra.data.base import PaddedTokenDataModule, TaskSpec, first_with, register_task, release_candidates
from lra.data.errors import DataError, DataNotFoundError
from lra.data.text import BYTE_VOCAB_SIZE

FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
LRA_BYTE_CUT = 10_000  # matching/input_pipeline.py: encoder.encode(s.numpy()[:10000])
FORMAT_VERSION = 1
# new_aan_pairs.{train,eval,test}.tsv of lra_release/tsv_data, as reported for LRA's Retrieval task
RELEASED_ROWS = {"train": 147_086, "val": 18_090, "test": 17_437}
FETCH_HINT = (
    "Get LRA's release with `python -m lra.data fetch lra_release` (AAN is in its tsv_data/), "
    "or set task.source_dir to the unpacked lra_release root or its tsv_data folder."
)
PROTOCOL = (
    "AAN byte-level matching, dual encoder: each document's UTF-8 bytes (id = byte + 1, 0 = pad), cut "
    "to 10,000 bytes then to max_length={max_length}; the two documents are encoded separately by one "
    "shared encoder (no cross-attention, no concatenation) and combined only in the classifier head "
    "(LRA's released matching pipeline)"
)


def count_rows(path: Path) -> int:
    rows = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            rows += block.count(b"\n")
            last = block[-1:]
    return rows + (last != b"\n")


def read_pairs(path: Path, inputs: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
    """Fill ``inputs (n, 2, N)``, ``lengths (n, 2)``, ``labels (n,)`` from one AAN TSV, row by row."""
    cut = min(LRA_BYTE_CUT, inputs.shape[-1])
    with open(path, "rb") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.rstrip(b"\n").rstrip(b"\r").split(b"\t")
            if len(fields) != 5:
                raise DataError(
                    f"{path}:{line_number}: expected 5 tab-separated fields "
                    f"(label, id1, id2, text1, text2), got {len(fields)}"
                )
            try:
                label = float(fields[0])
            except ValueError:
                label = -1.0
            if label not in (0.0, 1.0):
                raise DataError(f"{path}:{line_number}: label must be 0 or 1, got {fields[0][:20]!r}")
            row = line_number - 1
            labels[row] = int(label)
            for side, document in enumerate((fields[3][:cut], fields[4][:cut])):
                inputs[row, side, : len(document)] = np.frombuffer(document, dtype=np.uint8)
                lengths[row, side] = len(document)


@register_task("retrieval")
class RetrievalDataModule(PaddedTokenDataModule):
    id_offset = 1  # bytes stored, ids = byte + 1 (tfds' ByteTextEncoder)

    # The task's options with their defaults, read by lra.data.task_options: alike across tasks by design.
    def __init__(
        self,
        *,
        max_length: int = 4000,
        source_dir: str | None = None,
        pad_multiple: int = 128,
        name: str = "retrieval",
        **common,
    ):
        super().__init__(pad_multiple=pad_multiple, **common)
        if max_length < 1:
            raise ValueError(f"task.max_length must be positive (LRA: 4000 per document), got {max_length}")
        self.max_length = max_length
        self.source_dir = Path(source_dir) if source_dir else None
        self.spec = TaskSpec(
            name=name, num_classes=2, max_length=max_length, vocab_size=BYTE_VOCAB_SIZE, dual=True
        )
        self.source_files: dict[str, Path] = {}
        self.label = ""

    def build_cache(self) -> Path:
        candidates = release_candidates(self.source_dir, self.data_dir, "tsv_data")
        directory = first_with(candidates, *FILES.values())
        if directory is None:
            raise DataNotFoundError("AAN (task=retrieval)", [str(c) for c in candidates], FETCH_HINT)
        self.source_files = {split: directory / name for split, name in FILES.items()}

        def build(writer: cache.CacheWriter) -> None:
            for split, path in self.source_files.items():
                rows = count_rows(path)
                if rows == 0:
                    raise DataError(f"{path}: empty")
                inputs = writer.create(f"{split}.inputs", (rows, 2, self.max_length), np.uint8)
                lengths = writer.create(f"{split}.lengths", (rows, 2), np.int32)
                labels = writer.create(f"{split}.labels", (rows,), np.int8)
                read_pairs(path, inputs, lengths, labels)
                inputs.flush()
                del inputs, lengths, labels

        prepared = cache.prepared(
            self.data_dir,
            "retrieval",
            {"max_length": self.max_length},
            list(self.source_files.values()),
            build,
            FORMAT_VERSION,
        )
        rows = provenance.cached_rows(prepared)
        self.label = provenance.source_label("AAN pairs, LRA release tsv_data", "AAN-format pair TSVs", rows,
                                             RELEASED_ROWS)
        return prepared

    def describe_source(self) -> dict[str, object]:
        return {
            "data_source": self.label,
            "protocol": PROTOCOL.format(max_length=self.max_length),
            "files": {s: str(p) for s, p in self.source_files.items()},
            "cache": str(self.cache_dir),
        }
