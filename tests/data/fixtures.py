"""Tiny data sets in the real on-disk formats of each LRA source."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from lra.data.image import CLASSES

REVIEWS = {
    # (split, label folder, file name): file contents (bytes, as on disk)
    ("train", "neg", "3_1.txt"): b"  Awful.\n",
    ("train", "neg", "10_2.txt"): "Caf\u00e9 cr\u00e8me, not worth it".encode(),
    ("train", "pos", "0_9.txt"): b"Great film!" * 50,  # 550 bytes: longer than short max_lengths
    ("train", "pos", "7_10.txt"): b"\tLoved it \n\n",
    ("test", "neg", "1_3.txt"): b"Meh",
    ("test", "pos", "2_8.txt"): b"Fine\r\n",
}


def write_imdb(root: Path) -> Path:
    """An ``aclImdb`` folder (plus the top-level files real copies have) under ``root``."""
    base = root / "aclImdb"
    for (split, label, name), content in REVIEWS.items():
        (base / split / label).mkdir(parents=True, exist_ok=True)
        (base / split / label / name).write_bytes(content)
    (base / "README").write_text("Large Movie Review Dataset v1.0\n")
    (base / "train" / "urls_pos.txt").write_text("http://example.invalid\n")
    return base


def tar_gz(source: Path, archive: Path, arcname: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname or source.name)
    return archive


def cifar_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count)


def write_cifar_pickles(root: Path, per_batch: int = 4, test: int = 5) -> tuple[Path, dict[str, tuple]]:
    """``cifar-10-batches-py`` with the original pickle layout (bytes keys, (n, 3072) row-major R, G, B)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        images, labels = cifar_images(test if name == "test_batch" else per_batch, seed=i)
        batches[name] = (images, labels)
        record = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
            b"filenames": [f"{name}_{j}.png".encode() for j in range(len(images))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(record, f, protocol=2)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return folder, batches


def write_image_folder(
    root: Path, per_class_train: int = 10, per_class_test: int = 2, fmt: str = "PNG", quality: int = 75
) -> tuple[Path, dict[str, list[tuple[str, int, np.ndarray]]]]:
    """``{train,test}/<class>/N.png`` (or .jpg); returns the written (file name, label, pixels) per split."""
    written: dict[str, list[tuple[str, int, np.ndarray]]] = {"train": [], "test": []}
    suffix = "png" if fmt == "PNG" else "jpg"
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            images, _ = cifar_images(count, seed=2 * label + (split == "test"))
            for i, pixels in enumerate(images):
                path = folder / f"{i}.{suffix}"  # unpadded numbers: natural order matters
                Image.fromarray(pixels).save(path, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
                written[split].append((path.name, label, np.asarray(Image.open(path).convert("RGB"))))
    return root, written


def aan_row(
    label: str, text1: bytes, text2: bytes, id1: bytes = b"P00-1001", id2: bytes = b"P00-1002"
) -> bytes:
    return b"\t".join([label.encode(), id1, id2, text1, text2]) + b"\n"


def write_aan(folder: Path, rows: dict[str, list[bytes]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "train": "new_aan_pairs.train.tsv",
        "val": "new_aan_pairs.eval.tsv",
        "test": "new_aan_pairs.test.tsv",
    }
    for split, lines in rows.items():
        (folder / names[split]).write_bytes(b"".join(lines))
    return folder
