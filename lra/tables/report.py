"""``results/report.html``: one self-contained page (inline CSS, PNG figures as data URIs, no script, no
external URL) with the accuracy tables, the speed and memory tables, and their figures."""

from __future__ import annotations

import html

from lra.tables.plots import Figure
from lra.tables.render import Table, html_table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12.5px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
tr.published td { color: #555; } tr.ours td { background: #eef6ff; font-weight: 600; }
tr.params td, tr.delta td { font-size: 11.5px; color: #444; } tr.failed td, tr.running td { color: #a33; }
p.caption, ul.notes { font-size: 12px; color: #444; max-width: 1200px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; }
"""


def figure_html(figure: Figure) -> str:
    title, uri = figure
    return f'<figure><img alt="{html.escape(title)}" src="{uri}"><figcaption>{html.escape(title)}</figcaption></figure>'


def page(title: str, summary: list[str], sections: list[tuple[str, list[Table], list[Figure], list[str]]]) -> str:
    """Sections of (heading, tables, figures, extra notes) under a title and a short summary list."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary) + "</ul>"]
    for heading, tables, figures, notes in sections:
        parts.append(f'<section><h1 class="section">{html.escape(heading)}</h1>')
        parts += [html_table(table) for table in tables]
        if notes:
            parts.append("<ul class=notes>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        parts += [figure_html(figure) for figure in figures]
        parts.append("</section>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
