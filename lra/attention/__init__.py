"""Attention backends behind one interface, chosen by name (``attention=NAME`` on the command line).

``create(name, num_heads=H, head_dim=d, causal=False, **options)`` builds one; every backend maps
``(q, k, v, key_padding_mask)`` of shape ``(batch, heads, length, head_dim)`` to an output of the same
shape (see ``AttentionBackend``, which also defines the causal and recurrent forms and the capability
flags). Adding a backend is one module here and one ``conf/attention/NAME.yaml``: the package imports every
module it holds (``discover``), and the tests generated from the registry (``tests/attention``) cover it as
its flags say.
"""

from __future__ import annotations

import importlib
import pkgutil

from lra.attention.base import AttentionBackend
from lra.attention.registry import UnknownBackendError, available, backend_class, create, options, register


def discover() -> list[str]:
    """Import every module of this package (``__path__``), which registers the backends they define;
    returns the modules' names. Names starting with ``_`` (``__main__``) are not backends."""
    names = sorted(module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


discover()

__all__ = [
    "AttentionBackend", "UnknownBackendError", "available", "backend_class", "create", "discover", "options",
    "register",
]
