"""The one atomic writer: strict JSON, no half files, no temporary files left behind."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from lra.results.files import write_atomic, write_csv, write_json_atomic


def strict_json(path: Path) -> dict:
    """The file, parsed as a strict parser would: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_records_are_strict_json_with_non_finite_values_noted(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"metrics": {"test/loss@last": math.nan, "test/acc@last": 0.25},
                             "history": [{"step": 10, "val/loss": math.inf}]})
    record = strict_json(path)
    assert record["metrics"] == {"test/loss@last": None, "test/acc@last": 0.25}
    assert record["history"] == [{"step": 10, "val/loss": None}]
    assert record["non_finite"] == ["history.0.val/loss", "metrics.test/loss@last"]


class Interrupted(Exception):
    pass


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "table.md"
    write_atomic(path, b"old")

    def killed(*args: object) -> None:
        raise Interrupted

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Interrupted):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]


def test_a_temporary_file_names_its_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # cleaners (lra.data.cache.remove_dead_partials) remove ".*.partial-<pid>" of processes no longer alive
    seen: list[str] = []
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        seen.append(Path(source).name)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "last.ckpt", b"x")
    assert len(seen) == 1 and seen[0].startswith(".last.ckpt.") and seen[0].endswith(f".partial-{os.getpid()}")


def test_csv_cells_round_floats_and_leave_none_empty(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    write_csv(path, ("a", "b", "c"), [{"a": 1 / 3, "b": None, "c": "x"}, {"a": 2}])
    assert path.read_text() == "a,b,c\n0.333333,,x\n2,,\n"
