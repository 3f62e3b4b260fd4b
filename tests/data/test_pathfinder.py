"""Pathfinder loader: the LRA release layout (text .npy metadata + PNGs), splits, tokens, errors, sources."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import lra.data as data
from lra.data.errors import DataError, DataNotFoundError
from lra.data.generate.pathfinder import generate_dataset
from lra.data.pathfinder import PathfinderDataModule, decode, read_rows

CONFIG = Path(__file__).resolve().parents[2] / "conf" / "task" / "pathfinder.yaml"


def _pixels(index: int, size: int = 32) -> np.ndarray:
    """A distinct, recognisable image per index."""
    return ((np.arange(size * size).reshape(size, size) * 7 + index * 13) % 256).astype(np.uint8)


def _release(root: Path, counts: dict[str, int], difficulty_dir: str = "curv_contour_length_14",
             size: int = 32) -> Path:
    """An ``lra_release``-like tree: pathfinder<size>/<difficulty>/metadata/<n>.npy + imgs/<n>/*.png."""
    folder = root / f"pathfinder{size}" / difficulty_dir
    (folder / "metadata").mkdir(parents=True)
    index = 0
    for name, count in counts.items():
        (folder / "imgs" / name).mkdir(parents=True)
        lines = []
        for i in range(count):
            Image.fromarray(_pixels(index, size), mode="L").save(folder / "imgs" / name / f"sample_{i}.png")
            lines.append(f"imgs/{name} sample_{i}.png {i} {index % 2} 1.0 14 4 2 0.5 1 1\n")
            index += 1
        (folder / "metadata" / f"{name}.npy").write_text("".join(lines))
    return folder


def _module(tmp_path: Path, **options) -> PathfinderDataModule:
    return data.create({"name": "pathfinder", "batch_size": 4, **options}, data_dir=tmp_path / "data", seed=0)


def _all(module: PathfinderDataModule, split: str) -> dict[str, torch.Tensor]:
    dataset = module.splits[split]
    return dataset.__getitems__(list(range(len(dataset))))


def _index_of(pixels: torch.Tensor) -> int:
    """Which fixture image a row of tokens is (the pixel at (0, 0) is 13 * index mod 256)."""
    matches = [i for i in range(200) if np.array_equal(_pixels(i).reshape(-1), pixels.numpy())]
    assert len(matches) == 1
    return matches[0]


def test_config_keys_are_the_modules_options(tmp_path: Path) -> None:
    config = OmegaConf.to_container(OmegaConf.load(CONFIG))
    assert set(config) == data.task_options("pathfinder")
    module = data.create(config, data_dir=tmp_path, seed=0)
    assert module.spec.max_length == 1024 and module.spec.num_classes == 2 and not module.spec.pads


def test_release_tokens_labels_and_lra_split(tmp_path: Path) -> None:
    _release(tmp_path / "lra_release", {"0": 12, "1": 8})
    module = _module(tmp_path, source_dir=str(tmp_path / "lra_release"))
    module.prepare_data()
    module.setup()
    assert module.spec.vocab_size == 256 and module.spec.max_length == 1024
    # TFDS keys "<dir>_<file>_<row number from 1>", ordered by md5("hard" + key), cut at round(80%, 90%)
    keys = [(f"imgs/{f}_sample_{i}.png_{i + 1}", 12 * (f == "1") + i) for f, n in (("0", 12), ("1", 8))
            for i in range(n)]
    order = [index for key, index in sorted(keys, key=lambda k: int(hashlib.md5(b"hard" + k[0].encode())
                                                                      .hexdigest(), 16))]
    expected = {"train": order[:16], "val": order[16:18], "test": order[18:]}
    for split, indices in expected.items():
        batch = _all(module, split)
        assert "padding_mask" not in batch
        assert batch["inputs"].dtype == torch.int64 and batch["inputs"].shape == (len(indices), 1024)
        assert [_index_of(row) for row in batch["inputs"]] == indices
        assert batch["labels"].tolist() == [i % 2 for i in indices]
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"inputs", "labels"} and batch["inputs"].shape == (4, 1024)


def test_lra_split_rounds_as_tfds(tmp_path: Path) -> None:
    _release(tmp_path / "release", {"0": 25})  # 80% of 25 = 20, 90% = 22.5 -> round() = 22
    module = _module(tmp_path, source_dir=str(tmp_path / "release"))
    module.setup()
    assert [len(module.splits[s]) for s in ("train", "val", "test")] == [20, 2, 3]


def test_float_inputs_are_pixels_over_255(tmp_path: Path) -> None:
    _release(tmp_path / "release", {"0": 10})
    module = _module(tmp_path, source_dir=str(tmp_path / "release"), pixels="floats")
    module.setup()
    assert module.spec.vocab_size is None
    batch = _all(module, "train")
    assert batch["inputs"].dtype == torch.float32
    index = round(float(batch["inputs"][0, 0]) * 255) // 13  # pixel (0, 0) is 13 * index
    np.testing.assert_allclose(batch["inputs"][0].numpy(), _pixels(index).reshape(-1) / 255.0, rtol=1e-6)


def test_s4_protocol_numeric_files_and_seed_42_split(tmp_path: Path) -> None:
    _release(tmp_path / "release", {"10": 6, "2": 14})  # S4 reads 2.npy before 10.npy
    module = _module(tmp_path, source_dir=str(tmp_path / "release"), split_protocol="s4")
    module.setup()
    # file 2 holds fixture images 6..19, file 10 images 0..5
    listed = list(range(6, 20)) + list(range(6))
    permutation = torch.randperm(20, generator=torch.Generator().manual_seed(42)).tolist()
    expected = {"train": permutation[:16], "val": permutation[16:18], "test": permutation[18:]}
    for split, positions in expected.items():
        assert [_index_of(row) for row in _all(module, split)["inputs"]] == [listed[p] for p in positions]


@pytest.mark.parametrize("layout", ["root", "nested", "resolution", "difficulty", "raw"])
def test_every_documented_source_location_is_found(tmp_path: Path, layout: str) -> None:
    places = {"root": tmp_path / "given", "nested": tmp_path / "given" / "lra_release" / "lra_release",
              "resolution": tmp_path / "given", "difficulty": tmp_path / "given",
              "raw": tmp_path / "data" / "raw" / "lra_release"}
    folder = _release(places[layout], {"0": 10})
    given = {"root": tmp_path / "given", "nested": tmp_path / "given", "resolution": folder.parent,
             "difficulty": folder, "raw": None}[layout]
    module = _module(tmp_path, source_dir=str(given) if given else None)
    module.setup()
    assert module.describe_source()["folder"] == str(folder)
    assert sum(len(module.splits[s]) for s in ("train", "val", "test")) == 10


def test_binary_npy_metadata_reads_like_text(tmp_path: Path) -> None:
    folder = _release(tmp_path / "release", {"0": 10})
    (folder / "metadata" / "._0.npy").write_bytes(b"\x00\x05\x16\x07")  # an AppleDouble file: ignored
    rows = [line.split(" ") for line in (folder / "metadata" / "0.npy").read_text().splitlines()]
    (folder / "metadata" / "0.npy").unlink()
    np.save(folder / "metadata" / "0.npy", np.array(rows))  # what snakes2.py's np.save writes
    module = _module(tmp_path, source_dir=str(tmp_path / "release"))
    module.setup()
    batch = _all(module, "train")
    assert [i % 2 for i in map(_index_of, batch["inputs"])] == batch["labels"].tolist()


def test_empty_images_are_left_out_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _release(tmp_path / "release", {"0": 10})
    empty = folder / "imgs" / "0" / "sample_3.png"
    empty.write_bytes(b"")
    module = _module(tmp_path, source_dir=str(tmp_path / "release"))
    with caplog.at_level(logging.WARNING):
        module.setup()
    assert str(empty) in caplog.text
    assert sum(len(module.splits[s]) for s in ("train", "val", "test")) == 9
    assert module.describe_source()["empty_images_left_out"] == [str(empty)]


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    folder = _release(tmp_path / "release", {"0": 10})
    first = _module(tmp_path, source_dir=str(tmp_path / "release"))
    first.setup()
    again = _module(tmp_path, source_dir=str(tmp_path / "release"))
    again.setup()
    assert again.cache_dir == first.cache_dir
    metadata = folder / "metadata" / "0.npy"
    metadata.write_text(metadata.read_text().replace(" 0 1.0 14", " 1 1.0 14", 1))
    changed = _module(tmp_path, source_dir=str(tmp_path / "release"))
    changed.setup()
    assert changed.cache_dir != first.cache_dir


@pytest.mark.parametrize("damage,message", [
    ("truncated", r"sample_2\.png: unreadable image .*0\.npy:3"),
    ("not_png", r"sample_2\.png: unreadable image .*0\.npy:3"),
    ("missing", r"sample_2\.png: image missing \(listed at .*0\.npy:3\)"),
    ("wrong_size", r"sample_2\.png: image is 16x16, expected 32x32"),
    ("bad_label", r"0\.npy:3: expected '<image dir> <file name> <index> <label 0\|1> \.\.\.'"),
    ("short_row", r"0\.npy:3: expected"),
    ("escape", r"0\.npy:3: image path '\.\./x/sample_2\.png' leaves the data folder"),
    ("duplicate", r"0\.npy:3: image imgs/0/sample_1\.png is listed twice \(also at .*0\.npy:2\)"),
])
def test_corrupt_sources_are_errors_with_path_and_row(tmp_path: Path, damage: str, message: str) -> None:
    folder = _release(tmp_path / "release", {"0": 10})
    image = folder / "imgs" / "0" / "sample_2.png"
    metadata = folder / "metadata" / "0.npy"
    lines = metadata.read_text().splitlines(keepends=True)
    if damage == "truncated":
        image.write_bytes(image.read_bytes()[:60])
    elif damage == "not_png":
        image.write_bytes(b"this is not a png at all")
    elif damage == "missing":
        image.unlink()
    elif damage == "wrong_size":
        Image.fromarray(_pixels(2, 16), mode="L").save(image)
    elif damage == "bad_label":
        lines[2] = "imgs/0 sample_2.png 2 x 1.0 14 4 2 0.5 1 1\n"
    elif damage == "short_row":
        lines[2] = "imgs/0 sample_2.png\n"
    elif damage == "escape":
        lines[2] = "../x sample_2.png 2 0\n"
    elif damage == "duplicate":
        lines[2] = "imgs/0 sample_1.png 1 1\n"
    metadata.write_text("".join(lines))
    module = _module(tmp_path, source_dir=str(tmp_path / "release"))
    with pytest.raises(DataError, match=message):
        module.setup()
    assert not list((tmp_path / "data" / "cache").glob("pathfinder-*"))  # nothing that looks usable


def test_missing_release_names_where_it_looked_and_the_commands(tmp_path: Path) -> None:
    module = _module(tmp_path, source="release")
    with pytest.raises(DataNotFoundError) as error:
        module.setup()
    text = str(error.value)
    assert str(tmp_path / "data" / "raw" / "lra_release" / "pathfinder32" / "curv_contour_length_14") in text
    assert "python -m lra.data fetch lra_release" in text
    assert "python -m lra.data generate pathfinder resolution=32 difficulty=hard" in text


def test_a_wrong_source_dir_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    module = _module(tmp_path, source_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(DataNotFoundError, match="holds no curv_contour_length_14 folder of pathfinder32"):
        module.setup()


def test_large_resolutions_need_an_opt_in_to_generate(tmp_path: Path) -> None:
    module = _module(tmp_path, resolution=128, num_images=1000, prepare_workers=2)
    estimate = r"1000 128x128 images would take about \d+ min on 2 cores"
    with pytest.raises(DataNotFoundError, match=estimate) as error:
        module.setup()
    assert "task.generate_large=true" in str(error.value)
    assert "resolution=128 difficulty=hard" in str(error.value)


def test_generated_set_is_found_read_and_reused(tmp_path: Path) -> None:
    module = _module(tmp_path, difficulty="easy", num_images=300, prepare_workers=1)
    folder = generate_dataset(module.generated_root(), 32, "easy", 300, seed=0, workers=1, progress=False)
    module.prepare_data()
    module.setup()
    assert module.describe_source()["folder"] == str(folder)
    labels = {f"{line.split()[0]}/{line.split()[1]}": int(line.split()[3])
              for line in (folder / "metadata" / "0.npy").read_text().splitlines()}
    total = sum(len(module.splits[s]) for s in ("train", "val", "test"))
    assert total == 300 and 0 < sum(labels.values()) < 300  # random labels, as the official code draws them
    assert module.describe_source()["data_source"] == "Pathfinder-32 easy, generated by lra"
    assert module.describe_source()["generator_version"] == 2
    images = {tuple(np.asarray(Image.open(folder / name)).reshape(-1)): label
              for name, label in labels.items()}
    batch = _all(module, "test")
    assert [images[tuple(row.tolist())] for row in batch["inputs"]] == batch["labels"].tolist()


def test_parallel_decoding_matches_and_reports_errors(tmp_path: Path) -> None:
    folder = _release(tmp_path / "release", {"0": 11})
    rows = read_rows(folder)
    order = list(range(11))[::-1]
    alone = decode(folder, rows, order, 32)
    assert np.array_equal(decode(folder, rows, order, 32, workers=2, part=3), alone)
    assert np.array_equal(alone[0], _pixels(10).reshape(-1))
    (folder / "imgs" / "0" / "sample_9.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"sample_9\.png: unreadable image .*0\.npy:10"):
        decode(folder, rows, order, 32, workers=2, part=3)


def test_a_folder_is_called_the_release_only_with_the_released_row_count(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _release(tmp_path / "lra_release", {"0": 12, "1": 8})
    module = _module(tmp_path, source_dir=str(tmp_path / "lra_release"))
    module.prepare_data()
    assert module.describe_source()["data_source"] == (
        "user-supplied Pathfinder-32 hard images (20 rows: images 20; the release has images 200,000)")
    monkeypatch.setattr("lra.data.pathfinder.RELEASED_ROWS", 20)
    again = _module(tmp_path, source_dir=str(tmp_path / "lra_release"))
    again.prepare_data()  # the cache is reused; the label is worked out from it again
    assert again.cache_dir == module.cache_dir
    assert again.describe_source()["data_source"] == "Pathfinder-32 hard, LRA release"


def test_a_set_of_the_previous_generator_is_not_reused(tmp_path: Path) -> None:
    """Version 1 sets lived under a key made with version 1; version 2 looks (and generates) elsewhere."""
    import json

    from lra.data import cache

    identity = {"resolution": 32, "difficulty": "easy", "num_images": 10, "seed": 0}
    old_key = cache.cache_key("pathfinder-generated", identity, [], 1)
    old = generate_dataset(tmp_path / "data" / "raw" / f"pathfinder-generated-{old_key}", 32, "easy", 10, seed=0,
                           workers=1, progress=False)
    settings = json.loads((old / "generator.json").read_text())
    (old / "generator.json").write_text(json.dumps({**settings, "version": 1}))
    module = _module(tmp_path, difficulty="easy", num_images=10, prepare_workers=1)
    module.prepare_data()
    described = module.describe_source()
    assert described["folder"] != str(old) and described["generator_version"] == 2
