"""Backend configurations and random inputs shared by the attention tests, generated from the registry.

Every list of forms below is a function of ``lra.attention.available()``: each registered backend appears in
each list at least with its default options (``tests/attention/test_registry.py`` fails when one is missing),
and the hand-written forms add the options worth testing on their own. A backend added later is covered
without this file being edited.
"""

from __future__ import annotations

import torch

import lra.attention
from lra.attention.contract import random_qkv as qkv
from lra.attention.contract import suffix_padding

Form = tuple[str, str, dict]  # (id, backend name, options)

# The forms worth testing on their own, with options small enough for fast CPU tests (Linformer's
# max_length comes from the test).
CASES: list[Form] = [
    ("softmax", "softmax", {}),
    ("taylorshift-direct", "taylorshift", {"mode": "direct"}),
    ("taylorshift-efficient", "taylorshift", {"mode": "efficient"}),
    ("taylorshift-unnormalized", "taylorshift", {"mode": "efficient", "output_normalized": False}),
    ("performer-softmax", "performer", {"nb_features": 16}),
    ("performer-relu", "performer", {"nb_features": 16, "kernel": "relu"}),
    ("performer-chunked", "performer", {"nb_features": 16, "chunk_size": 7}),
    ("elementwise-linear", "elementwise", {}),
    ("elementwise-quadratic", "elementwise", {"mode": "quadratic", "order": 4}),
    ("elementwise-direct", "elementwise", {"mode": "direct"}),
    ("linear", "linear", {}),
    ("nystrom", "nystrom", {"num_landmarks": 4, "conv_kernel_size": 3}),
    ("nystrom-noconv", "nystrom", {"num_landmarks": 4, "conv_kernel_size": None}),
    ("linformer", "linformer", {"proj_dim": 6}),
    ("linformer-shared", "linformer", {"proj_dim": 6, "share_kv": True}),
    ("local-blocked", "local", {"window": 5}),
    ("local-sliding", "local", {"window": 6, "sliding": True}),
]
CASE_IDS = [case[0] for case in CASES]

# On CUDA at N = 4096 (tests/attention/test_gpu.py), besides every backend's defaults and GPU-only paths.
GPU_EXTRAS: list[tuple[str, dict]] = [
    ("softmax", {"padding": "mask"}),
    ("taylorshift", {"mode": "direct"}),
    ("taylorshift", {"mode": "efficient", "impl": "torch"}),
    ("performer", {"kernel": "relu"}),
    ("performer", {"chunk_size": 1024}),
    ("elementwise", {"order": 6}),
    ("local", {"sliding": True}),
    ("local", {"sliding": True, "impl": "chunked"}),
]

# At N = 512 (tests/attention/test_memory.py), besides every backend's defaults.
MEMORY_EXTRAS: list[tuple[str, dict]] = [
    ("taylorshift", {"mode": "efficient"}),
    ("taylorshift", {"mode": "direct"}),
    ("performer", {"nb_features": 32, "kernel": "relu", "chunk_size": 128}),
    ("elementwise", {"mode": "linear", "order": 4}),
    ("elementwise", {"mode": "quadratic"}),
    ("nystrom", {"num_landmarks": 16}),
    ("local", {"window": 32, "sliding": True}),
]


def defaults() -> list[tuple[str, dict]]:
    """Every registered backend with its default options."""
    return [(name, {}) for name in lra.attention.available()]


def all_forms() -> list[Form]:
    """CASES, plus every registered backend with its default options where CASES has no such entry."""
    given = [(name, options) for _, name, options in CASES]
    return CASES + [(f"{name}-defaults", name, {}) for name, options in defaults() if (name, options) not in given]


def forms(flag: str) -> list[Form]:
    """The entries of ``all_forms()`` whose backend class has the capability flag ``flag`` (e.g. supports_causal)."""
    return [case for case in all_forms() if getattr(lra.attention.backend_class(case[1]), flag)]


def gpu_forms() -> list[tuple[str, dict]]:
    """Every registered backend's defaults and each of its GPU-only paths (``gpu_paths``), then GPU_EXTRAS."""
    paths = [(name, options) for name in lra.attention.available()
             for options in lra.attention.backend_class(name).gpu_paths.values()]
    return _unique([*defaults(), *paths, *GPU_EXTRAS])


def memory_forms() -> list[tuple[str, dict]]:
    """Every registered backend's defaults, then MEMORY_EXTRAS."""
    return _unique([*defaults(), *MEMORY_EXTRAS])


def subquadratic(name: str, options: dict) -> bool:
    """Whether the form's time complexity (the class's ``complexity_of``) has no N^2 term."""
    return "N^2" not in lra.attention.backend_class(name).complexity_of(options)


def form_id(form: tuple[str, dict]) -> str:
    name, options = form
    return "-".join([name, *(f"{key}={value}" for key, value in options.items())])


def _unique(entries: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    kept: list[tuple[str, dict]] = []
    for entry in entries:
        if entry not in kept:
            kept.append(entry)
    return kept


def build(name: str, options: dict, *, heads: int = 2, head_dim: int = 8, max_length: int = 64,
          dtype: torch.dtype = torch.float32, dropout: float = 0.0,
          causal: bool = False) -> lra.attention.AttentionBackend:
    backend = lra.attention.create(name, num_heads=heads, head_dim=head_dim, max_length=max_length,
                                   dropout=dropout, causal=causal, **options)
    return backend.to(dtype).eval()


ALL_FORMS = all_forms()
ALL_FORM_IDS = [case[0] for case in ALL_FORMS]

__all__ = ["ALL_FORMS", "ALL_FORM_IDS", "CASES", "CASE_IDS", "all_forms", "build", "defaults", "form_id", "forms",
           "gpu_forms", "memory_forms", "qkv", "subquadratic", "suffix_padding"]


def eager_and_compiled(call, inputs: list[torch.Tensor], dout: torch.Tensor) -> list[list[torch.Tensor]]:
    """``call(*inputs)`` run eager and under ``torch.compile(fullgraph=True, backend="aot_eager")`` (a graph break
    fails it): for each, the output and the gradients of ``inputs`` from the output gradient ``dout``."""
    torch._dynamo.reset()
    results = []
    for function in (call, torch.compile(call, fullgraph=True, backend="aot_eager")):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = function(*leaves)
        out.backward(dout)
        results.append([out, *(x.grad for x in leaves)])
    return results
