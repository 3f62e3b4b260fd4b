"""Caches: keyed by settings and sources, atomic, described by a manifest, corruption detected."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lra.data import cache
from lra.data.errors import DataError

DEAD_PID = 2**22 + 12345  # above Linux's largest pid_max: never a running process


def build_with(values: np.ndarray, calls: list[int]):
    def build(writer: cache.CacheWriter) -> None:
        calls.append(1)
        writer.save("train.inputs", values)
        big = writer.create("train.lengths", (len(values),), np.int32)
        big[:] = 7

    return build


def make(tmp_path: Path, source: Path, settings=None, calls=None) -> Path:
    return cache.prepared(
        tmp_path / "data",
        "toy",
        settings or {"n": 1},
        [source],
        build_with(np.arange(6, dtype=np.uint8).reshape(2, 3), calls if calls is not None else []),
        describe=lambda: {"data_source": "toy"},
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    return folder


def test_manifest_records_sources_settings_code_and_arrays(tmp_path: Path, source: Path):
    directory = make(tmp_path, source)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["settings"] == {"n": 1} and manifest["data_source"] == "toy"
    assert manifest["code"]["format_version"] == 1 and manifest["code"]["lra"]
    [entry] = manifest["sources"]
    assert entry["files"] == 2 and entry["size"] == 9 and len(entry["tree_sha256"]) == 64
    assert manifest["arrays"]["train.inputs"]["shape"] == [2, 3]
    assert manifest["arrays"]["train.lengths"]["sha256"] == cache.sha256_file(directory / "train.lengths.npy")
    assert np.load(directory / "train.lengths.npy").tolist() == [7, 7]
    file_entry = cache.describe_sources([source / "a.txt"])[0]
    assert file_entry["size"] == 5 and file_entry["sha256"] == cache.sha256_file(source / "a.txt")


def test_reuse_and_rebuild_on_changed_settings_or_source(tmp_path: Path, source: Path):
    calls: list[int] = []
    first = make(tmp_path, source, calls=calls)
    assert make(tmp_path, source, calls=calls) == first and len(calls) == 1
    assert make(tmp_path, source, settings={"n": 2}, calls=calls) != first and len(calls) == 2
    (source / "a.txt").write_text("alpha, edited")
    assert make(tmp_path, source, calls=calls) != first and len(calls) == 3


def test_corrupt_array_is_detected_not_used(tmp_path: Path, source: Path):
    directory = make(tmp_path, source)
    path = directory / "train.inputs.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(cache.CorruptCacheError, match="contents differ from the manifest's sha256"):
        make(tmp_path, source)


def test_truncated_array_or_manifest_is_detected(tmp_path: Path, source: Path):
    directory = make(tmp_path, source)
    path = directory / "train.lengths.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(cache.CorruptCacheError, match="not the size its manifest records"):
        make(tmp_path, source)
    (directory / "manifest.json").write_text("{")
    with pytest.raises(cache.CorruptCacheError, match="unreadable manifest"):
        make(tmp_path, source)


def test_interrupted_build_leaves_no_cache(tmp_path: Path, source: Path):
    def failing(writer: cache.CacheWriter) -> None:
        writer.save("train.inputs", np.zeros(3))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.prepared(tmp_path / "data", "toy", {}, [source], failing)
    assert [p for p in (tmp_path / "data" / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_staging_of_a_dead_process_is_cleared(tmp_path: Path, source: Path):
    key = cache.cache_key("toy", {"n": 1}, cache.source_identity([source]), 1)
    dead = tmp_path / "data" / "cache" / f"toy-{key}.partial-{2**22 + 12345}"
    dead.mkdir(parents=True)
    (dead / "train.inputs.npy").write_bytes(b"half")
    directory = make(tmp_path, source)
    assert not dead.exists() and directory.is_dir()
    assert not any(p.name.endswith(f"partial-{os.getpid()}") for p in directory.parent.iterdir())


def test_a_manifest_that_is_not_utf8_is_a_corrupt_cache(tmp_path: Path, source: Path):
    directory = make(tmp_path, source)
    (directory / "manifest.json").write_bytes(b"\xff\xfe{not text")
    with pytest.raises(cache.CorruptCacheError, match="manifest.json: unreadable manifest .*utf-8"):
        make(tmp_path, source)
    assert issubclass(cache.CorruptCacheError, DataError)  # one short message at the command line


def test_processes_started_together_build_a_cache_once(tmp_path: Path, source: Path):
    calls: list[int] = []
    started = threading.Event()

    def slow_build(writer: cache.CacheWriter) -> None:
        started.set()
        time.sleep(0.5)
        build_with(np.zeros((2, 3), dtype=np.uint8), calls)(writer)

    def prepare() -> Path:
        return cache.prepared(tmp_path / "data", "toy", {"n": 1}, [source], slow_build)

    with ThreadPoolExecutor(3) as pool:  # fcntl locks open files: threads exclude each other like processes
        first = pool.submit(prepare)
        started.wait(10)
        others = [pool.submit(prepare) for _ in range(2)]
        directories = {future.result() for future in [first, *others]}
    assert len(directories) == 1 and calls == [1]


def test_generation_is_locked_and_cleans_up_after_dead_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lra.data import listops
    from lra.data.generate.listops import ListOpsSettings

    generated: list[int] = []
    generate = listops.generate

    def counted(*args, **kwargs):
        generated.append(1)
        time.sleep(0.3)
        return generate(*args, **kwargs)

    monkeypatch.setattr(listops, "generate", counted)
    sizes, settings = {"train": 8, "val": 2, "test": 2}, ListOpsSettings(max_depth=3, min_length=5, max_length=40)
    directory = listops.generated_dir(tmp_path, sizes, settings, seed=1)
    leftover = directory.with_name(f"{directory.name}.partial-{DEAD_PID}")
    leftover.mkdir(parents=True)  # what a generation killed half-way leaves
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: listops.ensure_generated(directory, sizes, settings, 1, 1), range(3)))
    assert results == [directory] * 3 and generated == [1]
    assert sorted(p.name for p in directory.parent.iterdir()) == [f".{directory.name}.lock", directory.name]


def test_only_the_leftovers_of_dead_processes_are_removed(tmp_path: Path):
    mine, dead = tmp_path / f"x.partial-{os.getpid()}", tmp_path / f".y.1a2b.partial-{DEAD_PID}"
    mine.mkdir()
    dead.write_text("half")
    assert cache.remove_dead_partials(tmp_path, "*.partial-*") == [dead] and mine.is_dir()


def test_processes_started_together_generate_a_pathfinder_set_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lra.data.generate import pathfinder

    chunks: list[int] = []

    def drawn(directory: Path, settings, seed: int, chunk: int, count: int) -> int:
        chunks.append(chunk)
        time.sleep(0.3)
        return count

    monkeypatch.setattr(pathfinder, "_write_chunk", drawn)
    generate = lambda _: pathfinder.generate_dataset(tmp_path, 32, "easy", 4, 0, workers=1, progress=False)  # noqa: E731
    with ThreadPoolExecutor(3) as pool:
        folders = set(pool.map(generate, range(3)))
    assert len(folders) == 1 and chunks == [0]
