"""Prepare a task's cache from the command line and say what it took (``python -m lra.data prepare``, the probe)."""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from pathlib import Path

from lra.data.base import TASKS, LRADataModule
from lra.data.errors import DataError


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers that tokenise or generate)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare_verbosely(command: str, task_config: Mapping[str, object] | None, *, data_dir: str | Path,
                      seed: int) -> LRADataModule:
    """Build the task's data module and prepare (or find and verify) its cache; print where it is, its size,
    the time it took and where the data came from. ``task_config`` None: the command was given no task."""
    from lra.data import create

    if not task_config or "name" not in task_config:
        raise DataError(f"{command} needs task=NAME; tasks: {', '.join(sorted(TASKS))}")
    started, cpu = time.perf_counter(), cpu_seconds()
    datamodule = create(task_config, data_dir=data_dir, seed=seed)
    datamodule.prepare_data()
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(f"task {task_config['name']}: cache {datamodule.cache_dir} ({_size(datamodule.cache_dir) / 2**20:.1f} MiB)")
    print(f"  ready in {wall:.1f} s wall, {cpu:.1f} s CPU (includes checking the cache's digests)")
    for key, value in datamodule.describe_source().items():
        print(f"  {key}: {value}")
    return datamodule
