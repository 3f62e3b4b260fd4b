"""The analysis's rows: dataclasses and dicts as CSV rows (written by ``lra.results.files.write_csv``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lra.results.files import csv_value


def as_row(item: Any) -> dict[str, Any]:
    """A dataclass or a dict as a CSV row: tuples joined by spaces."""
    row = dataclasses.asdict(item) if dataclasses.is_dataclass(item) else dict(item)
    return {key: " ".join(map(csv_value, value)) if isinstance(value, tuple) else value for key, value in row.items()}
