"""Text (LRA): IMDB movie reviews at byte level, 2-way sentiment classification.

LRA's pipeline (``text_classification/input_pipeline.py``) reads tfds ``imdb_reviews``, whose text is
each review file's bytes with surrounding ASCII whitespace stripped (``imdb_f.read().strip()``), label
``neg`` = 0, ``pos`` = 1; it encodes them with tfds' ``ByteTextEncoder`` (id = byte + 1, so 0 is never
a byte and pads), truncates to ``max_length`` and pads with 0. ``max_length``: the released config
says 1000, the paper 4K ("fixed max length of 4K"); 1000, 2000 and 4000 are the values in use. The
cache stores the raw bytes (one per position) and batches add the 1.

Validation: IMDB has no validation split and LRA validated on test (``validation: test``); the other
choice, ``validation: holdout``, holds out ``holdout_fraction`` of train (a fixed random slice drawn
with ``split_seed``) and validates on it. The choice is recorded with each run (``validation_split``
and ``describe_source``).

Sources, in order: ``source_dir`` (an ``aclImdb`` folder or the folder holding it, the
``aclImdb_v1.tar.gz`` archive read without unpacking, or a saved Hugging Face dataset), then
``<data_dir>/raw/aclImdb``, then the Hugging Face cache of ``stanfordnlp/imdb`` (its ``text`` is
stripped and UTF-8 encoded the same way). Reviews are sorted (neg before pos, by file id), then
stored in a fixed shuffled order (``lra.data.base.storage_order``).

Most reviews are far shorter than 4000 bytes. ``trim_eval`` (on) evaluates on length-sorted batches cut
to their longest review, which predicts the same; ``trim_padding`` / ``bucket`` (off, see
``lra.data.base`` and ``lra.data.loader``) cut the padding of training batches too.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np

from lra.data import cache, hf, provenance
from lra.data.base import PaddedTokenDataModule, TaskSpec, register_task, storage_order
from lra.data.errors import DataError, DataNotFoundError
from lra.data.fetch import ARCHIVES

HF_REPO = "stanfordnlp/imdb"
LABELS = {"neg": 0, "pos": 1}
BYTE_VOCAB_SIZE = 257  # ByteTextEncoder: 256 bytes shifted by one, plus 0 for padding
FORMAT_VERSION = 2
RELEASED_ROWS = {"train": 25_000, "test": 25_000}  # aclImdb_v1: labelled reviews (Maas et al. 2011)
VALIDATION = ("test", "holdout")
FETCH_HINT = (
    "Get IMDB with `python -m lra.data fetch imdb`, or set task.source_dir to an aclImdb folder, "
    "the aclImdb_v1.tar.gz archive, or a saved Hugging Face dataset."
)
_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


def encode_bytes(documents: list[bytes], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw bytes ``(n, max_length)`` uint8, zero-filled past each document's end, and the lengths."""
    inputs = np.zeros((len(documents), max_length), dtype=np.uint8)
    lengths = np.zeros(len(documents), dtype=np.int32)
    for i, document in enumerate(documents):
        cut = document[:max_length]
        inputs[i, : len(cut)] = np.frombuffer(cut, dtype=np.uint8)
        lengths[i] = len(cut)
    return inputs, lengths


def _folder_root(path: Path) -> Path | None:
    for root in (path, path / "aclImdb"):
        if (root / "train" / "pos").is_dir() or (root / "test" / "pos").is_dir():
            return root
    return None


def read_folder(root: Path) -> dict[str, list[tuple[int, int, bytes]]]:
    """(label, file id, stripped bytes) per split, from ``{train,test}/{pos,neg}/<id>_<rating>.txt``."""
    reviews: dict[str, list[tuple[int, int, bytes]]] = {"train": [], "test": []}
    for split in reviews:
        for name, label in LABELS.items():
            folder = root / split / name
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: missing; an aclImdb copy has train/ and test/, each with pos/ and neg/"
                )
            for file in folder.glob("*.txt"):
                match = re.fullmatch(r"(\d+)_(\d+)\.txt", file.name)
                if match is None:
                    raise DataError(f"{file}: not an aclImdb review file name (<id>_<rating>.txt)")
                reviews[split].append((label, int(match[1]), file.read_bytes().strip()))
    return reviews


def read_archive(path: Path) -> dict[str, list[tuple[int, int, bytes]]]:
    """The same, straight from an ``aclImdb`` .tar.gz, without unpacking it."""
    reviews: dict[str, list[tuple[int, int, bytes]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                match = _REVIEW.search(member.name)
                if match and member.isfile():
                    reviews[match[1]].append(
                        (LABELS[match[2]], int(match[3]), archive.extractfile(member).read().strip())
                    )
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path}: truncated or corrupt archive ({error})") from None
    return reviews


def read_hf(where: Path | dict[str, list[Path]]) -> dict[str, list[tuple[int, int, bytes]]]:
    reviews = {}
    for split, dataset in hf.load_splits(where, ("train", "test")).items():
        text = hf.column(dataset, ("text",), f"{where} [{split}]")
        label = hf.column(dataset, ("label",), f"{where} [{split}]")
        labels = dataset[label]
        if set(labels) - {0, 1}:
            raise DataError(
                f"{where} [{split}]: labels must be 0 (neg) or 1 (pos), found {sorted(set(labels))}"
            )
        reviews[split] = [
            (y, i, t.encode("utf-8").strip())
            for i, (t, y) in enumerate(zip(dataset[text], labels, strict=True))
        ]
    return reviews


@register_task("text")
class TextDataModule(PaddedTokenDataModule):
    id_offset = 1  # bytes stored, ids = byte + 1 (tfds' ByteTextEncoder)

    # The task's options with their defaults, read by lra.data.task_options: alike across tasks by design.
    def __init__(
        self,
        *,
        max_length: int = 4000,
        source_dir: str | None = None,
        validation: str = "test",
        holdout_fraction: float = 0.1,
        split_seed: int = 0,
        pad_multiple: int = 128,
        name: str = "text",
        **common,
    ):
        super().__init__(pad_multiple=pad_multiple, **common)
        if max_length < 1:
            raise ValueError(f"task.max_length must be positive (LRA: 1000, 2000 or 4000), got {max_length}")
        if validation not in VALIDATION:
            raise ValueError(
                f"task.validation must be test (LRA: validate on test) or holdout, not {validation!r}"
            )
        if not 0 < holdout_fraction < 1:
            raise ValueError(f"task.holdout_fraction must be between 0 and 1, got {holdout_fraction}")
        self.max_length = max_length
        self.source_dir = Path(source_dir) if source_dir else None
        self.validation = validation
        self.holdout_fraction = holdout_fraction
        self.split_seed = split_seed
        self.validation_split = "test" if validation == "test" else "val"
        self.spec = TaskSpec(name=name, num_classes=2, max_length=max_length, vocab_size=BYTE_VOCAB_SIZE)
        self.source_kind = ""
        self.label = ""
        self.source: Path | dict[str, list[Path]] | None = None
        self.counts: dict[str, int] = {}

    def locate(self) -> tuple[str, Path | dict[str, list[Path]]]:
        """(kind, where): kind is folder | archive | hf."""
        if self.source_dir is not None:
            path = self.source_dir
            if path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz")):
                return "archive", path
            if path.is_dir() and hf.is_saved_dataset_dict(path):
                return "hf", path
            if path.is_dir() and (root := _folder_root(path)):
                return "folder", root
            raise DataError(
                f"task.source_dir={path}: not an aclImdb folder, an aclImdb .tar.gz, or a saved "
                "Hugging Face dataset"
            )
        raw = self.data_dir / "raw" / "aclImdb"
        if raw.is_dir() and (root := _folder_root(raw)):
            return "folder", root
        if files := hf.cached_files(HF_REPO, ("train", "test")):
            return "hf", files
        looked = [str(raw), f"the Hugging Face cache for {HF_REPO} ({hf.hub_cache()}, {hf.datasets_cache()})"]
        raise DataNotFoundError("IMDB (task=text)", looked, FETCH_HINT)

    def build_cache(self) -> Path:
        kind, where = self.locate()
        self.source_kind, self.source = kind, where
        sources = [where] if isinstance(where, Path) else hf.source_paths(where)
        settings = {"max_length": self.max_length, "validation": self.validation}
        if self.validation == "holdout":
            settings |= {"holdout_fraction": self.holdout_fraction, "split_seed": self.split_seed}

        def build(writer: cache.CacheWriter) -> None:
            reader = {"folder": read_folder, "archive": read_archive, "hf": read_hf}[kind]
            reviews = reader(where)
            for split, items in reviews.items():
                if not items:
                    raise DataError(f"{where}: found no {split} reviews")
                items.sort(key=lambda item: (item[0], item[1]))
            parts = {"train": reviews["train"], "test": reviews["test"]}
            if self.validation == "holdout":
                order = np.random.default_rng(self.split_seed).permutation(len(parts["train"]))
                cut = len(order) - int(round(len(order) * self.holdout_fraction))
                train = parts["train"]
                parts["train"] = [train[i] for i in np.sort(order[:cut])]
                parts["val"] = [train[i] for i in np.sort(order[cut:])]
            for split, items in parts.items():
                items = [items[i] for i in storage_order(len(items), split)]
                inputs, lengths = encode_bytes([text for _, _, text in items], self.max_length)
                writer.save(f"{split}.inputs", inputs)
                writer.save(f"{split}.lengths", lengths)
                writer.save(f"{split}.labels", np.array([label for label, _, _ in items], dtype=np.int8))

        prepared = cache.prepared(
            self.data_dir,
            "text",
            settings,
            sources,
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": f"IMDB reviews ({self.source_kind})"},
        )
        self.label = self._label(prepared)
        return prepared

    def _label(self, prepared: Path) -> str:
        """The IMDB data set only with its 25,000 + 25,000 labelled reviews and, for the archive, the sha256
        that ``lra.data.fetch`` checks downloads against."""
        kind = {"folder": "aclImdb folder", "archive": "aclImdb archive", "hf": f"Hugging Face {HF_REPO}"}
        cached = provenance.cached_rows(prepared)
        rows = {"train": cached["train"] + cached.get("val", 0), "test": cached["test"]}
        digest = None
        if self.source_kind == "archive":
            digest = provenance.source_sha256(prepared, self.source) == ARCHIVES["imdb"].sha256
        where = kind[self.source_kind]
        return provenance.source_label(f"IMDB reviews (Maas et al. 2011; {where})", f"IMDB-format reviews ({where})",
                                       rows, RELEASED_ROWS, digest)

    def validation_description(self) -> str:
        if self.validation == "test":
            return "test (LRA's protocol: IMDB has no validation split, so LRA validated on test)"
        return (
            f"val: held-out {self.holdout_fraction:.0%} of train "
            f"(random slice, split_seed {self.split_seed}); "
            "differs from LRA's protocol"
        )

    def describe_source(self) -> dict[str, object]:
        where = str(self.source) if isinstance(self.source, Path) else f"Hugging Face cache ({HF_REPO})"
        return {
            "data_source": self.label,
            "source": where,
            "validation": self.validation_description(),
            "encoding": f"UTF-8 bytes of the stripped review, id = byte + 1 (0 = padding), first "
            f"{self.max_length} bytes",
            "cache": str(self.cache_dir),
        }
