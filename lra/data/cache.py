"""Prepared-data caches: tokenised arrays on disk, memory-mapped, with a manifest.

A cache lives in ``<data_dir>/cache/<task>-<key>/``. The key hashes the task's settings, its format
version and the identity (path, size, modification time) of every source file, so a changed setting
or source makes a new cache instead of reusing a stale one. The manifest (``manifest.json``) records
the settings, the code version, every source file with its size and sha256 (a folder of many files as
one entry: file count, bytes, and a digest over the sorted per-file digests) and every array with its
shape, dtype, size and sha256.

A cache is built in a staging folder and renamed into place only when complete, so an interrupted
preparation leaves nothing that looks usable, and under a file lock (``locked``), so processes started
together build it once: one builds, the others wait and reuse it. Staging left by a killed process
(``*.partial-PID`` with PID dead) is removed (``remove_dead_partials``). Reusing a cache re-checks every
array file against its manifest digest (about 1 s per GB), so a corrupt or truncated cache is reported,
never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

import lra
from lra.data.errors import DataError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class CorruptCacheError(DataError):
    """A cache folder whose files do not match its manifest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def source_identity(paths: list[Path]) -> list[dict[str, object]]:
    """Path, size and modification time of each source file (folders: of every file inside)."""
    return [
        {"path": str(f.resolve()), "size": (s := f.stat()).st_size, "mtime_ns": s.st_mtime_ns}
        for path in paths
        for f in _files(path)
    ]


def describe_sources(paths: list[Path]) -> list[dict[str, object]]:
    """Manifest entries: a file with its size and sha256; a folder as one summary entry."""
    entries: list[dict[str, object]] = []
    for path in paths:
        if not path.is_dir():
            entries.append(
                {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256_file(path)}
            )
            continue
        tree = hashlib.sha256()
        files = _files(path)
        for f in files:
            tree.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
        entries.append(
            {
                "path": str(path.resolve()),
                "files": len(files),
                "size": sum(f.stat().st_size for f in files),
                "tree_sha256": tree.hexdigest(),
            }
        )
    return entries


def cache_key(
    task: str, settings: Mapping[str, object], sources: list[dict[str, object]], version: int
) -> str:
    blob = json.dumps(
        {"task": task, "settings": settings, "sources": sources, "version": version},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CacheWriter:
    """Hands ``build`` the arrays of a cache under construction, as files in the staging folder."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.names: list[str] = []

    def create(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.memmap:
        """A zero-filled array file to fill in place (for arrays too large to build in memory)."""
        self.names.append(name)
        return np.lib.format.open_memmap(self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def save(self, name: str, array: np.ndarray) -> None:
        self.names.append(name)
        np.save(self.directory / f"{name}.npy", np.ascontiguousarray(array))


def _describe_arrays(directory: Path, names: list[str]) -> dict[str, dict[str, object]]:
    described = {}
    for name in names:
        path = directory / f"{name}.npy"
        array = np.load(path, mmap_mode="r")
        described[name] = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
    return described


def check(directory: Path, *, digests: bool = True) -> dict[str, object]:
    """Read a cache's manifest; check every array file's size (and, with ``digests``, its sha256)."""
    manifest_path = directory / MANIFEST
    rebuild = f"delete {directory} and prepare again"
    try:
        manifest = json.loads(manifest_path.read_text())
        arrays = manifest["arrays"]
    except (OSError, ValueError, KeyError, TypeError) as error:  # ValueError: not UTF-8, or not JSON
        raise CorruptCacheError(f"{manifest_path}: unreadable manifest ({error}); {rebuild}") from None
    for name, info in arrays.items():
        path = directory / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            raise CorruptCacheError(f"{path}: missing or not the size its manifest records; {rebuild}")
        if digests and sha256_file(path) != info["sha256"]:
            raise CorruptCacheError(
                f"{path}: contents differ from the manifest's sha256 (corrupt); {rebuild}"
            )
    return manifest


def remove_dead_partials(parent: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``parent`` matching ``pattern`` whose name ends in ``.partial-PID`` (or
    ``.partial-PID-...``) with PID no longer running: staging that a killed process left behind."""
    removed = []
    for path in parent.glob(pattern) if parent.is_dir() else []:
        pid = path.name.rpartition(".partial-")[2].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for building ``target`` (``.<name>.lock`` beside it; fcntl, so the kernel
    releases it when its process dies). A process that has to wait says what it waits for."""
    lock_path = target.with_name(f".{target.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to finish {target} (lock {lock_path})", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepared(
    data_dir: Path,
    task: str,
    settings: Mapping[str, object],
    sources: list[Path],
    build: Callable[[CacheWriter], None],
    version: int = 1,
    *,
    describe: Callable[[], Mapping[str, object]] | None = None,
) -> Path:
    """Return the cache for (task, settings, sources), building it with ``build(writer)`` if absent.

    ``build`` stores arrays named ``<split>.<field>`` (e.g. ``train.inputs``) through the writer.
    ``describe()``, called after ``build``, adds entries to the manifest that are not part of the key
    (e.g. ``data_source``, a human-readable label of what was read).
    """
    key = cache_key(task, settings, source_identity(sources), version)
    directory = Path(data_dir) / "cache" / f"{task}-{key}"
    if directory.is_dir():
        check(directory)
        return directory
    with locked(directory):
        if directory.is_dir():  # another process built it while this one waited
            check(directory)
            return directory
        remove_dead_partials(directory.parent, f"{directory.name}.partial-*")
        _build(directory, task, settings, sources, build, version, describe)
    return directory


def _build(directory: Path, task: str, settings: Mapping[str, object], sources: list[Path],
           build: Callable[[CacheWriter], None], version: int,
           describe: Callable[[], Mapping[str, object]] | None) -> None:
    staging = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        started = time.perf_counter()
        writer = CacheWriter(staging)
        build(writer)
        manifest = {
            "task": task,
            "settings": dict(settings),
            "code": {"lra": lra.__version__, "format_version": version},
            "sources": describe_sources(sources),
            "arrays": _describe_arrays(staging, writer.names),
            "build_seconds": round(time.perf_counter() - started, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **dict(describe() if describe else {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_manifest(directory: Path) -> dict[str, object]:
    return json.loads((directory / MANIFEST).read_text())


def splits_in(directory: Path) -> list[str]:
    """The splits a cache holds (those with an ``inputs`` array), from its manifest."""
    return [name.split(".")[0] for name in read_manifest(directory)["arrays"] if name.endswith(".inputs")]
