"""The closing tables on the terminal, fitted to the width they are drawn at.

Every number stays whole: figures never wrap and are never cut to "4…". Units sit in the
headers ("s", "KB"), not in every cell. When the terminal is too narrow for every column,
the secondary ones go (report.md and build.json keep them all) and a caption says which;
only prose (a step's result, an error) wraps, at spaces.

The width is known only when rich draws the table (the CLI prints whatever these functions
return), so each returns a renderable that picks its columns then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .report_table import Column, metric_note, table_columns
from .results import DOWNLOADED
from .runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, BuildResult, StepResult

STATUS_STYLE = {BUILT: "green", CACHED: "cyan", "remote": "cyan", FAILED: "bold red", SKIPPED: "yellow", TO_BUILD: "magenta", NOT_NEEDED: "dim"}
GAP = 2  # columns between two columns: no vertical rules, which cost 3 columns each
MIN_TEXT = 24  # below this a wrapped result reads one word a line: drop figures first
SHOWN_ERROR = 40  # how much of an error counts when deciding whether the wide layout fits
QUIET_REASONS = {BUILT: "not in cache", CACHED: "cached"}  # what the status already says
REMOTE = "remote"  # the table's status for a step the remote cache served (build.json: cached)


@dataclass(frozen=True)
class Cell:
    header: str
    cells: list[str]  # rich markup, escaped
    numeric: bool = False  # right-aligned, never wraps
    wraps: bool = False  # prose that may wrap at spaces

    def width(self) -> int:
        """The widest line of the header or any cell: the column's width when nothing wraps."""
        lines = [self.header, *(line for cell in self.cells for line in Text.from_markup(cell).plain.split("\n"))]
        return max(cell_len(line) for line in lines)


def table_width(widths: Iterable[int]) -> int:
    widths = list(widths)
    return sum(widths) + GAP * max(0, len(widths) - 1)


class FitToWidth:
    """A table built only once rich says how wide it may be."""

    def __init__(self, build: Callable[[int], Table], width: int | None = None):
        self._build, self._width = build, width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._build(options.max_width if self._width is None else min(self._width, options.max_width))


def render(title: str, columns: Sequence[Cell], caption: str = "") -> Table:
    table = Table(title=title, title_justify="left", caption=caption or None, caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0))  # fmt: skip
    for column in columns:
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=not column.wraps,
                         overflow="fold")  # fmt: skip
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


# --- sizes in the header's unit --------------------------------------------------------------


def size_unit(sizes: Iterable[int | None]) -> tuple[str, int]:
    """KB, or MB once an artifact reaches 10 MB (a 250 MB model in KB is nine digits)."""
    largest = max((s for s in sizes if s is not None), default=0)
    return ("MB", 1024**2) if largest >= 10 * 1024**2 else ("KB", 1024)


def size_cell(n: int | None, divisor: int) -> str:
    if n is None:
        return ""
    value = n / divisor
    # A 579-byte file is 0.57 KB, not "0.0": small values keep two significant digits.
    return f"{value:.2g}" if 0 < value < 0.1 else f"{value:,.1f}"


# --- the step table ----------------------------------------------------------------------------


def published_bytes(result: StepResult) -> int | None:
    if result.entry is None:
        return None
    sizes = [result.entry.manifest["outputs"][out.role]["bytes"] for out in result.spec.outputs if out.publish]
    return sum(sizes) if sizes else None


def summary_table(result: BuildResult, title: str) -> FitToWidth:
    """Each step: status, why it ran, seconds, published size, one-line result or error."""
    return FitToWidth(lambda width: _summary_at(result.steps, title, width))


def _summary_at(steps: Sequence[StepResult], title: str, width: int) -> Table:
    unit, divisor = size_unit(published_bytes(r) for r in steps)
    step = Cell("step", [escape(r.spec.name) for r in steps])
    status = Cell("status", [f"[{STATUS_STYLE.get(r.status, '')}]{_status(r)}[/]" for r in steps])
    figures = [
        Cell("s", [f"{r.seconds:.2f}" if r.status in (BUILT, CACHED, FAILED) else "" for r in steps], numeric=True),
        Cell(unit, [size_cell(published_bytes(r), divisor) for r in steps], numeric=True),
    ]
    figures = [c for c in figures if any(c.cells)]  # a figure no step has (sizes in a dry run) is no column
    why = Cell("why", ["" if r.status == CACHED and r.reason in (QUIET_REASONS[CACHED], DOWNLOADED) else escape(r.reason or "")
                       for r in steps], wraps=True)  # fmt: skip
    remote_note = ["remote: downloaded from the remote cache, checked like a local hit."] if any(
        _status(r) == REMOTE for r in steps) else []  # fmt: skip
    outcome = Cell("result", [_outcome(r) for r in steps], wraps=True)

    # Wide: a column for why; it fits when nothing but an error wraps (only an error's start must fit).
    measured = Cell("result", [escape((r.error or "")[:SHOWN_ERROR]) if r.status == FAILED else c
                               for r, c in zip(steps, outcome.cells)])  # fmt: skip
    if table_width(c.width() for c in (step, status, why, *figures, measured)) <= width:
        return render(title, [step, status, why, *figures, outcome], " ".join(remote_note))
    # Narrow: the reason joins the result, and only where it says more than the status.
    text = Cell("result", [_outcome_and_reason(r) for r in steps], wraps=True)
    left_out = []
    while figures and width - table_width(c.width() for c in (step, status, *figures)) - GAP < MIN_TEXT:
        # A very narrow terminal: figures go (sizes, then seconds) before the text is one word a line.
        left_out.append("sizes" if figures[-1].header == unit else "seconds")
        figures.pop()
    notes = list(remote_note)
    if any(r.status == BUILT and r.reason == QUIET_REASONS[BUILT] for r in steps):
        notes.append("Built: not in the cache, unless a reason is shown.")
    if left_out:
        notes.append(f"Narrow terminal: {' and '.join(left_out)} are in build.json.")
    return render(title, [step, status, *figures, text], " ".join(notes))


def _outcome(r: StepResult) -> str:
    if r.status == FAILED:
        return f"[red]{escape(r.error or '')}[/]"
    return escape(str(r.info.get("summary", ""))) if r.status in (BUILT, CACHED) else ""


def _status(r: StepResult) -> str:
    """The status as the table shows it: a step the remote cache served is "remote"."""
    return REMOTE if r.status == CACHED and r.reason == DOWNLOADED else r.status


def _outcome_and_reason(r: StepResult) -> str:
    outcome = _outcome(r)
    quiet = QUIET_REASONS.get(r.status) == r.reason or r.status == FAILED or _status(r) == REMOTE
    reason = "" if quiet else escape(r.reason or "")
    if outcome and reason:
        return f"{outcome}\n[dim]{reason}[/]"
    return outcome or f"[dim]{reason}[/]"


# --- the report table --------------------------------------------------------------------------

VERSION = re.compile(r"\s*\b\d+(\.\d+)+\b")  # "TensorFlow 2.19.0" -> "TensorFlow"


def report_table(rows: list[dict], title: str, width: int | None = None) -> FitToWidth:
    """report.md's table with the same columns (they follow the tasks), sizes in KB. On a
    terminal too narrow for them all, secondary figures go, in order, rather than every
    column being cut; a caption names them (report.md has them all)."""
    return FitToWidth(lambda at: _report_at(rows, title, at), width)


def _report_at(rows: list[dict], title: str, width: int) -> Table:
    unit, divisor = size_unit([*(r.get("bytes") for r in rows), *(r.get("gzip_bytes") for r in rows)])
    terminal_columns = {
        "bytes": Column(unit, lambda row: size_cell(row.get("bytes"), divisor) or "-"),
        "gzip": Column(f"gzip {unit}", lambda row: size_cell(row.get("gzip_bytes"), divisor) or "-"),
    }
    columns = [terminal_columns.get(c.header, c) for c in table_columns(rows)]
    # Rows of one artifact on several runtimes (TF.js backends) are told apart by runtime.
    repeated = len({row["artifact"] for row in rows}) < len(rows)
    short_runtime = Column("runtime", lambda row: VERSION.sub("", row["runtime"] or "-").strip() or "-", numeric=False)
    # In order, until the table fits: (what the caption calls it, the columns without it).
    stages: list[tuple[str, Callable[[list[Column]], list[Column]]]] = [
        (f"gzip {unit}", _without(f"gzip {unit}")),
        ("p95 ms", _without("p95 ms")),
        ("samples/s", _without("samples/s")),
        ("runtime versions", _replacing(short_runtime)),
        ("gate limits", _replacing(Column("gate", lambda row: row["gate"].split(":")[0], numeric=False))),
        *([] if repeated else [("runtime", _without("runtime"))]),
        ("p50 ms", _without("p50 ms")),
    ]

    def cells(cs: Sequence[Column]) -> list[Cell]:
        out = []
        for column in cs:
            texts = [escape(column.cell(row)) for row in rows]
            if column.header in ("verify", "gate"):  # their words, coloured
                texts = [_verdict(row[column.header], text) for row, text in zip(rows, texts)]
            out.append(Cell(column.header, texts, numeric=column.numeric))
        return out

    dropped: list[str] = []
    for name, stage in stages:
        if table_width(c.width() for c in cells(columns)) <= width:
            break
        columns = stage(columns)
        dropped = [d for d in dropped if not (name == "runtime" and d == "runtime versions")] + [name]
    note = metric_note(rows)
    if dropped:
        note = (note + " " if note else "") + f"Narrow terminal: {_listed(dropped)} are in report.md."
    return render(title, cells(columns), note)


def _replacing(column: Column) -> Callable[[list[Column]], list[Column]]:
    return lambda columns: [column if c.header == column.header else c for c in columns]


def _without(header: str) -> Callable[[list[Column]], list[Column]]:
    return lambda columns: [c for c in columns if c.header != header]


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _verdict(status: str, cell: str) -> str:
    style = {"passed": "green", "failed": "bold red", "skipped": "yellow"}.get(status.split(":")[0])
    return f"[{style}]{cell}[/]" if style else cell

