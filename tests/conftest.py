"""Fixtures: an isolated project folder per test; GPU tests skip without a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors only in its interpreter, chosen before triton's first import.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Data, checkpoints and records of a test go to its own temporary folder."""
    for name, sub in (("LRA_DATA_DIR", "data"), ("LRA_MODELS_DIR", "models"), ("LRA_RESULTS_DIR", "results")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
