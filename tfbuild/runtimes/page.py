"""Open a folder's page in Chromium from Python and read what the page reports.

A page that runs a model publishes a results object (`window.NAME`, with `done: true` once
it has finished); `open_page` serves the folder as it is on 127.0.0.1, opens the page with
`page_run.js` (puppeteer-core driving the system's Chromium), and hands back that object,
the page's console errors, its failed and off-origin requests (refused: the page runs as it
would offline) and, on request, the data-* attributes of chosen elements and a screenshot.
What the results mean is the caller's business.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chromium import chromium_problem, find_chromium
from .static_server import StaticServer

SCRIPT = Path(__file__).with_name("page_run.js")
# Node, puppeteer and Chromium start in a few seconds here; the page's own work comes on top.
LAUNCH_S = 30.0
LOAD_FAILED = ("Failed to load resource:",)


class PageError(RuntimeError):
    """The page could not be opened or read; the message is one line meant for the user."""


@dataclass
class PageRun:
    browser: str  # e.g. "Chromium 150.0.7871.100"
    results: Any  # the page's results object, as JSON values (None if it never set one)
    timed_out: bool  # the page was not done within the time limit (results are partial)
    elapsed_ms: float
    console_errors: list[str] = field(default_factory=list)  # console.error and uncaught exceptions
    failed_requests: list[str] = field(default_factory=list)  # 4xx/5xx or network failures
    offsite_requests: list[str] = field(default_factory=list)  # refused: they left 127.0.0.1
    collected: list[dict[str, str]] = field(default_factory=list)  # data-* (and text) of `collect` matches

    def problems(self) -> list[str]:
        """What went wrong that the page did not say itself, one short phrase each."""
        # dict.fromkeys: a file asked for twice (a retry) is one problem.
        found = [f"request failed: {r}" for r in dict.fromkeys(self.failed_requests)]
        found += [f"request to another origin (refused): {r}" for r in dict.fromkeys(self.offsite_requests)]
        # Chromium logs every failed request again, without its URL: said above already.
        echoes = LOAD_FAILED if found else ()
        found += [f"console error: {e}" for e in self.console_errors if not e.startswith(echoes)]
        return found


def open_page(
    folder: Path,
    page: str = "index.html",
    *,
    results: str,
    timeout_s: float,
    collect: str | None = None,
    screenshot: Path | None = None,
    viewport: tuple[int, int] = (1280, 900),
    chromium: str | None = None,
    node: str = "node",
) -> PageRun:
    """Serve `folder`, open `page` in headless Chromium, wait up to `timeout_s` for
    `window.<results>.done`. Raises PageError when Chromium or Node cannot run the page at all;
    a page that fails or times out is reported in the PageRun, for the caller to judge."""
    problem = chromium_problem(chromium)
    if problem is not None:
        raise PageError(problem)
    executable = find_chromium(chromium)
    command = [node, str(SCRIPT), "--results", results, "--timeout-ms", str(int(timeout_s * 1000)),
               "--viewport", f"{viewport[0]}x{viewport[1]}"]  # fmt: skip
    if collect is not None:
        command += ["--collect", collect]
    if screenshot is not None:
        command += ["--screenshot", str(Path(screenshot).resolve())]
    env = {**os.environ, "TFBUILD_CHROMIUM": str(executable)}
    with StaticServer(Path(folder)) as server:
        root = server.url()
        command += ["--url", server.url(page)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s + LAUNCH_S)
        except subprocess.TimeoutExpired:
            raise PageError(f"Chromium did not finish with {page} of {folder} within {timeout_s + LAUNCH_S:.3g} s") from None
        except OSError as error:
            raise PageError(f"could not start `{node}`: {error}") from None
    if done.returncode != 0:
        raise PageError(f"Chromium could not run {page} of {folder}: {_failure_line(done)}")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PageError(f"page_run printed no JSON result (stdout: {done.stdout[-200:]!r})") from None
    return PageRun(
        browser=_browser_name(found["browser"]),
        results=found.get("results"),
        timed_out=bool(found.get("timed_out")),
        elapsed_ms=float(found.get("elapsed_ms", 0)),
        console_errors=list(found["console_errors"]),
        # The folder's own files by their path in it: the port changes on every run.
        failed_requests=[r.removeprefix(root) for r in found["failed_requests"]],
        offsite_requests=list(found["offsite_requests"]),
        collected=list(found.get("collected") or []),
    )


def _browser_name(version: str) -> str:
    # puppeteer says "HeadlessChrome/150.0.7871.100" for Debian's Chromium in headless mode.
    return "Chromium " + version.split("/")[-1]


def _failure_line(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("page_run: ")]
    if ours:
        return ours[-1].removeprefix("page_run: ")
    return f"page_run exited with code {done.returncode}: {lines[-1] if lines else 'no message'}"
