"""The reports as self-contained HTML pages: a table, notes, plots and sections, with inline
CSS only (no scripts, no external files: a report opens from a CI artifact or an e-mail).
Every user-given string (recipe, artifact, override, op names) goes through html.escape.
"""

from __future__ import annotations

import html
from typing import Sequence

from .report_table import Column, Row, report_columns, table_cells, table_note

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; overflow-wrap: anywhere; }
h2 { font-size: 1.1em; margin-top: 1.5em; }
ul.failed { font-weight: normal; }
ul.jobs { padding-left: 1.2em; font-size: 14px; overflow-wrap: anywhere; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 6px; white-space: nowrap; }
td.gate { white-space: normal; min-width: 10em; }
th { background: #f4f4f4; white-space: normal; }
td { background: #fff; }
/* The artifact stays in view while a narrow screen scrolls the figures sideways. */
th:first-child, td:first-child { position: sticky; left: 0; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.text { text-align: left; }
.passed { color: #1a7f37; } .failed { color: #cf222e; font-weight: bold; } .skipped { color: #9a6700; }
.cached { color: #777; } .front { color: #d62728; font-weight: bold; }
figure { display: inline-block; vertical-align: top; margin: 1em 2em 1em 0; max-width: 100%; }
figure svg { max-width: 100%; height: auto; }
/* The key to a chart's numbered points: real text, so it stays readable on a phone. */
ol.key { font-size: 13px; margin: 0.3em 0 0 0; padding-left: 2.2em; columns: 2; column-gap: 2em; max-width: 34em; }
ol.key li { overflow-wrap: anywhere; }
h3 { font-size: 1em; margin-top: 1.5em; overflow-wrap: anywhere; }
h4 { font-size: 0.95em; }
p.note { font-size: 14px; color: #444; max-width: 60em; overflow-wrap: anywhere; }
/* A layer or op name: cut short, in full in its title (names of fused ops run long). */
td.name { max-width: 16em; overflow: hidden; text-overflow: ellipsis; }
@media (max-width: 600px) {
  body { margin: 0.8em; } table { font-size: 12px; } td.name { max-width: 9em; }
  figure { margin: 1em 0; } ol.key { columns: 1; }
}
"""


def html_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """A table in a box that scrolls sideways on a narrow screen (the page itself never does)."""
    head = "".join(f'<th class="{"num" if c.numeric else "text"}">{_breakable(c.header)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{_cell_class(c, r, text)}">{html.escape(text)}</td>'
                         for c, text in zip(columns, table_cells(r, columns))) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _breakable(header: str) -> str:
    """A header may break after its dots: a swept key (export.tflite.quantization) needs no
    more width than its values."""
    return html.escape(header).replace(".", ".<wbr>")


def html_page(rows: Sequence[Row], title: str, plots: Sequence[str], intro: str = "",
              columns: Sequence[Column] | None = None, extra: str = "", note: str | None = None) -> str:
    """The page: `intro` (HTML) above the table; `columns` default to the report's; `note`
    (text) under the table, by default what the report's figures are; `extra` (an HTML
    fragment: step times, the int8 section) after the table, its notes and plots."""
    columns = report_columns(rows) if columns is None else columns
    note = table_note(rows) if note is None else note
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
{intro}{html_table(rows, columns)}
<p class="note">{html.escape(note)}</p>
{_problems(rows)}{''.join(f'<figure>{p}</figure>' for p in plots)}
{extra}</body></html>
"""


def _problems(rows: Sequence[Row]) -> str:
    """Each broken gate in full: the table's gate cell names only the limits."""
    items = [f"<li>{html.escape(_row_label(r))}: {html.escape(p)}</li>" for r in rows for p in r.get("gate_problems") or ()]
    return f'<h2>Gate violations</h2><ul class="failed">{"".join(items)}</ul>\n' if items else ""


def _row_label(row: Row) -> str:
    return f"{row['artifact']} ({row['runtime']})" if row.get("runtime") else row["artifact"]


def _cell_class(column: Column, row: Row, text: str) -> str:
    base = "num" if column.numeric else "text"
    verdict = text.split(":")[0]
    if column.header in ("verify", "gate") and verdict in ("passed", "failed", "skipped"):
        return f"text {column.header} {verdict}"
    if column.style is not None:
        return f"{base} {column.style(row)}".strip()
    return base
