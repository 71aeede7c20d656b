"""The report's step times: how long each artifact's export, verification and benchmark
took, and the steps every artifact shares (data, train, ...), as Markdown and as HTML.

A cache hit costs milliseconds; what it saved is the time the step took when it was built,
which the cache entry remembers. The table shows that time, in parentheses and grey, so a
fully cached build's report still says where a cold build's time goes.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

from .report_table import Column, Row, markdown_table

ROLES = (("export", "export s"), ("verify", "verify s"), ("benchmark", "benchmark s"))
NOTE = ("Seconds each step took in this build; in parentheses: a cache hit, with the seconds "
        "it took when it was built.")


def step_text(step: Mapping[str, Any] | None) -> str:
    if step is None:
        return "-"
    status, seconds, built = step["status"], step.get("seconds"), step.get("built_seconds")
    if status == "cached":
        return f"({built:.2f})" if built is not None else "cached"
    if status == "built":
        return f"{seconds:.2f}"
    if status == "failed":
        return f"failed after {seconds:.2f}"
    return status  # skipped, not needed


def _style(step: Mapping[str, Any] | None) -> str:
    return {"cached": "cached", "failed": "failed", "skipped": "skipped"}.get((step or {}).get("status", ""), "")


def _role_column(role: str, header: str) -> Column:
    def step(row: Row) -> Mapping[str, Any] | None:
        return (row.get("steps") or {}).get(role)

    return Column(header, lambda row: step_text(step(row)), style=lambda row: _style(step(row)))


COLUMNS = (Column("artifact", lambda row: row["artifact"], numeric=False), *(_role_column(r, h) for r, h in ROLES))


def _artifacts(rows: Sequence[Row]) -> list[Row]:
    """One row per artifact: its runtimes share its steps."""
    seen: dict[str, Row] = {}
    for row in rows:
        if row.get("steps") is not None:
            seen.setdefault(row["artifact"], row)
    return list(seen.values())


def shared_steps(rows: Sequence[Row]) -> list[Mapping[str, Any]]:
    return next((list(r["shared_steps"]) for r in rows if r.get("shared_steps")), [])


def _shared_text(render: Callable[[str], str], rows: Sequence[Row]) -> str:
    items = [f"{render(s['name'])} {step_text(s)}" for s in shared_steps(rows) if s["status"] != "not needed"]
    return "Steps every artifact shares: " + ", ".join(items) + "." if items else ""


def steps_markdown(rows: Sequence[Row]) -> str:
    artifacts = _artifacts(rows)
    if not artifacts:
        return ""
    lines = ["## Step times", "", *markdown_table(artifacts, COLUMNS), "", NOTE]
    shared = _shared_text(lambda name: f"`{name}`", rows)
    return "\n".join([*lines, *([shared] if shared else [])]) + "\n\n"


def steps_html(rows: Sequence[Row]) -> str:
    from .report_page import html_table  # the page imports nothing from here: no cycle at import

    artifacts = _artifacts(rows)
    if not artifacts:
        return ""
    shared = html.escape(_shared_text(str, rows))
    return (f"<h2>Step times</h2>\n{html_table(artifacts, COLUMNS)}\n"
            f'<p class="note">{html.escape(NOTE)}{" " + shared if shared else ""}</p>\n')
