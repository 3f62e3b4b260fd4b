"""ListOps (LRA): nested MIN/MAX/MED/SM expressions, 10-way classification of their value.

``variant: lra`` (default). Sources, in order: ``source_dir`` (the ``lra_release`` root or its
``listops-1000`` folder), then ``<data_dir>/raw/lra_release/listops-1000``, then generation with LRA's
released rules (``lra.data.generate.listops``) at the configured sizes, cached under
``<data_dir>/raw/listops-generated-<key>/`` in the release's TSV format. Files:
``basic_{train,val,test}.tsv``, header ``Source<TAB>Target``. Tokenised as LRA's pipeline does
(``listops/input_pipeline.py``): parentheses dropped, ``]`` kept as its own token, whitespace split;
15 real tokens (ids 1..15, 0 = padding), truncated to ``max_length`` (2000), padded with 0.

``tokenizer``: ``lra`` is that pipeline, LRA's since c209b2a (2021-03-04), which mapped ``]`` to ``X`` because
its tokenizer removed non-alphanumeric characters. ``lra_2020`` is the pipeline before it, the code published
with the paper (f866e43, 2020-11-02): ``tfds.deprecated.text.Tokenizer()`` keeps runs of letters and digits only,
so ``[MAX 2 9 ]`` reads ``MAX 2 9``: the operators stay, every closing bracket, which says where an operand list
ends, is gone. Its vocabulary (built from the training set) numbers the tokens in another order, which a learned
embedding does not see; here they keep their ids.

``variant: taylorshift`` is TaylorShift's ListOps, served by ``lra.data.listops_taylorshift``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from lra.data import cache, provenance
from lra.data.base import SPLITS, PaddedTokenDataModule, TaskSpec, first_with, register_task, release_candidates
from lra.data.errors import DataError, DataNotFoundError
from lra.data.generate.listops import LRA_OPERATORS, ListOpsSettings, generate

VOCAB = ["<pad>", *[str(d) for d in range(10)], "[MIN", "[MAX", "[MED", "[SM", "]", "[FIRST", "[LAST"]
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
LRA_VOCAB_SIZE = 16  # pad + 15 tokens; FIRST and LAST only in the TaylorShift variant
RELEASE_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
RELEASED_ROWS = {"train": 96_000, "val": 2_000, "test": 2_000}  # lra_release/listops-1000 (LRA paper: 96K/2K/2K)
FORMAT_VERSION = 2
FETCH_HINT = (
    "Get LRA's release with `python -m lra.data fetch lra_release` (or set task.source_dir to its "
    "unpacked root), or generate the data with task.source=generate."
)


TOKENIZERS = ("lra", "lra_2020")  # task.tokenizer (module docstring)


def tokenize(expression: str, vocab_size: int, path: Path, line: int, tokenizer: str = "lra") -> list[int]:
    tokens = expression.replace("(", " ").replace(")", " ").split()
    bad = next((t for t in tokens if not 0 < TOKEN_ID.get(t, -1) < vocab_size), None)
    if bad is not None:
        raise DataError(f"{path}:{line}: unknown ListOps token {bad!r}")
    return [TOKEN_ID[t] for t in tokens if tokenizer == "lra" or t != "]"]


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
    examples: list[tuple[str, int]], max_length: int, vocab_size: int, path: Path, tokenizer: str = "lra"
) -> dict[str, np.ndarray]:
    inputs = np.zeros((len(examples), max_length), dtype=np.uint8)
    lengths = np.zeros(len(examples), dtype=np.int32)
    labels = np.zeros(len(examples), dtype=np.int8)
    for i, (expression, label) in enumerate(examples):
        ids = tokenize(expression, vocab_size, path, i + 2, tokenizer)[:max_length]
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


@register_task("listops")
class ListOpsDataModule(PaddedTokenDataModule):
    """ListOps as LRA releases it (``variant: lra``); a variant is a subclass that names itself in ``variant``."""

    variant: ClassVar[str] = "lra"
    operators: ClassVar[tuple[str, ...]] = LRA_OPERATORS
    _variants: ClassVar[dict[str, type[ListOpsDataModule]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        ListOpsDataModule._variants[cls.variant] = cls

    @classmethod
    def variant_class(cls, options: Mapping[str, object]) -> type[ListOpsDataModule]:
        """The data module of ``task.variant``."""
        variants = {ListOpsDataModule.variant: ListOpsDataModule, **ListOpsDataModule._variants}
        variant = options.get("variant", ListOpsDataModule.variant)
        if variant not in variants:
            raise ValueError(f"task.variant must be one of {', '.join(variants)}, not {variant!r}")
        return variants[variant]

    # The task's options with their defaults, read by lra.data.task_options: alike across tasks by design.
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
        tokenizer: str = "lra",
        name: str = "listops",
        **common,
    ):
        super().__init__(**common)
        if variant != self.variant:  # lra.data.create picks the data module of each variant
            raise ValueError(f"task.variant={variant!r}: {type(self).__name__} serves variant {self.variant!r}")
        if source not in ("auto", "release", "generate"):
            raise ValueError(f"task.source must be auto, release or generate, not {source!r}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"task.tokenizer must be one of {', '.join(TOKENIZERS)}, not {tokenizer!r}")
        self.tokenizer = tokenizer
        self.source = source
        self.source_dir = Path(source_dir) if source_dir else None
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.generator = ListOpsSettings(**{"operators": self.operators, **(generator or {})})
        self.generator_seed = generator_seed
        self.generator_workers = generator_workers
        self.max_length = max_length
        self.spec = TaskSpec(name=name, num_classes=10, max_length=max_length, vocab_size=LRA_VOCAB_SIZE)
        self.source_files: dict[str, Path] = {}
        self.source_label = ""
        self.generated = False

    def release_dir(self) -> Path | None:
        candidates = release_candidates(self.source_dir, self.data_dir, "listops-1000")
        return first_with(candidates, *RELEASE_FILES.values())

    def build_cache(self) -> Path:
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
                encoded = encode(examples, self.max_length, self.spec.vocab_size, path, self.tokenizer)
                for field, array in encoded.items():
                    writer.save(f"{split}.{field}", array)
            self.source_label = self.tokenized_label(self.folder_label(directory, rows))

        # the default tokenizer keeps the key it always had, so existing caches stay valid
        tokenizer = {} if self.tokenizer == "lra" else {"tokenizer": self.tokenizer}
        prepared = cache.prepared(
            self.data_dir,
            "listops",
            {"max_length": self.max_length, "variant": "lra", **tokenizer},
            list(self.source_files.values()),
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": self.source_label},
        )
        self.source_label = self.tokenized_label(self.folder_label(directory, provenance.cached_rows(prepared)))
        return prepared

    def tokenized_label(self, label: str) -> str:
        """The data's label, with the tokenizer where it is not LRA's released one (the data then differs)."""
        if self.tokenizer == "lra":
            return label
        return f"{label}; tokenized as LRA's 2020 pipeline (brackets dropped)"

    @staticmethod
    def folder_label(directory: Path, rows: dict[str, int]) -> str:
        """Ours (``generate listops`` writes ``generation.json``), the release (its row counts; no public
        digest of the TSVs is known), or user-supplied TSVs. What the data is, not where it lies: the tables
        split cells by this label, and the records list the files apart."""
        summary = directory / "generation.json"
        if not summary.is_file():
            return provenance.source_label("LRA release listops-1000 TSVs", "ListOps TSVs", rows, RELEASED_ROWS)
        generation = json.loads(summary.read_text())
        sizes = generation.get("sizes", {})
        return (
            f"generated with LRA's released listops rules (seed {generation.get('seed')}, "
            f"{sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')})"
        )

    def describe_source(self) -> dict[str, object]:
        return {
            "data_source": self.source_label,
            "variant": self.variant,
            "cache": str(self.cache_dir),
            "files": {s: str(p) for s, p in self.source_files.items()},
            "generator": {**self.generator.__dict__, "seed": self.generator_seed} if self.generated else None,
        }
