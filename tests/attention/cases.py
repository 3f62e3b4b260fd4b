"""Backend configurations and random inputs shared by the attention tests."""

from __future__ import annotations

import torch

import lra.attention
from lra.attention.contract import random_qkv as qkv
from lra.attention.contract import suffix_padding

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
ALL_FORM_IDS = [case[0] for case in ALL_FORMS]


def forms(flag: str) -> list[tuple[str, str, dict]]:
    """The entries of ALL_FORMS whose backend class has the capability flag ``flag`` (e.g. supports_causal)."""
    return [case for case in ALL_FORMS if getattr(lra.attention.backend_class(case[1]), flag)]


def build(name: str, options: dict, *, heads: int = 2, head_dim: int = 8, max_length: int = 64,
          dtype: torch.dtype = torch.float32, dropout: float = 0.0,
          causal: bool = False) -> lra.attention.AttentionBackend:
    backend = lra.attention.create(name, num_heads=heads, head_dim=head_dim, max_length=max_length,
                                   dropout=dropout, causal=causal, **options)
    return backend.to(dtype).eval()


__all__ = ["ALL_FORMS", "ALL_FORM_IDS", "CASES", "CASE_IDS", "build", "forms", "qkv", "suffix_padding"]
