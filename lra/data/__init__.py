"""The LRA tasks as LightningDataModules, chosen by name (``task=NAME``).

Each task module prepares its source into a memory-mapped cache once (``prepare_data``) and serves
batches of one form (see ``lra.data.base``). ``create(task_config, data_dir=..., seed=...)`` builds one.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from pathlib import Path

from lra.data.base import TASKS, LRADataModule, TaskSpec, register_task
from lra.data.errors import DataError, DataNotFoundError


def task_modules() -> list[str]:
    """The modules of this package (not its subpackages or ``__main__``): a task is one of them that
    registers its data module with ``@register_task(NAME)``, plus ``conf/task/NAME.yaml``."""
    return sorted(f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
                  if not info.ispkg and not info.name.startswith("_"))


for _module in task_modules():  # importing a task module registers its task in TASKS
    importlib.import_module(_module)

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
    "register_task",
    "task_modules",
    "task_options",
]
