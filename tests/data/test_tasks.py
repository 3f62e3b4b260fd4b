"""Tasks register themselves: the task list is what the modules of ``lra.data`` register, each with its yaml."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lra.conf import CONF_DIR
from lra.data import TASKS, LRADataModule, register_task, task_modules


def _declared_tasks(module: str) -> set[str]:
    """The names a module's source passes to ``@register_task(...)``, read without importing it."""
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    return {decorator.args[0].value for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            for decorator in node.decorator_list
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register_task"}


def test_the_tasks_are_those_the_modules_found_register() -> None:
    declared = {module: _declared_tasks(module) for module in task_modules()}
    assert sorted(TASKS) == sorted(name for names in declared.values() for name in names)
    for module, names in declared.items():
        assert all(TASKS[name].__module__ == module for name in names)
    assert {"lra.data.listops", "lra.data.pathfinder", "lra.data.base"} <= set(declared)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_its_task_config(name: str) -> None:
    path = CONF_DIR / "task" / f"{name}.yaml"
    assert path.is_file(), f"task {name!r} ({TASKS[name].__module__}) has no {path}"
    assert OmegaConf.load(path).name == name


def test_a_task_name_is_registered_once() -> None:
    class Other(LRADataModule):
        pass

    with pytest.raises(ValueError, match="task 'listops' is registered twice: lra.data.listops and"):
        register_task("listops")(Other)
    assert TASKS["listops"].__module__ == "lra.data.listops"
