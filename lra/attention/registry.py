"""Name -> backend class, and ``create``: the one way to build a backend.

A backend is found by its registered name (``attention=NAME``), by the name of an entry point of the group
``lra.attention`` that an installed package declares, or by an import path ``module:Class``
(``attention=custom attention.target=my_pkg.attn:MyAttention``): a class of your own is used exactly as a
registered one, without editing lra.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lra.attention.base import AttentionBackend

_BACKENDS: dict[str, type[AttentionBackend]] = {}
_COMMON = ("num_heads", "head_dim", "max_length", "dropout", "causal")
ENTRY_POINT_GROUP = "lra.attention"
# ``attention=custom``: the backend is the class that ``attention.target`` names (module:Class or an entry point).
CUSTOM = "custom"


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
    """Names of the registered (built-in) backends, sorted."""
    return sorted(_BACKENDS)


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Backends that installed packages declare in the entry-point group ``lra.attention``, by name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def backend_class(name: str) -> type[AttentionBackend]:
    """The class of a registered name, an ``lra.attention`` entry point or a ``module:Class`` path."""
    if name in _BACKENDS:
        return _BACKENDS[name]
    if ":" in name:
        cls = _import_target(name)
    elif name in entry_points():
        try:
            cls = entry_points()[name].load()
        except Exception as error:  # the plugin's own import failed: say which and why
            raise UnknownBackendError(f"attention entry point {name!r} does not load: {error}") from None
    else:
        plugins = f"; entry points ({ENTRY_POINT_GROUP}): {', '.join(sorted(entry_points()))}" if entry_points() else ""
        raise UnknownBackendError(f"unknown attention backend {name!r}; known backends: {', '.join(available())}"
                                  f"{plugins}; a class of your own: attention=custom attention.target=module:Class")
    if not (isinstance(cls, type) and issubclass(cls, AttentionBackend)):
        raise UnknownBackendError(f"attention {name!r} is {cls!r}, not a subclass of lra.attention.AttentionBackend")
    return cls


def _import_target(target: str) -> type:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownBackendError(f"attention target {target!r}: cannot import {module_name!r} ({error}); is "
                                  "its package installed or on PYTHONPATH?") from None
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise UnknownBackendError(f"attention target {target!r}: module {module_name!r} has no {attribute!r}")
        value = getattr(value, part)
    return value


def options(name: str) -> dict[str, object]:
    """A backend's own options with their defaults (the keys its ``conf/attention/NAME.yaml`` may set)."""
    params = inspect.signature(backend_class(name).__init__).parameters
    return {
        key: (None if p.default is inspect.Parameter.empty else p.default)
        for key, p in params.items()
        if key != "self" and key not in _COMMON and p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def check_options(name: str, backend_options: Mapping[str, object]) -> None:
    """Refuse options the backend's constructor does not take, naming the ones it does."""
    valid = options(name)
    unknown = sorted(set(backend_options) - set(valid))
    if unknown:
        raise UnknownBackendError(
            f"attention backend {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(valid)) or '(none)'}"
        )


@dataclass(frozen=True)
class AttentionChoice:
    """The attention of a run, resolved and checked once: ``name`` (registered, entry point or
    ``module:Class``) and the options its constructor takes."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_options(self.name, self.options)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AttentionChoice:
        """From the ``attention`` group of a config: ``{name, **options}``, or ``{name: custom, target, **options}``."""
        settings = dict(config)
        name = settings.pop("name")
        if name == CUSTOM:
            name = settings.pop("target", None)
            if not name or name == "???":
                raise UnknownBackendError("attention=custom needs attention.target=module:Class (a subclass of "
                                          f"lra.attention.AttentionBackend) or the name of a {ENTRY_POINT_GROUP} "
                                          "entry point")
        return cls(str(name), settings)

    @property
    def backend_class(self) -> type[AttentionBackend]:
        return backend_class(self.name)

    def create(self, *, num_heads: int, head_dim: int, max_length: int | None = None, dropout: float = 0.0,
               causal: bool = False) -> AttentionBackend:
        return create(self.name, num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout,
                      causal=causal, **self.options)


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
    check_options(name, backend_options)
    return cls(num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout, causal=causal,
               **backend_options)


def capability_table() -> str:
    """The registered backends and their capability flags as a markdown table (the README's, which
    ``python -m lra.attention table`` prints and ``tests/attention/test_registry.py`` keeps equal)."""
    def mark(flag: object) -> str:
        return {True: "yes", False: "no", None: "not stated"}[flag]

    rows = ["| backend | time | causal | recurrent | permutation-equivariant | needs `max_length` | GPU-only paths |",
            "|---|---|---|---|---|---|---|"]
    for name in available():
        cls = _BACKENDS[name]
        gpu = ", ".join(" ".join(f"{key}={value}" for key, value in options.items())
                        for options in cls.gpu_paths.values())
        rows.append(f"| `{name}` | {cls.complexity} | {mark(cls.supports_causal)} | {mark(cls.supports_recurrent)} | "
                    f"{mark(cls.permutation_equivariant)} | {mark(cls.needs_max_length)} | {gpu or '-'} |")
    return "\n".join(rows)
