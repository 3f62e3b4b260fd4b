"""What is measured: ``bench.attention`` entries -> named series (a backend and its options).

An entry is a backend name (``softmax``) or a mapping ``{backend: NAME, label: SHOWN_AS, up_to: N,
OPTION: VALUE, ...}``; on the command line ``bench.attention=[softmax,{backend:taylorshift,mode:direct}]``.
The label defaults to ``NAME`` or ``NAME(option=value,...)``; ``up_to`` limits the series to lengths
up to N (quadratic backends, while the linear ones go on to longer sequences). ``all`` (the default of
``conf/bench.yaml``) is every registered backend in the forms its class lists (``bench_forms``). Names and
option names are checked against the registry before anything runs, so a typo fails at once with the valid
choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lra import attention
from lra.attention import UnknownBackendError

ALL = "all"  # bench.attention: all: every registered backend, in the forms its class names (bench_forms)
QUADRATIC_UP_TO = 16384  # quadratic forms stop here, while the linear ones go on to longer sequences


@dataclass(frozen=True)
class Series:
    label: str
    backend: str
    options: dict[str, object] = field(default_factory=dict)
    up_to: int | None = None

    def resolved_options(self) -> dict[str, object]:
        """The backend's defaults overlaid with this series' options."""
        return {**attention.options(self.backend), **self.options}

    def role(self) -> str | None:
        """The series' part in the TaylorShift comparison: softmax | direct | efficient | fused | None.

        ``fused`` is efficient TaylorShift through the Triton kernel (``impl=triton``); TaylorShift in
        ``auto`` mode switches form with N, so it has no single role.
        """
        if self.backend == "softmax":
            return "softmax"
        if self.backend != "taylorshift":
            return None
        resolved = self.resolved_options()
        if resolved.get("mode") == "direct":
            return "direct"
        if resolved.get("impl") == "triton":
            return "fused"
        if resolved.get("mode") == "efficient":
            return "efficient"
        return None

    def cost_kind(self) -> str | None:
        """Which formula of ``lra.bench.analytic`` counts this series' FLOPs."""
        role = self.role()
        return "efficient" if role == "fused" else role

    def describe_options(self) -> str:
        return ";".join(f"{key}={value}" for key, value in sorted(self.options.items()))


def registered_entries() -> list[dict[str, object]]:
    """``bench.attention: all``: every registered backend's ``bench_forms``, softmax (the reference) first and
    backends that compile per shape last; a form whose complexity has N^2 stops at QUADRATIC_UP_TO."""
    names = sorted(attention.available(), key=lambda name: (attention.backend_class(name).compiles_per_shape,
                                                            name != "softmax", name))
    entries: list[dict[str, object]] = []
    for name in names:
        cls = attention.backend_class(name)
        for suffix, options in cls.bench_forms.items():
            entry: dict[str, object] = {"backend": name, "label": f"{name}-{suffix}" if suffix else name, **options}
            if "N^2" in cls.complexity_of(options):
                entry["up_to"] = QUADRATIC_UP_TO
            entries.append(entry)
    return entries


def parse_series(entries: object) -> list[Series]:
    """Turn ``bench.attention`` into series (``all``: ``registered_entries()``); unknown backends or options
    raise ``UnknownBackendError``."""
    if entries == ALL:
        entries = registered_entries()
    if isinstance(entries, str | Mapping):
        entries = [entries]
    series = [_parse_entry(entry) for entry in entries]
    if not series:
        raise ValueError(f"bench.attention is empty; give one or more of: {', '.join(attention.available())}")
    labels = [s.label for s in series]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"bench.attention names the series {', '.join(repeated)} twice; give each a "
                         "distinct label, e.g. {backend:taylorshift,mode:direct,label:ts-direct}")
    return series


def _parse_entry(entry: object) -> Series:
    if isinstance(entry, str):
        backend, options, label, up_to = entry, {}, None, None
    elif isinstance(entry, Mapping):
        options = {str(key): value for key, value in entry.items()}
        if "backend" not in options:
            raise ValueError(f"bench.attention entry {dict(entry)} has no 'backend' key; write it as "
                             "{backend: NAME, OPTION: VALUE}")
        backend = str(options.pop("backend"))
        label = options.pop("label", None)
        up_to = options.pop("up_to", None)
        if up_to is not None and (not isinstance(up_to, int) or up_to < 1):
            raise ValueError(f"bench.attention entry {dict(entry)}: up_to must be a positive length")
    else:
        raise ValueError(f"bench.attention entries are names or mappings, not {entry!r}")
    attention.backend_class(backend)  # raises with the known names
    unknown = sorted(set(options) - set(attention.options(backend)))
    if unknown:
        valid = ", ".join(sorted(attention.options(backend))) or "(none)"
        raise UnknownBackendError(f"bench.attention: backend {backend!r} has no option(s) "
                                  f"{', '.join(unknown)}; its options: {valid}")
    if label is None:
        inner = ",".join(f"{key}={value}" for key, value in options.items())
        label = f"{backend}({inner})" if inner else backend
    return Series(label=str(label), backend=backend, options=options, up_to=up_to)
