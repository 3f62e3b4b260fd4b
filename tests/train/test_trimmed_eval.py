"""Evaluation on trimmed batches (``task.trim_eval``) predicts what the full-length batch predicts."""

from __future__ import annotations

import pytest
import torch

from lra.data.base import TaskSpec
from lra.model.classifier import LRAClassifier
from lra.model.config import ModelConfig
from tests.attention.cases import CASE_IDS, CASES

LENGTH = 48


def padded_batch(lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Byte ids after each example's length set to 0, with the padding mask; any leading shape."""
    size = torch.tensor(lengths)
    padding = torch.arange(LENGTH) >= size[..., None]
    inputs = torch.randint(1, 257, (*size.shape, LENGTH), generator=generator)
    return inputs.masked_fill(padding, 0), padding


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize(("case", "name", "options"), CASES, ids=CASE_IDS)
def test_trimmed_batches_give_the_full_length_logits(case, name, options, pooling) -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, num_layers=2, num_heads=2, mlp_dim=32, pooling=pooling, pos_encoding="learned")
    single = TaskSpec(name="text", num_classes=2, max_length=LENGTH, vocab_size=257)
    dual = TaskSpec(name="retrieval", num_classes=2, max_length=LENGTH, vocab_size=257, dual=True)
    for spec, lengths, longest in ((single, [7, 19, 13], 19), (dual, [[5, 11], [17, 3]], 17)):
        model = LRAClassifier(spec, config, name, options).eval()
        inputs, padding = padded_batch(lengths, generator)
        width = longest + 3  # trimmed as a pad_multiple would leave it: a little padding still there
        with torch.no_grad():
            full = model(inputs, padding)
            trimmed = model(inputs[..., :width], padding[..., :width])
        torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)
