"""What ``model.compile`` resolves to for a task on a device."""

from __future__ import annotations

import pytest
import torch

from lra.data.base import TaskSpec
from lra.model import ModelConfig

IMAGE = TaskSpec("image", 10, 1024, 256, pads=False)
TEXT = TaskSpec("text", 2, 1000, 257)
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(("compile", "spec", "device", "mode"), [
    ("auto", IMAGE, CUDA, "reduce-overhead"),  # fixed shapes on CUDA: CUDA graphs
    ("auto", TEXT, CUDA, None),                # padded batches change shape: eager
    ("auto", IMAGE, CPU, None),
    (True, TEXT, CUDA, "default"),
    (False, IMAGE, CUDA, None),
    ("max-autotune", TEXT, CPU, "max-autotune"),
])
def test_the_compile_mode_for_a_task_on_a_device(compile, spec: TaskSpec, device: torch.device, mode) -> None:
    assert ModelConfig(compile=compile).compile_mode(spec, device) == mode


def test_an_unknown_compile_mode_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="model.compile='fast'; valid: true, false, auto, default, reduce-overhead"):
        ModelConfig(compile="fast")
