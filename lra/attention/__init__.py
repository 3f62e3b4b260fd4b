"""Attention backends behind one interface, chosen by name (``attention=NAME`` on the command line).

``create(name, num_heads=H, head_dim=d, causal=False, **options)`` builds one; every backend maps
``(q, k, v, key_padding_mask)`` of shape ``(batch, heads, length, head_dim)`` to an output of the same
shape (see ``AttentionBackend``, which also defines the causal and recurrent forms and the capability
flags). Adding a backend is one module here, one ``conf/attention/NAME.yaml`` and one test; the tests
generated from the registry (``tests/attention/test_causal.py``) cover it as its flags say.
"""

# Importing a backend module registers it under its name.
from lra.attention import (  # noqa: F401
    elementwise,
    linear,
    linformer,
    local,
    nystrom,
    performer,
    softmax,
    taylorshift,
)
from lra.attention.base import AttentionBackend
from lra.attention.registry import UnknownBackendError, available, backend_class, create, options, register

__all__ = [
    "AttentionBackend", "UnknownBackendError", "available", "backend_class", "create", "options", "register",
]
