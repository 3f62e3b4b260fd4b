"""Image (CIFAR-10): TensorFlow's grayscale, the pickles, image folders, archives and HF copies."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from lra.data import create
from lra.data.errors import DataError, DataNotFoundError
from lra.data.image import tf_grayscale

from .fixtures import tar_gz, write_cifar_pickles, write_image_folder

# tf.image.rgb_to_grayscale on uint8 pixels, computed with TensorFlow 2.19 (CPU). The rows below the
# first block are colours where TF's float32 truncation differs from round(), from floor(), and from
# the same formula in float64, so only a bit-exact reimplementation passes.
TF_GRAY = {
    (255, 255, 255): 255,
    (0, 0, 0): 0,
    (255, 0, 0): 76,
    (0, 255, 0): 149,
    (0, 0, 255): 29,
    (1, 1, 1): 1,
    (128, 128, 128): 128,
    (200, 100, 50): 124,
    (17, 250, 3): 152,
    (254, 1, 77): 85,
    (0, 0, 5): 0,
    (0, 0, 6): 0,
    (0, 0, 114): 13,
    (0, 0, 149): 17,
    (0, 122, 186): 93,
    (3, 121, 122): 86,
    (3, 254, 50): 156,
}


def test_grayscale_matches_tensorflow_bit_for_bit():
    colours = np.array(list(TF_GRAY), dtype=np.uint8)
    assert tf_grayscale(colours).tolist() == list(TF_GRAY.values())


def image_module(tmp_path: Path, **options):
    return create(
        {"name": "image", "batch_size": 2, "prepare_workers": 1, **options},
        data_dir=tmp_path / "data",
        seed=0,
    )


def gray_tokens(pixels: np.ndarray) -> list[list[int]]:
    return tf_grayscale(pixels).reshape(len(pixels), 1024).tolist()


def all_of(dm, split: str) -> dict[str, torch.Tensor]:
    data = dm.splits[split]
    return data.__getitems__(list(range(len(data))))


def test_pickles_give_lras_splits_and_tokens(tmp_path: Path, hf_home):
    folder, batches = write_cifar_pickles(tmp_path / "src", per_batch=4, test=5)
    dm = image_module(tmp_path, source_dir=str(folder.parent))
    dm.prepare_data()
    dm.setup()
    train_images = np.concatenate([batches[f"data_batch_{k}"][0] for k in range(1, 6)])
    train_labels = np.concatenate([batches[f"data_batch_{k}"][1] for k in range(1, 6)])
    train, val, test = all_of(dm, "train"), all_of(dm, "val"), all_of(dm, "test")
    assert len(dm.splits["train"]) == 18 and len(dm.splits["val"]) == 2  # last 10% of 20
    assert train["inputs"].tolist() == gray_tokens(train_images[:18])
    assert val["inputs"].tolist() == gray_tokens(train_images[18:])
    assert (
        train["labels"].tolist() == train_labels[:18].tolist()
        and val["labels"].tolist() == train_labels[18:].tolist()
    )
    assert test["inputs"].tolist() == gray_tokens(batches["test_batch"][0])
    assert "padding_mask" not in train and dm.spec.vocab_size == 256 and not dm.spec.pads
    assert dm.describe_source()["data_source"] == (
        "user-supplied CIFAR-10-format images (python pickles) (25 rows: train 20, test 5; "
        "the release has train 50,000, test 10,000)")


def test_official_archive_is_read_without_unpacking(tmp_path: Path, hf_home):
    folder, batches = write_cifar_pickles(tmp_path / "src")
    archive = tar_gz(folder, tmp_path / "cifar-10-python.tar.gz")
    dm = image_module(tmp_path, source_dir=str(archive))
    dm.prepare_data()
    dm.setup()
    assert all_of(dm, "test")["inputs"].tolist() == gray_tokens(batches["test_batch"][0])


def test_float_pixels(tmp_path: Path, hf_home):
    folder, batches = write_cifar_pickles(tmp_path / "src")
    dm = image_module(tmp_path, source_dir=str(folder), pixels="floats")
    dm.prepare_data()
    dm.setup()
    batch = all_of(dm, "test")
    assert batch["inputs"].dtype == torch.float32 and dm.spec.vocab_size is None
    expected = torch.tensor(gray_tokens(batches["test_batch"][0]), dtype=torch.float32) / 255
    assert torch.equal(batch["inputs"], expected)


def test_image_folder_holds_out_the_last_tenth_of_each_class(tmp_path: Path, hf_home):
    root, written = write_image_folder(tmp_path / "tree" / "cifar10", per_class_train=10, per_class_test=2)
    dm = image_module(tmp_path, source_dir=str(tmp_path / "tree"))
    dm.prepare_data()
    dm.setup()
    by_name = {(label, name): pixels for name, label, pixels in written["train"]}
    val = all_of(dm, "val")
    # natural order: 0..9, so "9.png" (not "10.png" or "2.png") is the last of each class
    expected = gray_tokens(np.stack([by_name[(c, "9.png")] for c in range(10)]))
    assert sorted(zip(val["labels"].tolist(), val["inputs"].tolist(), strict=True)) == list(
        zip(range(10), expected, strict=True)
    )
    assert all_of(dm, "train")["labels"][:10].unique().numel() > 1  # stored shuffled, not class by class
    assert len(dm.splits["train"]) == 90 and len(dm.splits["test"]) == 20
    assert dm.describe_source()["data_source"] == (
        "user-supplied CIFAR-10-format images (image folder) (120 rows: train 100, test 20; "
        "the release has train 50,000, test 10,000)")


def test_jpeg_copy_is_labelled_with_its_quality(tmp_path: Path, hf_home):
    root, written = write_image_folder(
        tmp_path / "cifar10-jpeg", per_class_train=1, per_class_test=1, fmt="JPEG", quality=75
    )
    archive = tar_gz(root, tmp_path / "cifar10_jpeg_q75.tar.gz")
    dm = image_module(tmp_path, source_dir=str(archive))
    dm.prepare_data()
    dm.setup()
    assert dm.describe_source()["data_source"] == (
        "user-supplied CIFAR-10-format images, JPEG q75 copy (20 rows: train 10, test 10; "
        "the release has train 50,000, test 10,000)")
    test = all_of(dm, "test")
    assert sorted(test["inputs"].tolist()) == sorted(
        gray_tokens(np.stack([p for _, _, p in written["test"]]))
    )


def test_saved_hugging_face_dataset(tmp_path: Path, hf_home):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    splits = {"train": (images[:10], list(range(10))), "test": (images[10:], [3, 4])}
    datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(
                {"img": [Image.fromarray(p) for p in px], "label": y}, features=features
            )
            for s, (px, y) in splits.items()
        }
    ).save_to_disk(str(tmp_path / "cifar_saved"))
    dm = image_module(tmp_path, source_dir=str(tmp_path / "cifar_saved"))
    dm.prepare_data()
    dm.setup()
    assert all_of(dm, "train")["inputs"].tolist() == gray_tokens(images[:9])
    assert all_of(dm, "val")["labels"].tolist() == [9]
    assert all_of(dm, "test")["inputs"].tolist() == gray_tokens(images[10:])
    assert "Hugging Face" in dm.describe_source()["data_source"]


def test_truncated_pickle_is_reported_with_its_path(tmp_path: Path, hf_home):
    folder, _ = write_cifar_pickles(tmp_path / "src")
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_3: truncated or corrupt CIFAR-10 pickle"):
        image_module(tmp_path, source_dir=str(folder)).prepare_data()


def test_pickle_with_foreign_code_is_refused(tmp_path: Path, hf_home):
    folder, _ = write_cifar_pickles(tmp_path / "src")
    (folder / "test_batch").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(DataError, match="refusing to load os.system"):
        image_module(tmp_path, source_dir=str(folder)).prepare_data()


def test_unreadable_image_is_reported_with_its_path(tmp_path: Path, hf_home):
    write_image_folder(tmp_path / "tree", per_class_train=2, per_class_test=1)
    bad = tmp_path / "tree" / "train" / "cat" / "1.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    bad.write_bytes(buffer.getvalue()[:40])
    with pytest.raises(DataError, match=r"train/cat/1.png: unreadable image"):
        image_module(tmp_path, source_dir=str(tmp_path / "tree")).prepare_data()


def test_wrong_size_image_is_reported(tmp_path: Path, hf_home):
    write_image_folder(tmp_path / "tree", per_class_train=1, per_class_test=1)
    Image.new("RGB", (64, 64)).save(tmp_path / "tree" / "test" / "dog" / "0.png")
    with pytest.raises(DataError, match=r"test/dog/0.png: expected a 32x32 image, got 64x64"):
        image_module(tmp_path, source_dir=str(tmp_path / "tree")).prepare_data()


def test_missing_data_names_the_places_and_the_fetch_command(tmp_path: Path, hf_home):
    with pytest.raises(DataNotFoundError) as error:
        image_module(tmp_path).prepare_data()
    assert "raw/cifar-10-batches-py" in str(error.value) and "python -m lra.data fetch cifar10" in str(
        error.value
    )


def test_only_cifar10_s_counts_and_published_digest_are_called_cifar10(tmp_path: Path, hf_home, monkeypatch):
    import dataclasses

    from lra.data import fetch
    from lra.data.cache import sha256_file

    folder, _ = write_cifar_pickles(tmp_path / "src", per_batch=4, test=5)
    archive = tar_gz(folder, tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setattr("lra.data.image.RELEASED_ROWS", {"train": 20, "test": 5})
    dm = image_module(tmp_path, source_dir=str(folder))
    dm.prepare_data()
    assert dm.describe_source()["data_source"] == "CIFAR-10 (python pickles)"
    packed = image_module(tmp_path, source_dir=str(archive))
    packed.prepare_data()
    assert packed.describe_source()["data_source"] == (
        "user-supplied CIFAR-10-format images (python pickles) (25 rows: train 20, test 5; "
        "its sha256 is not the published one)")
    published = dataclasses.replace(fetch.ARCHIVES["cifar10"], sha256=sha256_file(archive))
    monkeypatch.setitem(fetch.ARCHIVES, "cifar10", published)
    checked = image_module(tmp_path, source_dir=str(archive))
    checked.prepare_data()
    assert checked.describe_source()["data_source"] == "CIFAR-10 (python pickles)"
