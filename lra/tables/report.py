"""``results/report.html``: one self-contained page (inline CSS, PNG figures as data URIs, no script, no
external URL), made of sections (``Section``; the list of their builders is ``lra.tables.sections.SECTIONS``)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from lra.results.table import Table
from lra.tables.plots import Figure
from lra.tables.render import html_table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h1.section { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12.5px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
tr.published td { color: #555; } tr.ours td { background: #eef6ff; font-weight: 600; }
tr.params td, tr.delta td { font-size: 11.5px; color: #444; } tr.failed td, tr.running td { color: #a33; }
p.caption, ul.notes, p.intro { font-size: 12px; color: #444; max-width: 1200px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; max-width: 1200px; }
table.compact { font-size: 13px; } table.compact td, table.compact th.backend { text-align: left; min-width: 7em; }
table.compact tr.family th { background: #e4ecf5; text-align: left; }
table.compact .ref, table.compact .mark, table.compact .n { display: block; font-size: 11px; color: #444; }
table.compact .n { display: inline; } table.compact .mark { color: #7a3b00; }
table.compact summary { cursor: pointer; list-style: none; }
table.compact summary::-webkit-details-marker { display: none; }
table.compact .protocol { font-size: 11px; color: #333; max-width: 26em; margin-top: 4px; white-space: normal; }
details.more > summary, details.published-only > summary { cursor: pointer; color: #1f4f8f; margin: 0.4em 0; }
"""


@dataclass
class Section:
    """One part of the page: an optional intro, ready HTML (``body``), tables, notes and figures, in that order.

    ``collapsed`` puts everything below the heading behind a click (a ``<details>``): for long reference
    material that the first screen should not show."""

    heading: str
    intro: str = ""
    body: str = ""  # HTML already escaped by its maker (the compact table)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    collapsed: bool = False


def figure_html(figure: Figure, caption: str = "") -> str:
    title, uri = figure
    text = html.escape(title) + (f"<br>{html.escape(caption)}" if caption else "")
    return f'<figure><img alt="{html.escape(title)}" src="{uri}"><figcaption>{text}</figcaption></figure>'


def section_html(section: Section) -> str:
    parts = [f"<p class=intro>{html.escape(section.intro)}</p>"] if section.intro else []
    parts += [section.body] if section.body else []
    parts += [html_table(table) for table in section.tables]
    if section.notes:
        parts.append("<ul class=notes>" + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes) + "</ul>")
    parts += [figure_html(figure) for figure in section.figures]
    inner = "\n".join(parts)
    if section.collapsed:
        shown = ", ".join(t.title for t in section.tables) or section.heading
        inner = f'<details class="more"><summary>Show: {html.escape(shown)}</summary>\n{inner}\n</details>'
    return f'<section><h1 class="section">{html.escape(section.heading)}</h1>\n{inner}\n</section>'


def page(title: str, summary: list[str], sections: list[Section]) -> str:
    """The sections under a title and a short summary list."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<ul class=notes>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary) + "</ul>",
             *[section_html(section) for section in sections]]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
