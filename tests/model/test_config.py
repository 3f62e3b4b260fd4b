"""What ``model.compile`` resolves to for a task on a device."""

from __future__ import annotations

import pytest
import torch

from lra.data.base import TaskSpec, TrainingShape
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


FULL, HALF, TRIMMED = TrainingShape(True, 0.84), TrainingShape(True, 0.51), TrainingShape(False, 0.84)
EDGE = TrainingShape(True, 0.79)  # just below PADDED_GRAPHS_FILL


@pytest.mark.parametrize(("unpad", "shape", "mode"), [
    ("auto", FULL, "reduce-overhead"),  # Text at 1000 bytes: padded batches of one width, 84% real: graphs
    (False, FULL, "reduce-overhead"),
    ("auto", HALF, None),               # ListOps: packing removes half the work: eager, packed
    ("auto", EDGE, None),
    ("auto", TRIMMED, None),            # bucketed or trimmed batches change width
    (True, FULL, None),                 # packing asked for
    ("auto", None, None),               # nothing known of the batches
])
def test_padded_batches_this_full_train_in_cuda_graphs(unpad, shape: TrainingShape | None, mode) -> None:
    config = ModelConfig(unpad=unpad)
    assert config.compile_mode(TEXT, CUDA, shape) == mode
    assert config.packs_in_training(config.compile_mode(TEXT, CUDA, shape)) is (mode is None)
    assert config.compile_mode(TEXT, CPU, shape) is None


def test_packing_in_training_under_each_compile_mode() -> None:
    assert ModelConfig().packs_in_training(None) and ModelConfig().packs_in_training("default")
    assert not any(ModelConfig().packs_in_training(mode) for mode in ("reduce-overhead", "max-autotune"))
    assert ModelConfig(unpad=True).packs_in_training("reduce-overhead")  # asked for: packed, graphs or not


def test_an_unknown_compile_mode_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="model.compile='fast'; valid: true, false, auto, default, reduce-overhead"):
        ModelConfig(compile="fast")
