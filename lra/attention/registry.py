"""Name -> backend class, and ``create``: the one way to build a backend."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from lra.attention.base import AttentionBackend

_BACKENDS: dict[str, type[AttentionBackend]] = {}
_COMMON = ("num_heads", "head_dim", "max_length", "dropout", "causal")


class UnknownBackendError(ValueError):
    """An attention name or option that no backend knows."""


def register(name: str) -> Callable[[type[AttentionBackend]], type[AttentionBackend]]:
    """Class decorator: make a backend available as ``attention=name``."""

    def add(cls: type[AttentionBackend]) -> type[AttentionBackend]:
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"attention backend {name!r} is registered twice")
        _BACKENDS[name] = cls
        cls.backend_name = name
        return cls

    return add


def available() -> list[str]:
    """Names of the registered backends, sorted."""
    return sorted(_BACKENDS)


def backend_class(name: str) -> type[AttentionBackend]:
    if name not in _BACKENDS:
        raise UnknownBackendError(f"unknown attention backend {name!r}; known backends: {', '.join(available())}")
    return _BACKENDS[name]


def options(name: str) -> dict[str, object]:
    """A backend's own options with their defaults (the keys its ``conf/attention/NAME.yaml`` may set)."""
    params = inspect.signature(backend_class(name).__init__).parameters
    return {
        key: (None if p.default is inspect.Parameter.empty else p.default)
        for key, p in params.items()
        if key != "self" and key not in _COMMON and p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def create(
    name: str,
    *,
    num_heads: int,
    head_dim: int,
    max_length: int | None = None,
    dropout: float = 0.0,
    causal: bool = False,
    **backend_options: object,
) -> AttentionBackend:
    """Build the backend ``name``; unknown names and options fail with the valid choices, and ``causal=True``
    fails on a backend without a causal form."""
    cls = backend_class(name)
    valid = options(name)
    unknown = sorted(set(backend_options) - set(valid))
    if unknown:
        raise UnknownBackendError(
            f"attention backend {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(valid)) or '(none)'}"
        )
    return cls(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout, causal=causal,
               **backend_options)
