"""Image (LRA): CIFAR-10 as a sequence of 1024 grayscale pixels, 10-way classification.

LRA's pipeline (``image/input_pipeline.py``) converts each 32x32 RGB image with TensorFlow's
``rgb_to_grayscale`` and feeds the 8-bit values as tokens (vocabulary 256) or, with ``normalize``,
as ``value / 255``. ``rgb_to_grayscale`` on uint8 works in float32: ``x = uint8 * float32(1/255)``,
``gray = 0.2989 r + 0.5870 g + 0.1140 b`` (float32), then ``uint8(gray * 255.5)``, truncating. That
is neither rounding nor flooring ``0.2989 R + 0.5870 G + 0.1140 B``; ``tf_grayscale`` does the same
float32 steps (checked against TensorFlow 2.19 on all 2^24 colours).

Splits: train = the first 90% of the training images, val = the last 10%, test = the test set
(``train[:90%]``, ``train[90%:]``, ``test``). Sources, each read as it lies on disk:
    * the python pickles ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``), as a folder or
      inside the official ``cifar-10-python.tar.gz``; train order = the batches in order, so val is
      the last 5,000 images of ``data_batch_5`` (tfds stores its copy in another order, so LRA's 5,000
      validation images are not the same ones; the rule is);
    * an image-folder tree ``{train,test}/<class>/*.png|jpg`` (a folder, or a .tar/.tar.gz of one):
      classes in sorted order (CIFAR-10's label order is alphabetical), files in natural order; the
      original order across classes is lost, so val = the last 10% of each class, and each split is
      stored in a fixed shuffled order (``lra.data.base.storage_order``);
    * a Hugging Face copy of ``uoft-cs/cifar10`` (``save_to_disk`` folder or the local cache; columns
      ``img``, ``label``): val = the last 10% of its train split.
Search order: ``source_dir``, ``<data_dir>/raw/cifar-10-batches-py``, the HF cache.

JPEG copies are lossy: the source label names the quality read from the files' quantisation tables
(e.g. "CIFAR-10, JPEG q75 copy") so results on them are never reported as the original data set.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from lra.data import cache, hf, provenance
from lra.data.base import BatchForm, LRADataModule, TaskSpec, register_task, storage_order
from lra.data.errors import DataError, DataNotFoundError
from lra.data.fetch import ARCHIVES

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
HF_REPO = "uoft-cs/cifar10"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FORMAT_VERSION = 2
RELEASED_ROWS = {"train": 50_000, "test": 10_000}  # CIFAR-10 (Krizhevsky 2009)
VAL_FRACTION = 0.1
FETCH_HINT = (
    "Get CIFAR-10 with `python -m lra.data fetch cifar10`, or set task.source_dir to a "
    "cifar-10-batches-py folder, an image-folder tree ({train,test}/<class>/), its .tar.gz, "
    "or a saved Hugging Face dataset."
)
_TF_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


def tf_grayscale(rgb: np.ndarray) -> np.ndarray:
    """TensorFlow's ``rgb_to_grayscale`` on uint8 ``(..., 3)`` images, bit for bit."""
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    gray = x[..., 0] * _TF_WEIGHTS[0] + x[..., 1] * _TF_WEIGHTS[1] + x[..., 2] * _TF_WEIGHTS[2]
    return (gray * np.float32(255.5)).astype(np.uint8)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of numpy arrays and lists) and refuses anything else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("_codecs", "encode"),
    }  # how Python 3 pickles bytes at protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 pickle")
        return super().find_class(module, name)


def read_pickle_batch(data: bytes | io.BufferedIOBase, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 32, 32, 3)`` uint8 and labels of one CIFAR-10 python batch."""
    try:
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        batch = _CifarUnpickler(stream, encoding="bytes").load()
        pixels = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise DataError(
            f"{where}: truncated or corrupt CIFAR-10 pickle ({type(error).__name__}: {error})"
        ) from None
    if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(labels) != len(pixels):
        raise DataError(
            f"{where}: expected 'data' of shape (n, 3072) and n labels, got {pixels.shape} "
            f"and {len(labels)} labels"
        )
    if labels.size and not (0 <= labels.min() and labels.max() <= 9):
        raise DataError(f"{where}: labels outside 0..9")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


@lru_cache(maxsize=1)
def _jpeg_tables() -> dict[tuple[int, ...], int]:
    """Pillow's (libjpeg's) luminance quantisation table at each quality, to name a file's quality."""
    tables = {}
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, "JPEG", quality=quality)
        tables.setdefault(tuple(Image.open(buffer).quantization[0]), quality)
    return tables


def _describe_image(image: Image.Image) -> str:
    if image.format != "JPEG":
        return str(image.format)
    quality = _jpeg_tables().get(tuple(image.quantization[0]))
    return f"JPEG q{quality}" if quality else "JPEG (non-standard tables)"


def decode_images(items: list[tuple[str, bytes]]) -> tuple[np.ndarray, set[str]] | tuple[None, str]:
    """Decode 32x32 images to RGB; returns (pixels, formats) or (None, error message)."""
    pixels = np.zeros((len(items), 32, 32, 3), dtype=np.uint8)
    formats: set[str] = set()
    for i, (where, data) in enumerate(items):
        try:
            with Image.open(io.BytesIO(data)) as image:
                formats.add(_describe_image(image))
                if image.size != (32, 32):
                    return None, f"{where}: expected a 32x32 image, got {image.size[0]}x{image.size[1]}"
                pixels[i] = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            return None, f"{where}: unreadable image ({error})"
    return pixels, formats


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _decode_all(items: list[tuple[str, bytes]], workers: int) -> tuple[np.ndarray, set[str]]:
    chunks = [items[i : i + 2000] for i in range(0, len(items), 2000)] or [[]]
    if workers <= 1 or len(chunks) == 1:
        results: Iterator = map(decode_images, chunks)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(decode_images, chunks)
    parts, formats = [], set()
    try:
        for pixels, info in results:
            if pixels is None:
                raise DataError(info)
            parts.append(pixels)
            formats |= info
    finally:
        if workers > 1 and len(chunks) > 1:
            pool.shutdown(cancel_futures=True)
    return np.concatenate(parts), formats


class ImageFolderSource:
    """``{train,test}/<class>/<files>`` in a folder or a tar archive; yields (split, class, name, bytes)."""

    def __init__(self, path: Path):
        self.path = path

    def members(self) -> Iterator[tuple[str, str, str, bytes]]:
        if self.path.is_dir():
            root = _tree_root(self.path)
            for file in sorted(root.glob("*/*/*")):
                if file.suffix.lower() in IMAGE_SUFFIXES and file.parent.parent.name in ("train", "test"):
                    yield file.parent.parent.name, file.parent.name, str(file), file.read_bytes()
            return
        try:
            with tarfile.open(self.path) as archive:
                for member in archive:
                    parts = member.name.split("/")
                    if (
                        not member.isfile()
                        or len(parts) < 3
                        or not parts[-1].lower().endswith(IMAGE_SUFFIXES)
                    ):
                        continue
                    if parts[-3] in ("train", "test"):
                        yield (
                            parts[-3],
                            parts[-2],
                            f"{self.path}:{member.name}",
                            archive.extractfile(member).read(),
                        )
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataError(f"{self.path}: truncated or corrupt archive ({error})") from None


def _tree_root(path: Path) -> Path:
    for root in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    raise DataError(f"{path}: expected train/ and test/ class folders (or one folder holding them)")


def _pickle_root(path: Path) -> Path | None:
    for root in (path, path / "cifar-10-batches-py"):
        if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
            return root
    return None


def _archive_has_pickles(path: Path) -> bool:
    try:
        with tarfile.open(path) as archive:
            return any(m.name.endswith("/data_batch_1") or m.name == "data_batch_1" for m in archive)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path}: truncated or corrupt archive ({error})") from None


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz"))


def split_last(count: int, fraction: float = VAL_FRACTION) -> int:
    """Index where the last ``fraction`` of ``count`` items begins (tfds ``train[90%:]`` rounding)."""
    return int(round(count * (1 - fraction)))


@register_task("image")
class ImageDataModule(LRADataModule):
    def __init__(
        self,
        *,
        source_dir: str | None = None,
        pixels: str = "tokens",
        prepare_workers: int | None = None,
        name: str = "image",
        **common,
    ):
        super().__init__(**common)
        if pixels not in ("tokens", "floats"):
            raise ValueError(
                f"task.pixels must be tokens (LRA: 256-way ids) or floats (value/255), not {pixels!r}"
            )
        self.source_dir = Path(source_dir) if source_dir else None
        self.pixels = pixels
        self.prepare_workers = prepare_workers or os.cpu_count() or 1
        self.form = BatchForm(float_inputs=pixels == "floats")
        self.spec = TaskSpec(
            name=name,
            num_classes=10,
            max_length=1024,
            vocab_size=256 if pixels == "tokens" else None,
            pads=False,
        )
        self.source_label = ""
        self.source_path: Path | None = None
        self.source_format = ""

    # -- finding the source -------------------------------------------------------------------
    def locate(self) -> tuple[str, Path | dict[str, list[Path]]]:
        """(format, where): format is pickles | pickles-archive | folder | hf."""
        looked: list[str] = []
        if self.source_dir is not None:
            found = self._classify(self.source_dir)
            if found is None:
                raise DataError(
                    f"task.source_dir={self.source_dir}: not a CIFAR-10 copy this loader reads "
                    "(cifar-10-batches-py, {train,test}/<class>/ images, their .tar.gz, or a "
                    "saved Hugging Face dataset)"
                )
            return found
        for candidate in (self.data_dir / "raw" / "cifar-10-batches-py", self.data_dir / "raw" / "cifar10"):
            looked.append(str(candidate))
            if candidate.exists() and (found := self._classify(candidate)):
                return found
        files = hf.cached_files(HF_REPO, ("train", "test"))
        looked.append(f"the Hugging Face cache for {HF_REPO} ({hf.hub_cache()}, {hf.datasets_cache()})")
        if files:
            return "hf", files
        raise DataNotFoundError("CIFAR-10 (task=image)", looked, FETCH_HINT)

    @staticmethod
    def _classify(path: Path) -> tuple[str, Path] | None:
        if _is_archive(path):
            return ("pickles-archive", path) if _archive_has_pickles(path) else ("folder", path)
        if not path.is_dir():
            return None
        if hf.is_saved_dataset_dict(path):
            return "hf", path
        if root := _pickle_root(path):
            return "pickles", root
        try:
            _tree_root(path)
        except DataError:
            return None
        return "folder", path

    # -- reading -------------------------------------------------------------------------------
    def read_pickles(
        self, root: Path | None, archive: Path | None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        names = (*TRAIN_BATCHES, "test_batch")
        raw: dict[str, bytes] = {}
        if archive is not None:
            try:
                with tarfile.open(archive) as tar:
                    for member in tar:
                        base = member.name.rsplit("/", 1)[-1]
                        if member.isfile() and base in names:
                            raw[base] = tar.extractfile(member).read()
            except (tarfile.TarError, EOFError, OSError) as error:
                raise DataError(f"{archive}: truncated or corrupt archive ({error})") from None
        else:
            raw = {n: (root / n).read_bytes() for n in names if (root / n).is_file()}
        missing = [n for n in names if n not in raw]
        if missing:
            raise DataError(f"{archive or root}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
        where = str(archive) + ":" if archive else f"{root}/"
        batches = {n: read_pickle_batch(raw[n], where + n) for n in names}
        train = [batches[n] for n in TRAIN_BATCHES]
        return {
            "train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
            "test": batches["test_batch"],
        }

    def read_folder(self, path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[int]]:
        """Both splits, and where each class's validation tail begins among its train images."""
        grouped: dict[str, dict[str, list[tuple[str, str, bytes]]]] = {"train": {}, "test": {}}
        for split, label, name, data in ImageFolderSource(path).members():
            grouped[split].setdefault(label, []).append((name.rsplit("/", 1)[-1], name, data))
        classes = sorted(grouped["train"])
        if len(classes) != 10 or sorted(grouped["test"]) != classes:
            raise DataError(
                f"{path}: expected the same 10 class folders under train/ and test/, found "
                f"{classes} and {sorted(grouped['test'])}"
            )
        splits, val_start = {}, []
        for split, by_class in grouped.items():
            items, labels = [], []
            for label, name in enumerate(classes):
                files = sorted(by_class[name], key=lambda f: _natural_key(f[0]))
                items += [(where, data) for _, where, data in files]
                labels += [label] * len(files)
                if split == "train":
                    val_start.append(split_last(len(files)))
            pixels, formats = _decode_all(items, self.prepare_workers)
            splits[split] = (pixels, np.asarray(labels))
            self.formats |= formats
        return splits, val_start

    def read_hf(self, where: Path | dict[str, list[Path]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        import datasets

        splits = {}
        for split, dataset in hf.load_splits(where, ("train", "test")).items():
            image_col = hf.column(dataset, ("img", "image"), f"{where} [{split}]")
            label_col = hf.column(dataset, ("label", "labels"), f"{where} [{split}]")
            dataset = dataset.cast_column(image_col, datasets.Image(decode=False))
            items = [
                (f"{where} [{split}] row {i}", record["bytes"] or Path(record["path"]).read_bytes())
                for i, record in enumerate(dataset[image_col])
            ]
            pixels, formats = _decode_all(items, self.prepare_workers)
            self.formats |= formats
            splits[split] = (pixels, np.asarray(dataset[label_col], dtype=np.int64))
        return splits

    # -- building ------------------------------------------------------------------------------
    def build_cache(self) -> Path:
        kind, where = self.locate()
        self.source_format = kind
        self.source_path = where if isinstance(where, Path) else None
        sources = [where] if isinstance(where, Path) else hf.source_paths(where)
        self.formats: set[str] = set()
        per_class_val = kind == "folder"

        def build(writer: cache.CacheWriter) -> None:
            if kind in ("pickles", "pickles-archive"):
                splits = self.read_pickles(
                    where if kind == "pickles" else None, where if kind != "pickles" else None
                )
            elif kind == "folder":
                splits, val_start = self.read_folder(where)
            else:
                splits = self.read_hf(where)
            train_pixels, train_labels = splits["train"]
            if per_class_val:
                in_val = np.zeros(len(train_labels), dtype=bool)
                for label in range(10):
                    rows = np.flatnonzero(train_labels == label)
                    in_val[rows[val_start[label] :]] = True
            else:
                in_val = np.arange(len(train_labels)) >= split_last(len(train_labels))
            parts = {
                "train": (train_pixels[~in_val], train_labels[~in_val]),
                "val": (train_pixels[in_val], train_labels[in_val]),
                "test": splits["test"],
            }
            for split, (pixels, labels) in parts.items():
                if per_class_val:  # folders list images class by class
                    order = storage_order(len(labels), split)
                    pixels, labels = pixels[order], labels[order]
                gray = tf_grayscale(pixels).reshape(len(pixels), 1024)
                writer.save(f"{split}.inputs", gray)
                writer.save(f"{split}.lengths", np.full(len(gray), 1024, dtype=np.int32))
                writer.save(f"{split}.labels", labels.astype(np.int8))
            self.source_label = self._label(kind)

        directory = cache.prepared(
            self.data_dir,
            "image",
            {"grayscale": "tf.image.rgb_to_grayscale"},
            sources,
            build,
            FORMAT_VERSION,
            describe=lambda: {"data_source": self.source_label},
        )
        self.source_label = self._checked_label(directory, str(cache.read_manifest(directory).get("data_source", "")))
        return directory

    def _checked_label(self, directory: Path, read_as: str) -> str:
        """``read_as`` (what the files are) only for CIFAR-10's 50,000 + 10,000 images and, for the archive of
        pickles, the sha256 that ``lra.data.fetch`` checks downloads against."""
        cached = provenance.cached_rows(directory)
        rows = {"train": cached["train"] + cached["val"], "test": cached["test"]}
        digest = None
        if self.source_format == "pickles-archive":
            digest = provenance.source_sha256(directory, self.source_path) == ARCHIVES["cifar10"].sha256
        other = read_as.replace("CIFAR-10", "CIFAR-10-format images", 1)
        return provenance.source_label(read_as, other, rows, RELEASED_ROWS, digest)

    def _label(self, kind: str) -> str:
        if kind.startswith("pickles"):
            return "CIFAR-10 (python pickles)"
        if kind == "hf":
            base = f"CIFAR-10 (Hugging Face {HF_REPO})"
        else:
            base = "CIFAR-10 (image folder)"
        jpeg = sorted(f for f in self.formats if f.startswith("JPEG"))
        if not jpeg:
            return base
        if len(self.formats) == 1:
            return f"CIFAR-10, {jpeg[0]} copy"
        return f"CIFAR-10, partly JPEG ({', '.join(sorted(self.formats))}) copy"

    def describe_source(self) -> dict[str, object]:
        return {
            "data_source": self.source_label,
            "format": self.source_format,
            "source": str(self.source_path) if self.source_path else f"Hugging Face cache ({HF_REPO})",
            "pixels": self.pixels,
            "grayscale": "tf.image.rgb_to_grayscale (float32, truncating)",
            "splits": "train = first 90% of train, val = last 10%"
            + (" of each class" if self.source_format == "folder" else "")
            + ", test = test",
            "cache": str(self.cache_dir),
        }
