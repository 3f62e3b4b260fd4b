"""Packed sequences (``model.unpad``): every layer on real tokens alone gives the padded batch's logits."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

import lra.attention
from lra.attention.packing import PackedSequences
from lra.data.base import TaskSpec
from lra.model.classifier import LRAClassifier
from lra.model.config import ModelConfig
from lra.train.module import LRAModule

LENGTH = 40
PACKING = [name for name in lra.attention.available() if lra.attention.backend_class(name).packs_sequences]


def batch(lengths: list[list[int]] | list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    size = torch.tensor(lengths)
    padding = torch.arange(LENGTH) >= size[..., None]
    inputs = torch.randint(1, 257, (*size.shape, LENGTH), generator=generator)
    return inputs.masked_fill(padding, 0), padding


def test_packing_round_trip_keeps_real_tokens_and_zeroes_padding():
    padding = torch.arange(6) >= torch.tensor([[4], [1], [6]])
    x = torch.randn(3, 6, 5)
    packing = PackedSequences.from_padding_mask(padding)
    packed = packing.pack(x)
    assert packed.shape == (11, 5) and packing.cu_seqlens.tolist() == [0, 4, 5, 11]
    torch.testing.assert_close(packing.unpack(packed), x.masked_fill(padding[..., None], 0.0))
    assert [len(s) for s in packing.sequences(packed)] == [4, 1, 6]


def test_softmax_packs_sequences():
    assert "softmax" in PACKING


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("name", PACKING)
def test_packed_layers_give_the_padded_logits(name, pooling):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    config = dict(d_model=16, num_layers=2, num_heads=2, mlp_dim=32, pooling=pooling, pos_encoding="learned")
    single = TaskSpec(name="text", num_classes=2, max_length=LENGTH, vocab_size=257)
    dual = TaskSpec(name="retrieval", num_classes=2, max_length=LENGTH, vocab_size=257, dual=True)
    for spec, lengths in ((single, [7, 40, 13]), (dual, [[5, 11], [17, 40]])):
        padded = LRAClassifier(spec, ModelConfig(**config, unpad=False), name).eval()
        packed = LRAClassifier(spec, ModelConfig(**config, unpad=True), name).eval()
        packed.load_state_dict(padded.state_dict())
        inputs, padding = batch(lengths, generator)
        assert packed.packs_on(torch.device("cpu")) and not padded.packs_on(torch.device("cpu"))
        packing = packed.packing_for(padding)  # as the training module makes it, on the host
        assert packing.longest == max(torch.tensor(lengths).flatten().tolist()) + (pooling == "cls")  # exact
        with torch.no_grad():
            torch.testing.assert_close(packed(inputs, padding, packing), padded(inputs, padding), rtol=1e-5,
                                       atol=1e-5)


def test_the_packing_moves_as_one_batch_entry_and_keeps_its_layout():
    padding = torch.arange(6) >= torch.tensor([[4], [1], [6]])
    packing = PackedSequences.from_padding_mask(padding)
    moved = move_data_to_device({"padding_mask": padding, "packing": packing}, torch.device("cpu"))["packing"]
    assert isinstance(moved, PackedSequences) and moved.longest == 6 and moved.tokens == 11
    assert torch.equal(moved.rows, packing.rows) and torch.equal(moved.cu_seqlens, packing.cu_seqlens)


def test_a_packing_made_on_the_host_cuts_its_sequences_without_reading_the_offsets_back():
    """Backends without a varlen kernel (fp32 on CUDA) attend sequence by sequence: with the lengths known on
    the host that costs no device sync (tests/train/test_speed.py checks it on a GPU)."""
    packing = PackedSequences.from_padding_mask(torch.arange(6) >= torch.tensor([[4], [1], [6]]))
    unreadable = dataclasses.replace(packing, cu_seqlens=packing.cu_seqlens.to("meta"))  # .tolist() would raise
    parts = unreadable.sequences(torch.arange(11))
    assert [part.tolist() for part in parts] == [[0, 1, 2, 3], [4], [5, 6, 7, 8, 9, 10]]


def test_the_training_module_packs_a_padded_batch_on_the_host() -> None:
    module = LRAModule(TaskSpec(name="text", num_classes=2, max_length=LENGTH, vocab_size=257),
                       ModelConfig(d_model=16, num_heads=2, unpad=True), "softmax", {}, torch.optim.AdamW)
    module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), training=False)
    module.setup("validate")  # evaluation packs where the model can
    inputs, padding = batch([7, 40, 13], torch.Generator().manual_seed(0))
    prepared = module.on_before_batch_transfer({"inputs": inputs, "padding_mask": padding}, 0)
    assert prepared["packing"].cu_seqlens.tolist() == [0, 8, 49, 63]  # the CLS position first in each
    assert "packing" not in module.on_before_batch_transfer({"inputs": inputs}, 0)
    module.trainer.training = True  # training packs as on_fit_start decided (here: not yet, so padded)
    assert "packing" not in module.on_before_batch_transfer({"inputs": inputs, "padding_mask": padding}, 0)


def test_unpad_true_refuses_a_backend_that_cannot_pack():
    name = next(n for n in lra.attention.available() if not lra.attention.backend_class(n).packs_sequences)
    spec = TaskSpec(name="text", num_classes=2, max_length=LENGTH, vocab_size=257)
    with pytest.raises(ValueError, match="cannot attend within packed sequences"):
        LRAClassifier(spec, ModelConfig(d_model=16, num_heads=2, unpad=True), name, {"max_length": LENGTH}
                      if name == "linformer" else {})


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [4, 32, 64])
def test_flash_packed_matches_the_masked_path_on_the_gpu(head_dim):
    """bf16 varlen FlashAttention (head dims below 8 padded) against masked SDPA: outputs and gradients."""
    torch.manual_seed(0)
    backend = lra.attention.create("softmax", num_heads=4, head_dim=head_dim).cuda()
    lengths, total = [300, 1024, 17, 700], 1024
    padding = (torch.arange(total) >= torch.tensor(lengths)[:, None]).cuda()
    q, k, v = (torch.randn(4, 4, total, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    grad = torch.randn(4, 4, total, head_dim, device="cuda", dtype=torch.bfloat16)
    real = ~padding[:, None, :, None]
    masked = backend(q, k, v, key_padding_mask=padding)
    reference = torch.autograd.grad((masked * grad * real).sum(), (q, k, v))
    packing = PackedSequences.from_padding_mask(padding)
    layout = [packing.pack(t.transpose(1, 2)) for t in (q, k, v)]
    out = packing.unpack(backend.forward_packed(*layout, packing)).transpose(1, 2)
    grads = torch.autograd.grad((out * grad * real).sum(), (q, k, v))
    torch.testing.assert_close(out * real, masked * real, rtol=2e-2, atol=2e-2)
    for got, want in zip(grads, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
def test_flash_packed_dropout_trains_on_the_gpu():
    """With attention dropout the packed path runs forward and backward (the kernel replays its mask)."""
    backend = lra.attention.create("softmax", num_heads=2, head_dim=64, dropout=0.1).cuda().train()
    padding = (torch.arange(256) >= torch.tensor([100, 256])[:, None]).cuda()
    packing = PackedSequences.from_padding_mask(padding)
    q, k, v = (torch.randn(packing.tokens, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    out = backend.forward_packed(q, k, v, packing)
    out.float().square().sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert not torch.equal(out, backend.eval().forward_packed(q, k, v, packing))
