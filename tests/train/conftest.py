"""A finished quickstart-sized run, trained once per test session, for the tests that only read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TINY_RUN, compose_train


@dataclass(frozen=True)
class FinishedRun:
    root: Path
    overrides: list[str]  # the command line it was trained with
    record: dict[str, Any]

    @property
    def record_path(self) -> Path:
        return self.root / "results" / "runs" / f"{self.record['run_id']}.json"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    from lra.train.run import train

    root = tmp_path_factory.mktemp("finished")
    paths = [f"paths.{name}_dir={root / name}" for name in ("data", "models", "results")]
    overrides = [*TINY_RUN, *paths, "logger=none", "run_id=finished"]
    return FinishedRun(root, overrides, train(compose_train(overrides)))
