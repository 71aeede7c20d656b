"""The report's table: fixed columns (size, speed, verdicts) around metric columns that follow
the model's outputs and tasks, rendered as Markdown and as a self-contained HTML page.

One output: `accuracy`, `Δ acc` for a classifier; `MAE`, `Δ MAE`, `RMSE` for a regression.
Several outputs: one compact column per output, `NAME: accuracy (Δ)` or
`NAME: MAE (Δ), RMSE`, so a three-output model stays readable in a terminal. Generated
inputs have no labels, so no metric columns. The terminal, Markdown, HTML and the sweep
report all show the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .metrics import CLASSIFICATION, METRICS

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    numeric: bool = True  # right-aligned
    style: Callable[[Row], str] | None = None  # an HTML class for the cell (e.g. a cache hit's grey)


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
    """The terminal's columns (it drops some when narrow); the verdicts stay last."""
    generated = any(row.get("generated") for row in rows)  # no labels: nothing to show in metric columns
    return [*LEADING, *([] if generated else metric_columns(output_tasks(rows))), *TRAILING]


def report_columns(rows: Sequence[Row]) -> list[Column]:
    """report.md's and report.html's columns: the terminal's, with p50's spread between timing
    rounds, and the verification's figures beside its verdict."""
    columns = [P50_WITH_SPREAD if c.header == "p50 ms" else c for c in table_columns(rows)]
    return [*columns[:-len(TRAILING)], *verify_columns(rows), *columns[-len(TRAILING):]]


def _p50_with_spread(row: Row) -> str:
    """"0.1230 ±3%": the median and how far it moved between the benchmark's timing rounds."""
    p50, spread = row.get("p50_ms"), row.get("p50_spread")
    if p50 is None:
        return "-"
    if spread is None:
        return f"{p50:.4f}"
    return f"{p50:.4f} ±{spread:.0%}" if spread >= 0.01 else f"{p50:.4f} ±{spread:.1%}"


P50_WITH_SPREAD = Column("p50 ms", _p50_with_spread)


def verify_columns(rows: Sequence[Row]) -> list[Column]:
    """What verification measured against the SavedModel: the largest difference, and the
    task's figure (top-1 agreement for a classifier, the mean difference for a regression);
    none when nothing was verified."""
    def measured(key: str) -> bool:
        return any(row.get(key) is not None for row in rows)

    columns = [Column("max |Δ|", _figure("max_abs_diff", "{:.2g}"))] if measured("max_abs_diff") else []
    if measured("top1_agreement"):
        columns.append(Column("top-1 agree", _figure("top1_agreement", "{:.1%}")))
    elif measured("mean_abs_diff"):
        columns.append(Column("mean |Δ|", _figure("mean_abs_diff", "{:.2g}")))
    return columns


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


def table_note(rows: Sequence[Row]) -> str:
    """The sentences under the report's table: what its figures are."""
    verified = " ".join(VERIFY_NOTES[c.header] for c in verify_columns(rows))
    spread = SPREAD_NOTE if any(row.get("p50_spread") is not None for row in rows) else ""
    return " ".join(part for part in (NOTE, spread, metric_note(rows), verified) if part)


SPREAD_NOTE = "p50 ±: how far the median moved between the benchmark's timing rounds."


VERIFY_NOTES = {
    "max |Δ|": "max |Δ|: the largest difference from the SavedModel's outputs on the test inputs (worst runtime).",
    "top-1 agree": "top-1 agree: the share of test samples given the SavedModel's class.",
    "mean |Δ|": "mean |Δ|: the mean difference from the SavedModel's outputs.",
}


def markdown(rows: Sequence[Row], title: str, extra: str = "") -> str:
    """The report as Markdown; `extra` (Markdown, e.g. the step times and the int8 section)
    after the table."""
    lines = [f"# {title}", "", *markdown_table(rows, report_columns(rows))]
    lines += ["", table_note(rows), ""]
    if extra:
        lines += [extra.rstrip("\n"), ""]
    return "\n".join(lines)
