"""One table and one Markdown for the benchmark summaries and lra.tables."""

from __future__ import annotations

import pytest

from lra.results.table import Table, markdown


def _table() -> Table:
    table = Table("Speed", ["N", "a|b"], caption="What it shows.", notes=["a note"])
    table.add([16, "1 ms"])
    return table


def test_markdown_puts_the_caption_above_the_grid_by_default() -> None:
    assert markdown(_table()) == ("## Speed\n\nWhat it shows.\n\n| N | a\\|b |\n|---|---|\n| 16 | 1 ms |\n"
                                  "\n- a note\n")


def test_the_benchmark_layout_puts_the_caption_below_the_grid() -> None:
    assert markdown(_table(), caption_first=False) == ("## Speed\n\n| N | a\\|b |\n|---|---|\n| 16 | 1 ms |\n\n"
                                                       "What it shows.\n\n- a note\n")


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="Speed: a row of 1 cells for 2 columns"):
        _table().add(["x"])
