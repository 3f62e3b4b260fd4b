"""Pathfinder (LRA): is there a path between the two dots? Binary classification of R x R pixels.

Source format (the LRA release, ``lra_release/pathfinder{32,64,128,256}/<difficulty dir>/``, and our
generator's output, ``lra.data.generate.pathfinder``): ``metadata/*.npy`` files that are text despite the
suffix, one image per line, space-separated ``<image dir> <file name> <index> <label> ...`` (e.g.
``imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1``), and the grayscale PNGs under ``imgs/``. A real ``.npy``
holding a 2-D string array (what ``snakes2.py`` itself saves) is read too. Difficulty folders:
``curv_baseline`` (easy), ``curv_contour_length_9`` (intermediate), ``curv_contour_length_14`` (hard; LRA's
Table 1). Path-X is ``resolution=128``.

Splits (``split_protocol``):
    ``lra``: LRA's TFDS builder (``lra_benchmarks/data/pathfinder.py``) keys each row
        ``"<image dir>_<file name>_<row number in its file, from 1>"``; TFDS stores a split ordered by the
        md5 of ``salt + key`` (salt: the split name ``easy|intermediate|hard``), and LRA reads
        ``[:80%]``, ``[80%:90%]``, ``[90%:]`` of that order (boundaries ``round(p * n / 100)``), then drops
        empty image files (``input_pipeline.py``'s filter). We reproduce that order exactly.
    ``s4``: state-spaces/s4 ``PathFinderDataset``: metadata files by numeric name, rows in order, empty
        images left out, then ``random_split`` with ``torch.Generator().manual_seed(42)``, 10% val, 10% test.

Empty image files are left out, as both pipelines do (the release has one:
``pathfinder32/curv_baseline/imgs/0/sample_172.png``); each is logged, kept in the cache's
``empty_images`` array and listed by ``describe_source()``. Any other unreadable image, a missing one or
a bad metadata row stops preparation with its path (and row).

Inputs: the pixels in row-major order, ``R*R`` positions, no padding; as tokens 0..255 (LRA) or, with
``pixels=floats``, as floats ``pixel / 255`` (LRA's ``normalize=True``).

Sources, in order: ``source_dir`` (the ``lra_release`` root, a ``pathfinderNN`` folder or a difficulty
folder); ``<data_dir>/raw/lra_release/``; a set generated earlier in
``<data_dir>/raw/pathfinder-generated-<key>/``; else generation (automatic at resolution 32; larger
resolutions need ``generate_large=true`` or the ``generate`` command, and the error says how long
generation would take). The data label calls a folder the LRA release only when it holds the released
200,000 rows and no ``generator.json`` of ours; any other folder is "user-supplied ... (n rows)".
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lra.data import cache, provenance
from lra.data.base import SPLITS, BatchForm, LRADataModule, TaskSpec, register_task
from lra.data.errors import DataError, DataNotFoundError
from lra.data.generate.pathfinder import (
    DIFFICULTY_DIRS,
    GENERATOR_VERSION,
    SETTINGS_FILE,
    STYLES,
    Settings,
    generate_chunk,
    generate_dataset,
    process_pool,
    read_settings,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: generated sets come from generator version 2 (the official flow)
RELEASED_ROWS = 200_000  # metadata rows of each released difficulty folder (LRA's 160k/20k/20k splits)
SPLIT_PROTOCOLS = ("lra", "s4")
SOURCES = ("auto", "release", "generate")
LRA_FRACTIONS = (80, 90)  # TFDS percent slices [:80%], [80%:90%], [90%:]
S4_SEED, S4_FRACTION = 42, 0.1
FETCH_COMMAND = "python -m lra.data fetch lra_release"
NUMPY_MAGIC = b"\x93NUMPY"
DECODE_PART = 5000  # images per decoding job
EMPTY_IMAGES = "empty_images"  # cache array: the image files left out for being empty


@dataclass(frozen=True)
class Row:
    """One metadata line: where it was read, the image it names and its label."""

    metadata: Path
    line: int  # 1-based row number within its metadata file
    image_dir: str
    file_name: str
    label: int

    @property
    def where(self) -> str:
        return f"{self.metadata}:{self.line}"

    @property
    def lra_key(self) -> str:
        return f"{self.image_dir}_{self.file_name}_{self.line}"


def _metadata_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if data.startswith(NUMPY_MAGIC):
        try:
            table = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise DataError(f"{path}: unreadable .npy metadata ({error})") from None
        if table.ndim != 2:
            raise DataError(f"{path}: expected a 2-D table of metadata rows, got shape {table.shape}")
        return [" ".join(str(v) for v in row) for row in table]
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: metadata is neither text nor a .npy array ({error})") from None


def read_metadata(path: Path) -> list[Row]:
    """The rows of one metadata file; a row that does not name an image and a 0/1 label is an error."""
    rows = []
    for line, text in enumerate(_metadata_lines(path), start=1):
        if not text.strip():
            continue
        fields = text.split()
        if len(fields) < 4 or fields[3] not in ("0", "1"):
            raise DataError(f"{path}:{line}: expected '<image dir> <file name> <index> <label 0|1> ...', "
                            f"got {text!r:.100}")
        relative = Path(fields[0], fields[1])
        if relative.is_absolute() or ".." in relative.parts:
            raise DataError(f"{path}:{line}: image path {str(relative)!r} leaves the data folder")
        rows.append(Row(path, line, fields[0], fields[1], int(fields[3])))
    return rows


def metadata_files(directory: Path) -> list[Path]:
    """The ``*.npy`` files of ``metadata/``, less hidden ones (a writer's temporary files, macOS ``._*``)."""
    return sorted(p for p in (directory / "metadata").glob("*.npy") if not p.name.startswith("."))


def read_rows(directory: Path) -> list[Row]:
    """Every row of a difficulty folder, files in name order; an image listed twice is an error."""
    files = metadata_files(directory)
    if not files:
        raise DataError(f"{directory / 'metadata'}: no *.npy metadata files")
    rows, seen = [], {}
    for path in files:
        for row in read_metadata(path):
            image = f"{row.image_dir}/{row.file_name}"
            if image in seen:
                raise DataError(f"{row.where}: image {image} is listed twice (also at {seen[image]})")
            seen[image] = row.where
            rows.append(row)
    return rows


def lra_order(rows: list[Row], difficulty: str) -> list[int]:
    """Row indices in the order TFDS stored LRA's split: by md5(split name + key), as a 128-bit integer."""
    salt = hashlib.md5(difficulty.encode())

    def hashed(index: int) -> int:
        digest = salt.copy()
        digest.update(rows[index].lra_key.encode())
        return int(digest.hexdigest(), 16)

    return sorted(range(len(rows)), key=hashed)


def split_rows(rows: list[Row], empty: set[int], protocol: str, difficulty: str) -> dict[str, list[int]]:
    """Row indices of train/val/test under ``protocol`` (see the module docstring); empty images left out."""
    if protocol == "lra":
        order = lra_order(rows, difficulty)
        n = len(order)
        cuts = [0, *(int(round(p * n / 100.0)) for p in LRA_FRACTIONS), n]
        return {split: [i for i in order[cuts[j] : cuts[j + 1]] if i not in empty]
                for j, split in enumerate(SPLITS)}
    numbered = sorted(range(len(rows)), key=lambda i: (_numeric_stem(rows[i].metadata), i))
    kept = [i for i in numbered if i not in empty]
    n = len(kept)
    held_out = int(S4_FRACTION * n)  # each of val and test
    train = n - 2 * held_out
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(S4_SEED)).tolist()
    bounds = {"train": (0, train), "val": (train, train + held_out), "test": (train + held_out, n)}
    return {split: [kept[p] for p in permutation[start:stop]] for split, (start, stop) in bounds.items()}


def _numeric_stem(path: Path) -> tuple[int, str]:
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 62, path.stem)


def find_empty(directory: Path, rows: list[Row]) -> set[int]:
    """Indices of rows whose image file is empty; a missing image is an error."""
    empty = set()
    for i, row in enumerate(rows):
        path = directory / row.image_dir / row.file_name
        try:
            size = path.stat().st_size
        except OSError:
            raise DataError(f"{path}: image missing (listed at {row.where})") from None
        if size == 0:
            empty.add(i)
    return empty


def decode(directory: Path, rows: list[Row], indices: list[int], resolution: int, workers: int = 1,
           part: int = DECODE_PART) -> np.ndarray:
    """The listed images as ``(n, resolution**2)`` uint8, row-major, decoded by ``workers`` processes."""
    listed = [rows[i] for i in indices]
    if workers <= 1 or len(listed) <= part:
        return _decode_rows(directory, listed, resolution)
    parts = [listed[i : i + part] for i in range(0, len(listed), part)]
    with process_pool(workers) as pool:
        return np.concatenate(list(pool.map(_decode_rows, repeat(directory), parts, repeat(resolution))))


def _decode_rows(directory: Path, rows: list[Row], resolution: int) -> np.ndarray:
    """Images of ``rows`` in order; an unreadable or odd-sized one is an error naming it and its row."""
    pixels = np.empty((len(rows), resolution * resolution), dtype=np.uint8)
    for out, row in enumerate(rows):
        path = directory / row.image_dir / row.file_name
        try:
            with Image.open(path) as image:
                image.load()
                gray = image if image.mode == "L" else image.convert("L")
                array = np.asarray(gray)
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: unreadable image ({error}); listed at {row.where}") from None
        if array.shape != (resolution, resolution):
            raise DataError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {resolution}x"
                            f"{resolution} (task.resolution={resolution}); listed at {row.where}")
        pixels[out] = array.reshape(-1)
    return pixels


def estimate_generation_seconds(resolution: int, difficulty: str, num_images: int, workers: int) -> float:
    """Time to generate ``num_images`` here, from drawing and encoding a small batch now."""
    settings = Settings(resolution, difficulty)
    count = 32
    generate_chunk(settings, seed=0, chunk=0, count=4)  # builds the stamp tables
    started = time.process_time()
    for image in generate_chunk(settings, seed=0, chunk=1, count=count).images:
        Image.fromarray(image, mode="L").save(io.BytesIO(), format="PNG", compress_level=1)
    return (time.process_time() - started) / count * num_images / max(workers, 1)


@register_task("pathfinder")
class PathfinderDataModule(LRADataModule):
    """``task=pathfinder``: the release or a generated set, split, decoded once into a uint8 cache."""

    def __init__(self, *, resolution: int = 32, difficulty: str = "hard", source: str = "auto",
                 source_dir: str | None = None, split_protocol: str = "lra", pixels: str = "tokens",
                 num_images: int = 200_000, generator_seed: int = 0, prepare_workers: int | None = None,
                 generate_large: bool = False, name: str = "pathfinder", **common):
        super().__init__(**common)
        checks = {"resolution": (resolution, tuple(STYLES)),
                  "difficulty": (difficulty, tuple(DIFFICULTY_DIRS)),
                  "source": (source, SOURCES),
                  "split_protocol": (split_protocol, SPLIT_PROTOCOLS)}
        for key, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"task.{key}={value!r}; valid: {', '.join(map(str, valid))}")
        self.resolution = resolution
        self.difficulty = difficulty
        self.source = source
        self.source_dir = Path(source_dir) if source_dir else None
        self.split_protocol = split_protocol
        if pixels not in ("tokens", "floats"):
            raise ValueError(f"task.pixels must be tokens or floats, not {pixels!r}")
        self.form = BatchForm(float_inputs=pixels == "floats")
        self.num_images = num_images
        self.generator_seed = generator_seed
        self.prepare_workers = prepare_workers or os.cpu_count() or 1
        self.generate_large = generate_large
        self.spec = TaskSpec(name=name, num_classes=2, max_length=resolution * resolution,
                             vocab_size=256 if pixels == "tokens" else None, pads=False)
        self.source_kind: str | None = None  # release | generated, once located
        self.source_folder: Path | None = None
        self.source_label = ""

    @property
    def difficulty_dir(self) -> str:
        return DIFFICULTY_DIRS[self.difficulty]

    def _release_candidates(self, root: Path) -> list[Path]:
        """Where a difficulty folder may sit under an unpacked ``lra_release`` (nested once or twice)."""
        relative = Path(f"pathfinder{self.resolution}", self.difficulty_dir)
        nested = root / "lra_release"
        return [base / relative for base in (root, nested, nested / "lra_release")]

    def _given_candidates(self, given: Path) -> list[Path]:
        return [*self._release_candidates(given), given / self.difficulty_dir, given]

    def release_dir(self) -> Path | None:
        """The difficulty folder from ``source_dir`` or ``<data_dir>/raw/lra_release``, or None."""
        if self.source_dir is not None:
            candidates = self._given_candidates(self.source_dir)
            found = next((c for c in candidates if metadata_files(c)), None)
            if found is None:
                raise DataNotFoundError("pathfinder", [str(c / "metadata" / "*.npy") for c in candidates],
                                        f"task.source_dir={self.source_dir} holds no {self.difficulty_dir} "
                                        f"folder of pathfinder{self.resolution}; fix it or set "
                                        "task.source_dir=null")
            return found
        candidates = self._release_candidates(self.data_dir / "raw" / "lra_release")
        return next((c for c in candidates if metadata_files(c)), None)

    def generated_root(self) -> Path:
        """Where our generated set for these settings lives (``out_root`` of ``generate_dataset``)."""
        identity = {"resolution": self.resolution, "difficulty": self.difficulty,
                    "num_images": self.num_images, "seed": self.generator_seed}
        key = cache.cache_key("pathfinder-generated", identity, [], GENERATOR_VERSION)
        return self.data_dir / "raw" / f"pathfinder-generated-{key}"

    def generated_dir(self) -> Path:
        return self.generated_root() / f"pathfinder{self.resolution}" / self.difficulty_dir

    def ensure_generated(self, progress: bool = True) -> Path:
        """Generate (or finish generating) the set for these settings; return its difficulty folder."""
        return generate_dataset(self.generated_root(), self.resolution, self.difficulty, self.num_images,
                                self.generator_seed, self.prepare_workers, progress=progress)

    def _generate_command(self) -> str:
        return (f"python -m lra.data generate pathfinder resolution={self.resolution} "
                f"difficulty={self.difficulty}")

    def _not_found(self, looked: list[Path], why: str) -> DataNotFoundError:
        hint = f"{why}\nFetch the LRA release: {FETCH_COMMAND}\nor generate it: {self._generate_command()}"
        return DataNotFoundError("pathfinder", [str(p / "metadata" / "*.npy") for p in looked], hint)

    def locate(self) -> tuple[str, Path]:
        """The source to read (``release`` or ``generated``) and its difficulty folder; may generate it."""
        release_looked = self._release_candidates(self.data_dir / "raw" / "lra_release")
        if self.source != "generate":
            found = self.release_dir()
            if found is not None:
                return "release", found
            if self.source == "release":
                raise self._not_found(release_looked, "task.source=release, and no release was found.")
        generated = self.generated_dir()
        settings = read_settings(generated)
        if settings is not None and settings.get("complete"):
            return "generated", generated
        if self.resolution > 32 and not self.generate_large:
            seconds = estimate_generation_seconds(self.resolution, self.difficulty, self.num_images,
                                                  self.prepare_workers)
            raise self._not_found(
                [*release_looked, generated],
                f"Generating {self.num_images} {self.resolution}x{self.resolution} images would take about "
                f"{seconds / 60:.0f} min on {self.prepare_workers} cores here; opt in with "
                f"task.generate_large=true or run the generate command.")
        log.info("pathfinder: generating %d %dx%d %s images into %s", self.num_images, self.resolution,
                 self.resolution, self.difficulty, generated)
        return "generated", self.ensure_generated()

    def build_cache(self) -> Path:
        kind, directory = self.locate()
        self.source_kind, self.source_folder = kind, directory
        files = metadata_files(directory)
        settings = {"resolution": self.resolution, "difficulty": self.difficulty,
                    "split_protocol": self.split_protocol, "source": kind}

        def build(writer: cache.CacheWriter) -> None:
            rows = read_rows(directory)
            empty = find_empty(directory, rows)
            left_out = sorted(str(directory / rows[i].image_dir / rows[i].file_name) for i in empty)
            for path in left_out:
                log.warning("pathfinder: %s is empty; left out, as LRA's and S4's pipelines do", path)
            writer.save(EMPTY_IMAGES, np.array(left_out, dtype=str))
            splits = split_rows(rows, empty, self.split_protocol, self.difficulty)
            for split, indices in splits.items():
                writer.save(f"{split}.inputs", decode(directory, rows, indices, self.resolution,
                                                      self.prepare_workers))
                writer.save(f"{split}.lengths", np.full(len(indices), self.resolution**2, dtype=np.int32))
                writer.save(f"{split}.labels", np.array([rows[i].label for i in indices], dtype=np.int8))

        # Identity of the metadata files only: stat-ing 200k images at every start would cost seconds, and
        # released images never change while ours are rewritten only with their chunk's metadata file.
        sources = files + ([directory / SETTINGS_FILE] if kind == "generated" else [])
        prepared = cache.prepared(self.data_dir, "pathfinder", settings, sources, build, version=CACHE_VERSION)
        self.source_label = self._label(prepared, read_settings(directory))
        return prepared

    def _label(self, prepared: Path, generated: dict[str, object] | None) -> str:
        """Ours (a ``generator.json`` beside the metadata), the release (its 200,000 rows), or neither."""
        name = f"Pathfinder-{self.resolution} {self.difficulty}"
        if generated is not None:
            return f"{name}, generated by lra"
        empty = len(np.load(prepared / f"{EMPTY_IMAGES}.npy"))
        rows = {"images": sum(provenance.cached_rows(prepared).values()) + empty}
        return provenance.source_label(f"{name}, LRA release", f"{name} images", rows, {"images": RELEASED_ROWS})

    def describe_source(self) -> dict[str, object]:
        described: dict[str, object] = {"data_source": self.source_label, "cache": str(self.cache_dir),
                                        "source": self.source_kind, "folder": str(self.source_folder),
                                        "split_protocol": self.split_protocol}
        settings = read_settings(self.source_folder) if self.source_folder else None
        if settings is not None:
            described["generator_version"] = settings.get("version")
        if self.cache_dir is not None:
            described["empty_images_left_out"] = np.load(self.cache_dir / f"{EMPTY_IMAGES}.npy").tolist()
        return described
