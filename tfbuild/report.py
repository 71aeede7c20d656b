"""The build's report: one row per artifact and runtime, with size, speed, accuracy, the
verification and the gates. Written to the run folder as report.json (for tools),
report.md (to paste into a pull request) and report.html (self-contained, with plots).

report.json:
{
  "tfbuild": version, "recipe": name or null, "status": "passed" | "failed",
  "reference": "saved_model",
  "columns": {name: description, ...},
  "rows": [{"artifact", "format", "variant", "runtime", "threads", "path", "bytes",
            "gzip_bytes", "p50_ms", "p95_ms", "p99_ms", "samples_per_s", "batch_size",
            "accuracy", "accuracy_delta", "verify", "top1_agreement", "gate",
            "gate_problems": [...]}],
  "gate_violations": ["ARTIFACT (RUNTIME): PROBLEM", ...]
}
A figure that was not measured is null. Keys are only ever added.

The report is made from the build's results, not by a cached step: it must show failed and
skipped steps too (a skipped step leaves nothing to cache), and it costs milliseconds.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .gates import limits_for, violations
from .plots import bar_chart, scatter_plot
from .record import write_text_atomic
from .runner import BUILT, CACHED, FAILED, SKIPPED, BuildResult, StepResult

COLUMNS = {
    "artifact": "the artifact's name (format/variant)",
    "runtime": "what ran it (TensorFlow, LiteRT, TF.js + backend)",
    "bytes": "size on disk",
    "gzip_bytes": "size gzipped (-9), what a download costs",
    "p50_ms": "median latency at batch 1, ms",
    "p95_ms": "95th percentile latency at batch 1, ms",
    "p99_ms": "99th percentile latency at batch 1, ms",
    "samples_per_s": "throughput at batch_size, from the median batch time",
    "accuracy": "top-1 accuracy on the held-out test split",
    "accuracy_delta": "accuracy minus the SavedModel's (the reference)",
    "verify": "passed / failed / skipped on its runtime against the SavedModel; reference; off",
    "top1_agreement": "share of test samples whose top-1 class matches the SavedModel's",
    "gate": "passed / failed: LIMIT, ... against gates.*; - when no gate applies",
}
REFERENCE = "saved_model"
FILES = ("report.json", "report.md", "report.html")


def report_rows(result: BuildResult, gates: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_name = {r.spec.name: r for r in result.steps}
    rows: list[dict[str, Any]] = []
    for step in result.steps:
        for out in step.spec.outputs:
            if out.format is None or (out.format == REFERENCE and out.artifact != REFERENCE):
                continue
            rows += _artifact_rows(step, out, by_name)
    reference = next((r["accuracy"] for r in rows if r["artifact"] == REFERENCE), None)
    for row in rows:
        if row["accuracy"] is not None and reference is not None:
            row["accuracy_delta"] = round(row["accuracy"] - reference, 6)
        limits = limits_for(gates, row["format"], row["variant"])
        broken = violations(row, limits)
        row["gate_problems"] = [phrase for _, phrase in broken]
        row["gate"] = "-" if not limits else "failed: " + ", ".join(limit for limit, _ in broken) if broken else "passed"
    return rows


def _artifact_rows(export: StepResult, out: Any, by_name: Mapping[str, StepResult]) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "artifact": out.artifact,
        "format": out.format,
        "variant": out.variant,
        "path": out.publish,
        "bytes": export.entry.manifest["outputs"][out.role]["bytes"] if export.entry else None,
        "gzip_bytes": export.info.get("gzip_bytes"),
        "accuracy_delta": None,
        "verify": _verify_status(out.artifact, by_name),
        "top1_agreement": None,
    }
    verify = by_name.get(f"verify[{out.artifact}]")
    if verify is not None and verify.info:
        base["top1_agreement"] = verify.info.get("top1_agreement")
    bench = by_name.get(f"benchmark[{out.artifact}]")
    runtimes = bench.info.get("runtimes", {}) if bench is not None and bench.status in (BUILT, CACHED) else {}
    if not runtimes:
        return [{**base, "runtime": None, "threads": None, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                 "samples_per_s": None, "batch_size": None, "accuracy": None}]
    rows = []
    for runtime, figures in runtimes.items():
        rows.append({
            **base,
            "bytes": base["bytes"] if base["bytes"] is not None else bench.info["bytes"],
            "gzip_bytes": bench.info["gzip_bytes"],
            "runtime": runtime,
            "threads": figures["threads"],
            "p50_ms": figures["latency"]["p50_ms"],
            "p95_ms": figures["latency"]["p95_ms"],
            "p99_ms": figures["latency"]["p99_ms"],
            "samples_per_s": figures["throughput"]["samples_per_s"],
            "batch_size": figures["throughput"]["batch_size"],
            "accuracy": figures["accuracy"],
        })  # fmt: skip
    return rows


def _verify_status(artifact: str, by_name: Mapping[str, StepResult]) -> str:
    step = by_name.get(f"verify[{artifact}]")
    if step is None:  # the SavedModel is the reference, unless a float32 twin is
        return "reference" if artifact == REFERENCE else "off"
    return {BUILT: "passed", CACHED: "passed", FAILED: "failed", SKIPPED: "skipped"}.get(step.status, step.status)


def gate_violations(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{_label(r)}: {problem}" for r in rows for problem in r["gate_problems"]]


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['artifact']} ({row['runtime']})" if row["runtime"] else row["artifact"]


# --- rendering ----------------------------------------------------------------------------

HEADERS = ("artifact", "runtime", "bytes", "gzip", "p50 ms", "p95 ms", "samples/s", "accuracy", "Δ acc", "verify", "gate")


def table_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The report's one table, as text cells: the terminal, Markdown and HTML all show these."""
    return (
        row["artifact"],
        row["runtime"] or "-",
        _or_dash(row["bytes"], "{:,}"),
        _or_dash(row["gzip_bytes"], "{:,}"),
        _or_dash(row["p50_ms"], "{:.4f}"),
        _or_dash(row["p95_ms"], "{:.4f}"),
        _or_dash(row["samples_per_s"], "{:,.0f}"),
        _or_dash(row["accuracy"], "{:.2%}"),
        _or_dash(row["accuracy_delta"], "{:+.2%}"),
        row["verify"],
        row["gate"],
    )


def _or_dash(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in table_cells(r)) + " |" for r in rows]
    lines += ["", "Latency at batch 1; throughput at the benchmark batch size; accuracy on the held-out test split; "
              "Δ acc against the SavedModel.", ""]
    return "\n".join(lines)


def html_page(rows: list[dict[str, Any]], title: str, plots: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in table_cells(r)) + "</tr>" for r in rows
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
figure {{ display: inline-block; margin: 1em 2em 1em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p>Latency at batch 1; throughput at the benchmark batch size; accuracy on the held-out test
split; Δ acc against the SavedModel (the reference).</p>
{''.join(f'<figure>{p}</figure>' for p in plots)}
</body></html>
"""


def build_plots(rows: list[dict[str, Any]]) -> list[str]:
    measured = [r for r in rows if r["accuracy"] is not None and r["bytes"] is not None]
    plots = []
    if measured:
        plots.append(scatter_plot(
            [(r["bytes"] / 1024, r["accuracy"] * 100, _label(r)) for r in measured],
            title="Size vs accuracy", x_label="size on disk (KB)", y_label="test accuracy (%)",
        ))  # fmt: skip
        plots.append(bar_chart(
            [(_label(r), r["p50_ms"], r["p95_ms"]) for r in measured],
            title="Latency at batch 1", value_label="ms", series=("p50", "p95"),
        ))  # fmt: skip
    return plots


def write_report(run_dir: Path, rows: list[dict[str, Any]], *, recipe: str | None) -> list[Path]:
    title = f"tfbuild report: {recipe or '(no recipe)'}"
    violations_ = gate_violations(rows)
    record = {
        "tfbuild": __version__,
        "recipe": recipe,
        "status": "failed" if violations_ or any(r["verify"] in ("failed", "skipped") for r in rows) else "passed",
        "reference": REFERENCE,
        "columns": COLUMNS,
        "rows": rows,
        "gate_violations": violations_,
    }
    paths = [run_dir / name for name in FILES]
    write_text_atomic(paths[0], json.dumps(record, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(rows, title))
    write_text_atomic(paths[2], html_page(rows, title, build_plots(rows)))
    return paths
