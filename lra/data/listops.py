"""ListOps (LRA): nested MIN/MAX/MED/SM expressions, 10-way classification of their value.

Sources, in order: ``source_dir`` (the ``lra_release`` root or its ``listops-1000`` folder), then
``<data_dir>/raw/lra_release/listops-1000``, then generation with LRA's released rules
(``lra.data.generate.listops``) at the configured sizes. Tokenised as LRA's pipeline does:
parentheses dropped, ``]`` kept as its own token, 15 real tokens.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lra.data import cache
from lra.data.base import SPLITS, LRADataModule, TaskSpec
from lra.data.errors import DataError
from lra.data.generate.listops import ListOpsSettings, generate

VOCAB = ["<pad>", *[str(d) for d in range(10)], "[MIN", "[MAX", "[MED", "[SM", "]", "[FIRST", "[LAST"]
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
RELEASE_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}


def tokenize(expression: str, path: Path, line: int) -> list[int]:
    try:
        return [TOKEN_ID[t] for t in expression.replace("(", " ").replace(")", " ").split()]
    except KeyError as error:
        raise DataError(f"{path}:{line}: unknown ListOps token {error.args[0]!r}") from None


def read_tsv(path: Path) -> list[tuple[str, int]]:
    """Rows of a released/generated ListOps TSV (header ``Source\\tTarget``)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or rows[0] != ["Source", "Target"]:
        raise DataError(f"{path}:1: expected the header 'Source<TAB>Target'")
    examples = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1].strip().isdigit() or not 0 <= int(row[1]) <= 9:
            raise DataError(f"{path}:{line}: expected 'expression<TAB>digit', got {row!r:.80}")
        examples.append((row[0], int(row[1])))
    return examples


def write_tsv(path: Path, examples: list[tuple[str, int]]) -> None:
    tmp = path.with_suffix(".tsv.partial")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows(examples)
    tmp.replace(path)


def encode(examples: list[tuple[str, int]], max_length: int, path: Path) -> dict[str, np.ndarray]:
    inputs = np.zeros((len(examples), max_length), dtype=np.uint8)
    lengths = np.zeros(len(examples), dtype=np.int32)
    labels = np.zeros(len(examples), dtype=np.int8)
    for i, (expression, label) in enumerate(examples):
        ids = tokenize(expression, path, i + 2)[:max_length]
        inputs[i, : len(ids)] = ids
        lengths[i] = len(ids)
        labels[i] = label
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


class ListOpsDataModule(LRADataModule):
    def __init__(self, *, max_length: int = 2000, source_dir: str | None = None, source: str = "auto",
                 num_train: int = 96000, num_val: int = 2000, num_test: int = 2000,
                 generator: dict | None = None, generator_seed: int = 0, name: str = "listops", **common):
        super().__init__(**common)
        if source not in ("auto", "release", "generate"):
            raise ValueError(f"task.source must be auto, release or generate, not {source!r}")
        self.source = source
        self.source_dir = Path(source_dir) if source_dir else None
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.generator = ListOpsSettings(**(generator or {}))
        self.generator_seed = generator_seed
        self.max_length = max_length
        self.spec = TaskSpec(name=name, num_classes=10, max_length=max_length, vocab_size=len(VOCAB))
        self.source_files: dict[str, Path] = {}

    def release_dir(self) -> Path | None:
        candidates = [self.data_dir / "raw" / "lra_release" / "listops-1000"]
        if self.source_dir:
            candidates[:0] = [self.source_dir / "listops-1000", self.source_dir]
        return next((c for c in candidates if (c / RELEASE_FILES["train"]).is_file()), None)

    def generated_dir(self) -> Path:
        key = cache.cache_key("listops-generated", {"sizes": self.sizes, "settings": self.generator.__dict__,
                                                    "seed": self.generator_seed}, [], 1)
        return self.data_dir / "raw" / f"listops-generated-{key}"

    def ensure_generated(self) -> Path:
        directory = self.generated_dir()
        if all((directory / f).is_file() for f in RELEASE_FILES.values()):
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        examples = generate(sum(self.sizes.values()), self.generator, self.generator_seed)
        start = 0
        for split in SPLITS:
            write_tsv(directory / RELEASE_FILES[split], examples[start : start + self.sizes[split]])
            start += self.sizes[split]
        return directory

    def build_cache(self) -> Path:
        directory = self.release_dir() if self.source != "generate" else None
        if directory is None and self.source == "release":
            raise DataError("task.source=release but no listops-1000/basic_train.tsv was found; "
                            "run `python -m lra.data fetch lra_release` or set task.source_dir")
        directory = directory or self.ensure_generated()
        self.source_files = {split: directory / name for split, name in RELEASE_FILES.items()}

        def build() -> dict[str, np.ndarray]:
            arrays = {}
            for split, path in self.source_files.items():
                for field, array in encode(read_tsv(path), self.max_length, path).items():
                    arrays[f"{split}.{field}"] = array
            return arrays

        return cache.prepared(self.data_dir, "listops", {"max_length": self.max_length},
                              list(self.source_files.values()), build)

    def describe_source(self) -> dict[str, object]:
        return {"cache": str(self.cache_dir), "files": {s: str(p) for s, p in self.source_files.items()}}
