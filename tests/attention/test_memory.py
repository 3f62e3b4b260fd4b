"""Efficient backends never allocate an N x N tensor, forward or backward (checked on every op's output): every
form that ``tests.attention.cases.memory_forms()`` generates from the registry whose complexity has no N^2 term."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import lra.attention
from tests.attention.cases import build, form_id, memory_forms, qkv, subquadratic, suffix_padding

LENGTH = 512  # well above every other size in play (head_dim 8, d^2 = 64, features and windows < 100)


class OutputShapes(TorchDispatchMode):
    """Records the shape of every tensor that any op (forward or autograd backward) returns."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.shapes.append((str(func), tuple(leaf.shape)))
        return out


def quadratic_ops(name: str, options: dict, length: int = LENGTH,
                  causal: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """Ops of a padded forward + backward that return a tensor with two axes of size >= length."""
    torch.manual_seed(0)
    backend = build(name, options, heads=2, head_dim=8, max_length=length, causal=causal).train()
    q, k, v = qkv(2, 2, length, 8, requires_grad=True)
    mask = suffix_padding([length, length // 2], length)
    with OutputShapes() as recorder:
        backend(q, k, v, key_padding_mask=mask).sum().backward()
    return [(op, shape) for op, shape in recorder.shapes if sum(size >= length for size in shape) >= 2]


SUBQUADRATIC = [form for form in memory_forms() if subquadratic(*form)]
CAUSAL_SUBQUADRATIC = [form for form in SUBQUADRATIC if lra.attention.backend_class(form[0]).supports_causal]


@pytest.mark.parametrize(("name", "options"), SUBQUADRATIC, ids=[form_id(form) for form in SUBQUADRATIC])
def test_subquadratic_forms_allocate_nothing_of_size_n_by_n(name, options):
    """Every form whose complexity (``complexity_of``) has no N^2 term, generated from the registry."""
    assert quadratic_ops(name, options) == []


@pytest.mark.parametrize(("name", "options"), CAUSAL_SUBQUADRATIC,
                         ids=[form_id(form) for form in CAUSAL_SUBQUADRATIC])
def test_causal_forms_of_subquadratic_backends_allocate_nothing_of_size_n_by_n(name, options):
    assert quadratic_ops(name, options, causal=True) == []


@pytest.mark.parametrize(("name", "options"), [("taylorshift", {"mode": "direct"}),
                                               ("elementwise", {"mode": "quadratic"})])
def test_the_check_sees_quadratic_backends(name, options):
    """The same check flags the forms that do build N x N."""
    assert quadratic_ops(name, options, length=256)


def test_chunked_performer_keeps_no_length_by_features_tensor():
    """With chunk_size, no tensor pairs the full length with the feature axis, in forward or backward."""
    torch.manual_seed(1)
    backend = build("performer", {"nb_features": 48, "chunk_size": 64}, head_dim=8, max_length=LENGTH).train()
    q, k, v = qkv(2, 2, LENGTH, 8, requires_grad=True)
    with OutputShapes() as recorder:
        backend(q, k, v, key_padding_mask=suffix_padding([LENGTH, 300], LENGTH)).sum().backward()
    assert not [shape for _, shape in recorder.shapes if LENGTH in shape and 48 in shape]
    assert any(64 in shape and 48 in shape for _, shape in recorder.shapes)  # the chunks themselves
