"""What the user sees: a line per step as it runs, epoch progress, and the closing table."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .plan import StepSpec
from .quiet import terminal_stream
from .runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, BuildResult, StepResult

STATUS_STYLE = {BUILT: "green", CACHED: "cyan", FAILED: "bold red", SKIPPED: "yellow", TO_BUILD: "magenta", NOT_NEEDED: "dim"}


@contextlib.contextmanager
def terminal_console() -> Iterator[Console]:
    """A console on the real terminal, usable while steps redirect fds 1 and 2 to the log."""
    stream = terminal_stream()
    try:
        # Logs and CI get a wide table instead of rich's 80 columns for non-terminals.
        yield Console(file=stream, highlight=False, width=None if stream.isatty() else 140)
    finally:
        if stream is not sys.stdout:
            stream.close()


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class StepProgress:
    """Epoch progress: a live bar on a terminal, one line per epoch in a log (CI)."""

    def __init__(self, console: Console, name: str):
        self._console = console
        self._name = name
        self._bar: RichProgress | None = None
        self._task = None

    def start(self, total: int, description: str) -> None:
        if self._console.is_terminal:
            self._bar = RichProgress(
                TextColumn(f"  {self._name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
                # Python-level warnings during a step belong in build.log with TensorFlow's
                # other output, not above the bar.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)

    def advance(self, description: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description or "")
        elif description:
            self._console.print(f"  {self._name}: {escape(description)}", highlight=False)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class ConsoleReporter:
    """A line per step as it starts and as it ends, and, on a terminal, a live line naming the
    steps being built (several at once with jobs > 1) above their progress bars."""

    def __init__(self, console: Console):
        self.console = console
        self._in_flight = InFlight(console)

    def step_started(self, spec: StepSpec, reason: str) -> Any:
        self.console.print(f"[bold]>[/] {escape(spec.name)} [dim]({escape(reason)})[/]", highlight=False)
        return self._in_flight.add(spec.name, StepProgress(self.console, escape(spec.name)))

    def step_waiting(self, spec: StepSpec) -> None:
        self.console.print(f"[bold]…[/] {escape(spec.name)} [dim](another tfbuild is building it; waiting for its result)[/]")

    def step_finished(self, result: StepResult) -> None:
        self._in_flight.remove(result.spec.name)
        if result.status == FAILED:
            self.console.print(f"[bold red]x {escape(result.spec.name)} failed:[/] {escape(result.error or '')}")
        elif result.status == BUILT:
            self.console.print(f"  {escape(result.spec.name)} built in {result.seconds:.2f} s", highlight=False, style="green")

    def build_ended(self) -> None:
        self._in_flight.close()


class InFlight:
    """The steps being built and their progress bars. On a terminal, a live line under the
    printed lines: "building: tflite[int8], tfjs[uint8]".

    Rich draws nested live displays (this line, each StepProgress bar) from a stack and takes
    the last one off whenever any stops; so bars are stopped in the reverse order they
    started: a step that ends under a later bar keeps its (finished) bar up until that one
    ends too."""

    def __init__(self, console: Console):
        self._console = console
        self._steps: dict[str, StepProgress] = {}  # building now, in start order
        self._bars: list[tuple[str, StepProgress]] = []  # bars up, in the order they started
        self._live: Live | None = None

    def add(self, name: str, progress: StepProgress) -> "_Started":
        self._steps[name] = progress
        self._show()
        return _Started(progress, lambda: self._bars.append((name, progress)))

    def remove(self, name: str) -> None:
        progress = self._steps.pop(name, None)
        if progress is not None and not any(p is progress for _, p in self._bars):
            progress.stop()  # it never drew a bar
        while self._bars and self._bars[-1][0] not in self._steps:
            self._bars.pop()[1].stop()
        self._show()

    def close(self) -> None:
        """However the build ended (Ctrl-C too): every bar and the live line go."""
        while self._bars:
            self._bars.pop()[1].stop()
        self._steps.clear()
        self._show()

    def _show(self) -> None:
        if not self._console.is_terminal:
            return  # a log has the per-step lines
        if not self._steps:
            if self._live is not None:
                self._live.stop()
                self._live = None
            return
        line = Text.assemble(("building: ", "bold"), ", ".join(self._steps), no_wrap=True, overflow="ellipsis")
        status = Spinner("dots", line, style="cyan")
        if self._live is None:
            self._live = Live(status, console=self._console, transient=True, redirect_stdout=False,
                              redirect_stderr=False, refresh_per_second=8)  # fmt: skip
            self._live.start()
        else:
            self._live.update(status)


class _Started:
    """A step's StepProgress, which says when its bar goes up (every other call goes through,
    so what StepProgress grows works here too)."""

    def __init__(self, progress: StepProgress, on_start: Callable[[], None]):
        self._progress = progress
        self._on_start = on_start

    def start(self, *args: Any, **kwargs: Any) -> None:
        self._on_start()
        self._progress.start(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)


def published_bytes(result: StepResult) -> int | None:
    if result.entry is None:
        return None
    sizes = [
        result.entry.manifest["outputs"][out.role]["bytes"] for out in result.spec.outputs if out.publish
    ]
    return sum(sizes) if sizes else None


def summary_table(result: BuildResult, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("step")
    table.add_column("status")
    table.add_column("why")
    table.add_column("seconds", justify="right")
    table.add_column("artifact", justify="right")
    table.add_column("result")
    for r in result.steps:
        why = r.error if r.status == FAILED else r.reason
        table.add_row(
            escape(r.spec.name),
            f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]",
            escape(why or ""),
            f"{r.seconds:.2f}" if r.status in (BUILT, CACHED, FAILED) else "",
            human_bytes(published_bytes(r)),
            escape(str(r.info.get("summary", ""))),
        )
    return table


# Dropped first when the terminal is too narrow for every column (report.md keeps them all).
NARROW_DROPS = ("gzip", "p95 ms", "samples/s", "bytes", "runtime", "p50 ms")


def report_table(rows: list[dict], title: str, width: int | None = None) -> Table:
    """report.md's table, on the terminal, with the same columns (they follow the tasks). On a
    terminal `width` columns wide that cannot hold them all, the secondary figures go, in
    NARROW_DROPS order, rather than every column being cut to "4…"."""
    from .report_table import metric_note, table_cells, table_columns

    columns = table_columns(rows)
    dropped: list[str] = []
    if width is not None:
        def needed(cols: list[Any]) -> int:  # each cell's text, plus one space each side and a border
            return 1 + sum(3 + max(len(c.header), *(len(c.cell(r)) for r in rows)) for c in cols)

        # Rows of one artifact on several runtimes (TF.js backends) are told apart by runtime.
        repeated = len({row["artifact"] for row in rows}) < len(rows)
        for header in NARROW_DROPS:
            if needed(columns) <= width or (header == "runtime" and repeated):
                break
            columns = [c for c in columns if c.header != header]
            dropped.append(header)
    note = metric_note(rows)
    if dropped:
        note = (note + " " if note else "") + f"Narrow terminal: {', '.join(dropped)} are in report.md."
    table = Table(title=title, title_justify="left", caption=note or None, caption_justify="left")
    for i, column in enumerate(columns):
        # Figures and the artifact's name never wrap (a wrapped "94.00% (-1.00%)" reads as two
        # numbers); runtimes and verdicts wrap at spaces when the terminal is narrow.
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=column.numeric or i == 0)
    for row in rows:
        cells = [escape(c) for c in table_cells(row, columns)]
        cells[-2], cells[-1] = _verdict(row["verify"], cells[-2]), _verdict(row["gate"], cells[-1])
        table.add_row(*cells)
    return table


def _verdict(status: str, cell: str) -> str:
    style = {"passed": "green", "failed": "bold red", "skipped": "yellow"}.get(status.split(":")[0])
    return f"[{style}]{cell}[/]" if style else cell
