"""The LRA tasks as LightningDataModules, chosen by name (``task=NAME``).

Each task module prepares its source into a memory-mapped cache once (``prepare_data``) and serves
batches of one form (see ``lra.data.base``). ``create(task_config, data_dir=..., seed=...)`` builds one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

from lra.data.base import LRADataModule, TaskSpec
from lra.data.errors import DataError, DataNotFoundError
from lra.data.image import ImageDataModule
from lra.data.listops import ListOpsDataModule
from lra.data.listops_taylorshift import TaylorShiftListOpsDataModule  # noqa: F401  (task.variant=taylorshift)
from lra.data.pathfinder import PathfinderDataModule
from lra.data.retrieval import RetrievalDataModule
from lra.data.text import TextDataModule

TASKS: dict[str, type[LRADataModule]] = {
    "listops": ListOpsDataModule,
    "text": TextDataModule,
    "retrieval": RetrievalDataModule,
    "image": ImageDataModule,
    "pathfinder": PathfinderDataModule,
}
_COMMON = {"data_dir", "seed"}


class UnknownTaskError(ValueError):
    """A task name or option that no task knows."""


def task_options(name: str) -> set[str]:
    """Keys a ``conf/task/*.yaml`` for task ``name`` may set."""
    keys: set[str] = set()
    for cls in TASKS[name].__mro__:
        if "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters
            keys |= {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return keys - _COMMON


def create(task_config: Mapping[str, object], *, data_dir: str | Path, seed: int) -> LRADataModule:
    """Build the data module that ``task_config['name']`` names, with the config's options."""
    options = dict(task_config)
    name = options.get("name")
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    unknown = sorted(set(options) - task_options(name))
    if unknown:
        raise UnknownTaskError(
            f"task {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(task_options(name)))}"
        )
    return TASKS[name].variant_class(options)(data_dir=data_dir, seed=seed, **options)


__all__ = [
    "TASKS",
    "DataError",
    "DataNotFoundError",
    "LRADataModule",
    "TaskSpec",
    "UnknownTaskError",
    "create",
    "task_options",
]
