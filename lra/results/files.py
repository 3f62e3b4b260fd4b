"""The one atomic writer: every record, checkpoint, CSV, table and plot of lra is written through it.

A file is written to a temporary name beside its target (``.<name>.<random>.partial-<pid>``, which cleaners
recognise by the writer's process id), flushed to disk, then renamed over the target: a reader sees the old
file or the new one, never a part.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the file gets the mode of any new file (the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.partial-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_figure(path: Path, figure: Any, dpi: int) -> None:
    """A matplotlib figure (anything with ``savefig``: this module imports no matplotlib) as a PNG file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_atomic(path, buffer.getvalue())


def finite_only(data: Any, key: str = "") -> tuple[Any, list[str]]:
    """``data`` with every NaN or infinite float replaced by None, and the dotted keys that held one."""
    if isinstance(data, float) and not math.isfinite(data):
        return None, [key]
    if isinstance(data, dict | list | tuple):
        items = data.items() if isinstance(data, dict) else enumerate(data)
        cleaned = {name: finite_only(value, f"{key}.{name}" if key else str(name)) for name, value in items}
        found = [found_key for _, keys in cleaned.values() for found_key in keys]
        values = {name: value for name, (value, _) in cleaned.items()}
        return (values if isinstance(data, dict) else list(values.values())), found
    return data, []


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON: NaN and infinities, which strict parsers refuse, are written as null and
    their keys listed under ``non_finite``."""
    clean, non_finite = finite_only(data)
    if non_finite:
        clean["non_finite"] = sorted(set(non_finite) | set(clean.get("non_finite") or []))
    write_text(path, json.dumps(clean, indent=1, sort_keys=True, default=str, allow_nan=False))


def csv_value(value: object) -> str:
    """A CSV cell: floats to six significant digits, None empty."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Rows (dicts) as a CSV of ``columns``; a key a row lacks is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_value(row.get(key)) for key in columns})
    write_text(path, buffer.getvalue())
