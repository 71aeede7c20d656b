"""What the user sees: a line per step as it runs, epoch progress, and the closing table."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress as RichProgress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.spinner import Spinner
from rich.text import Text

from .console_tables import STATUS_STYLE, report_table, summary_table  # noqa: F401 (the CLI's tables)
from .human import human_bytes
from .plan import StepSpec
from .quiet import terminal_stream
from .runner import BUILT, FAILED, StepResult

if TYPE_CHECKING:
    from .remote_sync import RemoteSync

LOG_WIDTH = 120  # a log or CI page without COLUMNS: wide enough for every column of the tables


@contextlib.contextmanager
def terminal_console() -> Iterator[Console]:
    """A console on the real terminal, usable while steps redirect fds 1 and 2 to the log."""
    stream = terminal_stream()
    try:
        yield Console(file=stream, highlight=False, width=None if stream.isatty() else piped_width(os.environ))
    finally:
        if stream is not sys.stdout:
            stream.close()


def piped_width(environ: Mapping[str, str]) -> int:
    """The width for output that is not a terminal: COLUMNS when it is set (`COLUMNS=80
    tfbuild ... | less`), else LOG_WIDTH rather than rich's 80 for non-terminals."""
    value = environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else LOG_WIDTH


class StepProgress:
    """A step's progress (the Progress protocol in steps/base.py): a live bar on a terminal;
    in a log (CI), one line per unit (epoch) and nothing for positions within one."""

    def __init__(self, console: Console, name: str):
        self._console = console
        self._name = name
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._units = 1  # start's total: advance moves the bar to the end of the next unit
        self._done = 0

    def start(self, total: int, description: str) -> None:
        self._units, self._done = max(int(total), 1), 0
        if self._console.is_terminal:
            self._bar = RichProgress(
                TextColumn(f"  {self._name}"),
                BarColumn(bar_width=24),
                TaskProgressColumn(),
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
        self._done += 1
        if self._bar is not None and self._task is not None:
            # In whatever unit update() last drew (batches), the end of the unit just done.
            total = next(t.total for t in self._bar.tasks if t.id == self._task) or self._units
            self._bar.update(self._task, completed=total * self._done / self._units, description=description or "")
        elif description:
            self._console.print(f"  {self._name}: {escape(description)}", highlight=False)

    def update(self, completed: float, total: float, description: str | None = None) -> None:
        if self._bar is not None and self._task is not None:
            fields: dict[str, Any] = {} if description is None else {"description": description}
            # rich redraws at most 10 times a second whatever the rate of updates.
            self._bar.update(self._task, completed=completed, total=total, **fields)

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


@contextlib.contextmanager
def transfer_progress(console: Console, label: str) -> Iterator[Callable[[int], Callable[[int, int], None]]]:
    """`start(total bytes)` -> what follows a transfer's (bytes done, bytes in all): a bar on a
    terminal, gone when the transfer ends; nothing in a log (a line after it says what moved)."""
    bars: list[RichProgress] = []

    def start(total: int) -> Callable[[int, int], None]:
        if not console.is_terminal:
            return lambda done, all_: None
        bar = RichProgress(TextColumn(f"  {label}"), BarColumn(bar_width=24), TaskProgressColumn(),
                           TextColumn("{task.description}"), console=console, transient=True)  # fmt: skip
        bar.start()
        bars.append(bar)
        task = bar.add_task("", total=total)
        return lambda done, all_: bar.update(task, completed=done, description=f"{human_bytes(done)} of {human_bytes(all_)}")

    try:
        yield start
    finally:
        for bar in bars:
            bar.stop()


def upload_entries(remote: "RemoteSync", entries: list[Any], console: Console) -> None:
    """Upload what a build made or used to the remote cache: a bar on a terminal, then a line."""
    with transfer_progress(console, "remote cache: uploading") as progress:
        uploaded = remote.upload(entries, progress)
    if uploaded.entries or uploaded.present:
        console.print(
            f"[dim]remote cache: uploaded {uploaded.entries} entries ({human_bytes(uploaded.bytes)}) to "
            f"{escape(remote.remote.url)} in {uploaded.seconds:.2f} s"
            + (f"; {uploaded.present} were there already" if uploaded.present else "") + "[/]",
            highlight=False,
        )
