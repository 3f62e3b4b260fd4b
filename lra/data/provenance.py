"""What a data label may call the release: only a source that is one.

A task's label names the release (e.g. "LRA release listops-1000 TSVs") only when the source's rows per
split are the released counts and, where a public source states a digest for the file that was read, the
file matches it; anything else is "user-supplied <what> (<n> rows: ...)". The rows are read back from the
prepared cache's manifest, so a reused cache is labelled like a freshly built one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lra.data import cache


def cached_rows(directory: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, int]:
    """Rows per split of a prepared cache (the length of each ``<split>.labels`` array)."""
    arrays = cache.read_manifest(directory)["arrays"]
    return {s: int(arrays[f"{s}.labels"]["shape"][0]) for s in splits if f"{s}.labels" in arrays}


def source_sha256(directory: Path, source: Path) -> str | None:
    """The sha256 that a cache's manifest recorded for one source file, if it recorded one."""
    wanted = str(Path(source).resolve())
    entries = cache.read_manifest(directory).get("sources", [])
    return next((e.get("sha256") for e in entries if e.get("path") == wanted), None)


def rows_text(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{split} {count:,}" for split, count in rows.items())


def source_label(release: str, other: str, rows: Mapping[str, int], released: Mapping[str, int],
                 digest_matches: bool | None = None) -> str:
    """``release`` when ``rows`` are the ``released`` counts and ``digest_matches`` is not False (None: no
    public digest for this source); else "user-supplied ``other`` (n rows: ...)", saying which test failed."""
    counts_match = dict(rows) == dict(released)
    if counts_match and digest_matches is not False:
        return release
    why = "; its sha256 is not the published one" if counts_match else f"; the release has {rows_text(released)}"
    return f"user-supplied {other} ({sum(rows.values()):,} rows: {rows_text(rows)}{why})"
