"""The report's table: fixed columns (size, speed, verdicts) around metric columns that follow
the model's outputs and tasks, rendered as Markdown and as a self-contained HTML page.

One output: `accuracy`, `Δ acc` for a classifier; `MAE`, `Δ MAE`, `RMSE` for a regression.
Several outputs: one compact column per output, `NAME: accuracy (Δ)` or
`NAME: MAE (Δ), RMSE`, so a three-output model stays readable in a terminal. Generated
inputs have no labels, so no metric columns. The terminal, Markdown, HTML and the sweep
report all show the same cells.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .metrics import CLASSIFICATION, METRICS

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    numeric: bool = True  # right-aligned


def _or_dash(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _figure(key: str, fmt: str) -> Callable[[Row], str]:
    return lambda row: _or_dash(row.get(key), fmt)


VALUE_FORMAT = {"accuracy": "{:.2%}", "mae": "{:.4g}", "rmse": "{:.4g}"}
DELTA_FORMAT = {"accuracy": "{:+.2%}", "mae": "{:+.3g}", "rmse": "{:+.3g}"}
HEADER = {"accuracy": ("accuracy", "Δ acc"), "mae": ("MAE", "Δ MAE"), "rmse": ("RMSE", "Δ RMSE")}

LEADING = (
    Column("artifact", lambda row: row["artifact"], numeric=False),
    Column("runtime", lambda row: row["runtime"] or "-", numeric=False),
    Column("bytes", _figure("bytes", "{:,}")),
    Column("gzip", _figure("gzip_bytes", "{:,}")),
    Column("p50 ms", _figure("p50_ms", "{:.4f}")),
    Column("p95 ms", _figure("p95_ms", "{:.4f}")),
    Column("samples/s", _figure("samples_per_s", "{:,.0f}")),
)
TRAILING = (
    Column("verify", lambda row: row["verify"], numeric=False),
    Column("gate", lambda row: row["gate"], numeric=False),
)


def metric_value(row: Row, output: str, metric: str) -> Any:
    return ((row.get("metrics") or {}).get(output) or {}).get(metric)


def metric_delta(row: Row, output: str, metric: str) -> Any:
    return ((row.get("metric_deltas") or {}).get(output) or {}).get(metric)


def output_tasks(rows: Sequence[Row]) -> dict[str, str]:
    """{output: task} over every row, in first-seen order."""
    tasks: dict[str, str] = {}
    for row in rows:
        for name, task in (row.get("tasks") or {}).items():
            tasks.setdefault(name, task)
    return tasks


def metric_columns(tasks: Mapping[str, str]) -> list[Column]:
    if len(tasks) == 1:
        ((name, task),) = tasks.items()
        columns = []
        for metric in METRICS[task]:
            value, delta = HEADER[metric]
            columns.append(Column(value, _value_cell(name, metric)))
            if metric == METRICS[task][0]:  # the headline metric's change against the SavedModel
                columns.append(Column(delta, _delta_cell(name, metric)))
        return columns
    return [Column(f"{name}: {_compact_header(task)}", _compact_cell(name, task)) for name, task in tasks.items()]


def _value_cell(name: str, metric: str) -> Callable[[Row], str]:
    return lambda row: _or_dash(metric_value(row, name, metric), VALUE_FORMAT[metric])


def _delta_cell(name: str, metric: str) -> Callable[[Row], str]:
    return lambda row: _or_dash(metric_delta(row, name, metric), DELTA_FORMAT[metric])


def _compact_header(task: str) -> str:
    headline, *others = METRICS[task]
    return ", ".join([f"{HEADER[headline][0]} (Δ)", *(HEADER[m][0] for m in others)])


def _compact_cell(name: str, task: str) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        headline, *others = METRICS[task]
        value = metric_value(row, name, headline)
        if value is None:
            return "-"
        delta = metric_delta(row, name, headline)
        text = VALUE_FORMAT[headline].format(value) + (f" ({DELTA_FORMAT[headline].format(delta)})" if delta is not None else "")
        return ", ".join([text, *(_or_dash(metric_value(row, name, m), VALUE_FORMAT[m]) for m in others)])

    return cell


def table_columns(rows: Sequence[Row]) -> list[Column]:
    generated = any(row.get("generated") for row in rows)  # no labels: nothing to show in metric columns
    return [*LEADING, *([] if generated else metric_columns(output_tasks(rows))), *TRAILING]


def table_cells(row: Row, columns: Sequence[Column]) -> tuple[str, ...]:
    return tuple(column.cell(row) for column in columns)


def metric_note(rows: Sequence[Row]) -> str:
    """What the metric columns are, in a sentence under the table."""
    if any(row.get("generated") for row in rows):
        return ("Generated inputs, no labels (no data was given): there is no accuracy or error to measure; "
                "verification compares each artifact's outputs with the SavedModel's.")
    tasks = set(output_tasks(rows).values())
    parts = []
    if CLASSIFICATION in tasks:
        parts.append("accuracy (top-1) on the held-out test split")
    if tasks - {CLASSIFICATION}:
        parts.append("MAE and RMSE (in the target's units) on the held-out test split")
    if not parts:
        return ""
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "; Δ against the SavedModel (the reference)."


# --- the table as Markdown and as an HTML page --------------------------------------------

NOTE = "Latency at batch 1; throughput at the benchmark batch size."


def markdown_table(rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    lines = ["| " + " | ".join(c.header for c in columns) + " |", "|" + "".join("---:|" if c.numeric else "---|" for c in columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in table_cells(r, columns)) + " |" for r in rows]
    return lines


def markdown(rows: Sequence[Row], title: str, extra: str = "") -> str:
    """The report as Markdown; `extra` (Markdown, e.g. the int8 section) after the table."""
    lines = [f"# {title}", "", *markdown_table(rows, table_columns(rows))]
    lines += ["", f"{NOTE} {metric_note(rows)}".strip(), ""]
    if extra:
        lines += [extra.rstrip("\n"), ""]
    return "\n".join(lines)


def html_page(rows: Sequence[Row], title: str, plots: Sequence[str], intro: str = "",
              columns: Sequence[Column] | None = None, extra: str = "") -> str:
    """The page: `intro` (HTML) above the table; `columns` default to the report's; `extra`
    (an HTML fragment, e.g. the int8 section) after the table, its notes and plots."""
    columns = table_columns(rows) if columns is None else columns
    head = "".join(f'<th class="{"num" if c.numeric else "text"}">{html.escape(c.header)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{_cell_class(c, text)}">{html.escape(text)}</td>'
                         for c, text in zip(columns, table_cells(r, columns))) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; overflow-wrap: anywhere; }}
h2 {{ font-size: 1.1em; }}
ul.failed {{ font-weight: normal; }}
.table {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; white-space: nowrap; }}
td.gate {{ white-space: normal; min-width: 10em; }}
th {{ background: #f4f4f4; }}
td {{ background: #fff; }}
/* The artifact stays in view while a narrow screen scrolls the figures sideways. */
th:first-child, td:first-child {{ position: sticky; left: 0; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.text {{ text-align: left; }}
.passed {{ color: #1a7f37; }} .failed {{ color: #cf222e; font-weight: bold; }} .skipped {{ color: #9a6700; }}
figure {{ display: inline-block; margin: 1em 2em 1em 0; max-width: 100%; }}
figure svg {{ max-width: 100%; height: auto; }}
h3 {{ font-size: 1em; margin-top: 1.5em; overflow-wrap: anywhere; }}
h4 {{ font-size: 0.95em; }}
p.note {{ font-size: 14px; color: #444; max-width: 60em; overflow-wrap: anywhere; }}
/* A layer or op name: cut short, in full in its title (names of fused ops run long). */
td.name {{ max-width: 16em; overflow: hidden; text-overflow: ellipsis; }}
@media (max-width: 600px) {{ body {{ margin: 0.8em; }} table {{ font-size: 12px; }} td.name {{ max-width: 9em; }} }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{intro}<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>
<p>{html.escape(f"{NOTE} {metric_note(rows)}".strip())}</p>
{_problems(rows)}{''.join(f'<figure>{p}</figure>' for p in plots)}
{extra}</body></html>
"""


def _problems(rows: Sequence[Row]) -> str:
    """Each broken gate in full: the table's gate cell names only the limits."""
    items = [f"<li>{html.escape(_row_label(r))}: {html.escape(p)}</li>" for r in rows for p in r.get("gate_problems") or ()]
    return f'<h2>Gate violations</h2><ul class="failed">{"".join(items)}</ul>\n' if items else ""


def _row_label(row: Row) -> str:
    return f"{row['artifact']} ({row['runtime']})" if row.get("runtime") else row["artifact"]


def _cell_class(column: Column, text: str) -> str:
    verdict = text.split(":")[0]
    if column.header in ("verify", "gate") and verdict in ("passed", "failed", "skipped"):
        return f"text {column.header} {verdict}"
    return "num" if column.numeric else "text"
