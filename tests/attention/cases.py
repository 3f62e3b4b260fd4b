"""Backend configurations and random inputs shared by the attention tests."""

from __future__ import annotations

import torch

import lra.attention

# Every backend, in every form worth testing, with options small enough for fast CPU tests.
# Each entry: (id, name, options). Linformer's max_length comes from the test.
CASES = [
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

# CASES, plus every registered backend with its default options where CASES has no such entry: the tests
# generated from the registry cover a backend added later without this file being edited.
ALL_FORMS = CASES + [(f"{name}-defaults", name, {}) for name in lra.attention.available()
                     if (name, {}) not in [(n, o) for _, n, o in CASES]]


def forms(flag: str) -> list[tuple[str, str, dict]]:
    """The entries of ALL_FORMS whose backend class has the capability flag ``flag`` (e.g. supports_causal)."""
    return [case for case in ALL_FORMS if getattr(lra.attention.backend_class(case[1]), flag)]

# Mechanisms whose output for token i depends on the other tokens only as a set.
PERMUTATION_EQUIVARIANT = {"softmax", "taylorshift", "performer", "elementwise", "linear"}


def build(name: str, options: dict, *, heads: int = 2, head_dim: int = 8, max_length: int = 64,
          dtype: torch.dtype = torch.float32, dropout: float = 0.0,
          causal: bool = False) -> lra.attention.AttentionBackend:
    backend = lra.attention.create(name, num_heads=heads, head_dim=head_dim, max_length=max_length,
                                   dropout=dropout, causal=causal, **options)
    return backend.to(dtype).eval()


def qkv(batch: int, heads: int, length: int, head_dim: int, dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None, requires_grad: bool = False) -> list[torch.Tensor]:
    """Fresh standard-normal q, k, v of shape (B, H, N, d)."""
    tensors = [torch.randn(batch, heads, length, head_dim, generator=generator, dtype=dtype) for _ in range(3)]
    return [t.requires_grad_(requires_grad) for t in tensors]


def suffix_padding(lengths: list[int], total: int) -> torch.Tensor:
    """(B, total) mask, True after each example's ``lengths[b]`` real tokens."""
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]
