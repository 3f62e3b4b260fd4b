"""The analysis's files: CSVs and PNGs written beside their target under a temporary name, then renamed over
it, so a reader never sees half a file."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_row(item: Any) -> dict[str, Any]:
    """A dataclass or a dict as a CSV row: tuples joined by spaces."""
    row = dataclasses.asdict(item) if dataclasses.is_dataclass(item) else dict(item)
    return {key: " ".join(map(_cell, value)) if isinstance(value, tuple) else value for key, value in row.items()}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    write_atomic(path, lambda tmp: tmp.write_text(buffer.getvalue()))
