"""ListOps (LRA): nested MIN/MAX/MED/SM expressions, 10-way classification of their value.

``variant: lra`` (default). Sources, in order: ``source_dir`` (the ``lra_release`` root or its
``listops-1000`` folder), then ``<data_dir>/raw/lra_release/listops-1000``, then generation with LRA's
released rules (``lra.data.generate.listops``) at the configured sizes, cached under
``<data_dir>/raw/listops-generated-<key>/`` in the release's TSV format. Files:
``basic_{train,val,test}.tsv``, header ``Source<TAB>Target``. Tokenised as LRA's pipeline does
(``listops/input_pipeline.py``): parentheses dropped, ``]`` kept as its own token, whitespace split;
15 real tokens (ids 1..15, 0 = padding), truncated to ``max_length`` (2000), padded with 0.

``variant: taylorshift`` reproduces the data of TaylorShift (Nauen et al. 2024): FIRST and LAST join
the operators, MED is the upper median, and every batch has one length drawn from
``[generator.min_length, generator.max_length]`` with trees grown to exactly that length, drawn afresh
every epoch (``num_train`` trees per epoch; the stream depends on the run seed and the epoch, so a
resumed run sees the same batches). Batches carry no padding: their width is the batch's length.
Validation and test are fixed sets (``generator_seed``) generated once in blocks of
``eval_batch_size`` trees that share a length, as TaylorShift's evaluation batches do. Vocabulary: 17
real tokens (ids 1..17).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lra.data import cache, provenance
from lra.data.base import SPLITS, BatchForm, LRADataModule, TaskSpec, first_with, register_task, release_candidates
from lra.data.errors import DataError, DataNotFoundError
from lra.data.generate.listops import (
    LRA_OPERATORS,
    TAYLORSHIFT_OPERATORS,
    ListOpsSettings,
    generate,
    taylorshift_batch,
)
from lra.data.loader import ResumableBatchSampler

VOCAB = ["<pad>", *[str(d) for d in range(10)], "[MIN", "[MAX", "[MED", "[SM", "]", "[FIRST", "[LAST"]
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
LRA_VOCAB_SIZE = 16  # pad + 15 tokens; FIRST and LAST only in the TaylorShift variant
RELEASE_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
RELEASED_ROWS = {"train": 96_000, "val": 2_000, "test": 2_000}  # lra_release/listops-1000 (LRA paper: 96K/2K/2K)
VARIANTS = ("lra", "taylorshift")
FORMAT_VERSION = 2
FETCH_HINT = (
    "Get LRA's release with `python -m lra.data fetch lra_release` (or set task.source_dir to its "
    "unpacked root), or generate the data with task.source=generate."
)


def tokenize(expression: str, vocab_size: int, path: Path, line: int) -> list[int]:
    ids = [TOKEN_ID.get(t, -1) for t in expression.replace("(", " ").replace(")", " ").split()]
    if any(not 0 < i < vocab_size for i in ids):
        bad = next(
            t
            for t in expression.replace("(", " ").replace(")", " ").split()
            if not 0 < TOKEN_ID.get(t, -1) < vocab_size
        )
        raise DataError(f"{path}:{line}: unknown ListOps token {bad!r}")
    return ids


def read_tsv(path: Path) -> list[tuple[str, int]]:
    """Rows of a released/generated ListOps TSV (header ``Source\\tTarget``)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read as a ListOps TSV ({error})") from error
    if not rows or rows[0] != ["Source", "Target"]:
        raise DataError(f"{path}:1: expected the header 'Source<TAB>Target'")
    examples = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1].strip().isdigit() or not 0 <= int(row[1]) <= 9:
            raise DataError(f"{path}:{line}: expected 'expression<TAB>digit', got {row!r:.80}")
        examples.append((row[0], int(row[1])))
    return examples


def write_tsv(path: Path, examples: list[tuple[str, int]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows(examples)


def encode(
    examples: list[tuple[str, int]], max_length: int, vocab_size: int, path: Path
) -> dict[str, np.ndarray]:
    inputs = np.zeros((len(examples), max_length), dtype=np.uint8)
    lengths = np.zeros(len(examples), dtype=np.int32)
    labels = np.zeros(len(examples), dtype=np.int8)
    for i, (expression, label) in enumerate(examples):
        ids = tokenize(expression, vocab_size, path, i + 2)[:max_length]
        inputs[i, : len(ids)] = ids
        lengths[i] = len(ids)
        labels[i] = label
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


def generated_dir(data_dir: Path, sizes: dict[str, int], settings: ListOpsSettings, seed: int) -> Path:
    key = cache.cache_key(
        "listops-generated", {"sizes": sizes, "settings": settings.__dict__, "seed": seed}, [], 1
    )
    return data_dir / "raw" / f"listops-generated-{key}"


def ensure_generated(
    directory: Path, sizes: dict[str, int], settings: ListOpsSettings, seed: int, workers: int | None = None
) -> Path:
    """The release-format TSVs of a generated ListOps, generated once (atomically, under a lock that makes
    processes started together wait for one generation) into ``directory``."""
    complete = lambda: all((directory / f).is_file() for f in RELEASE_FILES.values())  # noqa: E731
    if complete():
        return directory
    with cache.locked(directory):
        if complete():  # generated by another process while this one waited
            return directory
        cache.remove_dead_partials(directory.parent, f"{directory.name}.partial-*")
        _generate_into(directory, sizes, settings, seed, workers)
    return directory


def _generate_into(
    directory: Path, sizes: dict[str, int], settings: ListOpsSettings, seed: int, workers: int | None
) -> None:
    started = time.perf_counter()
    examples = generate(sum(sizes.values()), settings, seed, workers)
    staging = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        start = 0
        for split in SPLITS:
            write_tsv(staging / RELEASE_FILES[split], examples[start : start + sizes[split]])
            start += sizes[split]
        summary = {
            "generator": "LRA lra_benchmarks/data/listops.py rules",
            "seed": seed,
            "sizes": sizes,
            "settings": settings.__dict__,
            "seconds": round(time.perf_counter() - started, 1),
            "labels": dict(sorted(Counter(v for _, v in examples).items())),
        }
        (staging / "generation.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(directory, ignore_errors=True)  # an incomplete folder (under the lock: nobody reads it)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class FreshListOps(Dataset):
    """TaylorShift's training stream: every batch drawn afresh from (seed, its global batch position)."""

    def __init__(self, num_samples: int, settings: ListOpsSettings, seed: int):
        self.num_samples = num_samples
        self.settings = settings
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.seed}:{indices[0]}")
        length, trees = taylorshift_batch(rng, len(indices), self.settings)
        inputs = torch.tensor([[TOKEN_ID[t] for t in tokens] for tokens, _ in trees], dtype=torch.int64)
        labels = torch.tensor([value for _, value in trees], dtype=torch.int64)
        return {"inputs": inputs.reshape(len(indices), length), "labels": labels}


class EpochStampedSampler(ResumableBatchSampler):
    """In-order batches of ``epoch * num_samples + i``, so a fresh-data batch knows its epoch."""

    def batches(self) -> list[np.ndarray]:
        return [batch + self.epoch * self.num_samples for batch in super().batches()]


def taylorshift_eval_set(
    count: int,
    block: int,
    settings: ListOpsSettings,
    seed: str,
    max_length: int,
) -> dict[str, np.ndarray]:
    """A fixed evaluation set in blocks of ``block`` trees of one length (one evaluation batch each)."""
    inputs = np.zeros((count, max_length), dtype=np.uint8)
    lengths = np.zeros(count, dtype=np.int32)
    labels = np.zeros(count, dtype=np.int8)
    for start in range(0, count, block):
        size = min(block, count - start)
        length, trees = taylorshift_batch(random.Random(f"{seed}:{start}"), size, settings)
        for i, (tokens, value) in enumerate(trees, start=start):
            inputs[i, :length] = [TOKEN_ID[t] for t in tokens]
            lengths[i] = length
            labels[i] = value
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


@register_task("listops")
class ListOpsDataModule(LRADataModule):
    def __init__(
        self,
        *,
        variant: str = "lra",
        max_length: int = 2000,
        source_dir: str | None = None,
        source: str = "auto",
        num_train: int = 96000,
        num_val: int = 2000,
        num_test: int = 2000,
        generator: dict | None = None,
        generator_seed: int = 0,
        generator_workers: int | None = None,
        trim_padding: bool = False,
        trim_eval: bool = True,
        bucket: bool = False,
        pad_multiple: int = 64,
        name: str = "listops",
        **common,
    ):
        super().__init__(**common)
        if variant not in VARIANTS:
            raise ValueError(f"task.variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if source not in ("auto", "release", "generate"):
            raise ValueError(f"task.source must be auto, release or generate, not {source!r}")
        if variant == "taylorshift" and source == "release":
            raise ValueError(
                "task.variant=taylorshift generates its data; task.source=release does not apply"
            )
        self.variant = variant
        self.source = "generate" if variant == "taylorshift" else source
        self.source_dir = Path(source_dir) if source_dir else None
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        operators = TAYLORSHIFT_OPERATORS if variant == "taylorshift" else LRA_OPERATORS
        self.generator = ListOpsSettings(**{"operators": operators, **(generator or {})})
        self.generator_seed = generator_seed
        self.generator_workers = generator_workers
        self.max_length = max_length
        vocab_size = len(VOCAB) if variant == "taylorshift" else LRA_VOCAB_SIZE
        if variant == "taylorshift":
            if self.generator.max_length > max_length:
                raise ValueError(
                    f"task.generator.max_length {self.generator.max_length} exceeds task.max_length "
                    f"{max_length}: TaylorShift trees have exactly their drawn length"
                )
            self.form = BatchForm(trim=True)
        else:
            self.form = BatchForm(trim=trim_padding, pad_multiple=pad_multiple)
            self.trim_eval = trim_eval
            self.bucket = bucket
        self.spec = TaskSpec(
            name=name, num_classes=10, max_length=max_length, vocab_size=vocab_size, pads=variant == "lra",
            fixed_length=variant == "lra",
        )
        self.source_files: dict[str, Path] = {}
        self.source_label = ""
        self.generated = variant == "taylorshift"

    def release_dir(self) -> Path | None:
        candidates = release_candidates(self.source_dir, self.data_dir, "listops-1000")
        return first_with(candidates, *RELEASE_FILES.values())

    def build_cache(self) -> Path:
        if self.variant == "taylorshift":
            return self._build_taylorshift()
        directory = self.release_dir() if self.source != "generate" else None
        # an explicit source_dir that holds no release is a mistake to report, not a reason to generate
        if directory is None and (self.source == "release" or (self.source == "auto" and self.source_dir)):
            looked = [str(c) for c in release_candidates(self.source_dir, self.data_dir, "listops-1000")]
            raise DataNotFoundError("ListOps release TSVs", looked, FETCH_HINT)
        if directory is None:
            self.generated = True
            directory = ensure_generated(
                generated_dir(self.data_dir, self.sizes, self.generator, self.generator_seed),
                self.sizes,
                self.generator,
                self.generator_seed,
                self.generator_workers,
            )
        self.source_files = {split: directory / name for split, name in RELEASE_FILES.items()}

        def build(writer: cache.CacheWriter) -> None:
            rows = {}
            for split, path in self.source_files.items():
                examples = read_tsv(path)
                rows[split] = len(examples)
                for field, array in encode(examples, self.max_length, self.spec.vocab_size, path).items():
                    writer.save(f"{split}.{field}", array)
            self.source_label = self.folder_label(directory, rows)

        prepared = cache.prepared(
            self.data_dir,
            "listops",
            {"max_length": self.max_length, "variant": "lra"},
            list(self.source_files.values()),
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": self.source_label},
        )
        self.source_label = self.folder_label(directory, provenance.cached_rows(prepared))
        return prepared

    @staticmethod
    def folder_label(directory: Path, rows: dict[str, int]) -> str:
        """Ours (``generate listops`` writes ``generation.json``), the release (its row counts; no public
        digest of the TSVs is known), or user-supplied TSVs."""
        summary = directory / "generation.json"
        if not summary.is_file():
            return provenance.source_label("LRA release listops-1000 TSVs", "ListOps TSVs", rows, RELEASED_ROWS)
        generation = json.loads(summary.read_text())
        sizes = generation.get("sizes", {})
        return (
            f"generated with LRA's released listops rules (seed {generation.get('seed')}, "
            f"{sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')}; {directory})"
        )

    def _build_taylorshift(self) -> Path:
        self.source_label = (
            f"TaylorShift long_listops generator, lengths {self.generator.min_length}.."
            f"{self.generator.max_length}, fresh training trees every epoch"
        )
        settings = {
            "variant": "taylorshift",
            "max_length": self.max_length,
            "generator": self.generator.__dict__,
            "seed": self.generator_seed,
            "val": self.sizes["val"],
            "test": self.sizes["test"],
            "block": self.eval_batch_size,
        }

        def build(writer: cache.CacheWriter) -> None:
            for split in ("val", "test"):
                arrays = taylorshift_eval_set(
                    self.sizes[split],
                    self.eval_batch_size,
                    self.generator,
                    f"{self.generator_seed}:{split}",
                    self.max_length,
                )
                for field, array in arrays.items():
                    writer.save(f"{split}.{field}", array)

        return cache.prepared(
            self.data_dir,
            "listops",
            settings,
            [],
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": self.source_label},
        )

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.variant == "taylorshift":
            self.splits["train"] = FreshListOps(self.sizes["train"], self.generator, self.seed)

    def train_dataloader(self) -> DataLoader:
        if self.variant == "lra":
            return super().train_dataloader()
        sampler = EpochStampedSampler(self.sizes["train"], self.batch_size, shuffle=False, drop_last=True,
                                      **self.replicas())
        return self._loader(self.splits["train"], sampler)

    def describe_source(self) -> dict[str, object]:
        return {
            "data_source": self.source_label,
            "variant": self.variant,
            "cache": str(self.cache_dir),
            "files": {s: str(p) for s, p in self.source_files.items()},
            "generator": {**self.generator.__dict__, "seed": self.generator_seed} if self.generated else None,
        }
