"""Prepared-data caches: tokenised arrays on disk, memory-mapped, with a manifest.

A cache lives in ``<data_dir>/cache/<task>-<key>/``; the key hashes the task's settings, its format
version and the identity (path, size, modification time) of every source file, so a changed setting
or source makes a new cache instead of reusing a stale one. A cache is built in a temporary folder and
renamed into place only when complete: an interrupted preparation leaves nothing that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"


class CorruptCacheError(RuntimeError):
    """A cache folder whose files do not match its manifest."""


def source_identity(paths: list[Path]) -> list[dict[str, object]]:
    """Path, size and modification time of each source file (folders: of every file inside)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return [{"path": str(f.resolve()), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def cache_key(task: str, settings: Mapping[str, object], sources: list[dict[str, object]], version: int) -> str:
    blob = json.dumps({"task": task, "settings": settings, "sources": sources, "version": version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_arrays(directory: Path, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, object]]:
    """Save arrays as ``NAME.npy``; return their shapes, dtypes and byte sizes for the manifest."""
    described = {}
    for name, array in arrays.items():
        path = directory / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array))
        described[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": path.stat().st_size}
    return described


def check(directory: Path) -> dict[str, object]:
    """Read a cache's manifest and check that every array file is there at its recorded size."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCacheError(f"{manifest_path}: unreadable manifest ({error}); delete {directory} to rebuild"
                                ) from error
    for name, info in manifest["arrays"].items():
        path = directory / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            raise CorruptCacheError(f"{path}: missing, or not the size its manifest records; "
                                    f"delete {directory} to rebuild")
    return manifest


def prepared(
    data_dir: Path,
    task: str,
    settings: Mapping[str, object],
    sources: list[Path],
    build: Callable[[], Mapping[str, np.ndarray]],
    version: int = 1,
) -> Path:
    """Return the cache for (task, settings, sources), building it with ``build()`` if it is absent.

    ``build`` returns the arrays to store, named ``<split>.<field>`` (e.g. ``train.inputs``).
    """
    identity = source_identity(sources)
    key = cache_key(task, settings, identity, version)
    directory = data_dir / "cache" / f"{task}-{key}"
    if directory.is_dir():
        check(directory)
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        started = time.perf_counter()
        described = write_arrays(staging, build())
        manifest = {
            "task": task,
            "settings": dict(settings),
            "sources": identity,
            "version": version,
            "arrays": described,
            "build_seconds": round(time.perf_counter() - started, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(staging, directory)
        except OSError:  # another process finished the same cache first
            check(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
