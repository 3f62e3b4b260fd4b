"""A table as plain data and its Markdown: the one table of the benchmark summaries and of ``lra.tables``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    """A titled grid of cells; ``kinds`` tags each row (published, ours, params, delta) for styling, ``caption``
    describes the table and ``notes`` follow it as a list."""

    title: str
    columns: list[str]
    rows: list[list[object]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str = ""

    def add(self, cells: Sequence[object], kind: str = "") -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: a row of {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(cell) for cell in cells])
        self.kinds.append(kind)


def markdown(table: Table, level: int = 2, caption_first: bool = True) -> str:
    """The table under a heading of ``level``; its caption above the grid, or below it (``caption_first=False``,
    the benchmark summaries' layout), then its notes as a list."""
    def escape(cell: object) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    caption = [table.caption, ""] if table.caption else []
    lines = [f"{'#' * level} {table.title}", "", *(caption if caption_first else [])]
    lines.append("| " + " | ".join(escape(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in table.rows]
    if caption and not caption_first:
        lines += ["", table.caption]
    if table.notes:
        lines += ["", *[f"- {note}" for note in table.notes]]
    return "\n".join(lines) + "\n"
