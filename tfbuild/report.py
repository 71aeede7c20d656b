"""The build's report: one row per artifact and runtime, with size, speed, the task metrics
of every output, the verification and the gates. Written to the run folder as report.json
(for tools), report.md (to paste into a pull request) and report.html (self-contained, with
plots).

report.json:
{
  "tfbuild": version, "recipe": name or null, "status": "passed" | "failed",
  "reference": "saved_model", "generated_inputs": bool (no data: no metrics),
  "columns": {name: description, ...},
  "rows": [{"artifact", "format", "variant", "runtime", "threads", "path", "bytes",
            "gzip_bytes", "p50_ms", "p95_ms", "p99_ms", "p50_spread", "p95_spread", "rounds",
            "p50_rounds_ms", "p95_rounds_ms",
            "samples_per_s", "batch_size",
            "tasks": {output: task}, "generated",
            "metrics": {output: {"task", "accuracy" | "mae", "rmse"}},
            "metric_deltas": {output: {metric: artifact's minus the SavedModel's}},
            "accuracy", "accuracy_delta", "mae", "mae_delta", "rmse",
            "verify", "top1_agreement", "max_abs_diff", "max_rel_diff", "min_cosine", "mean_abs_diff",
            "gate", "gate_problems": [...], "p50_spread",
            "steps": {"export" | "verify" | "benchmark": {"name", "status", "seconds", "built_seconds"} or null},
            "shared_steps" (the SavedModel's row only): [{"name", "status", "seconds", "built_seconds"}, ...]}],
  "gate_violations": ["ARTIFACT (RUNTIME): PROBLEM", ...],
  "quantization": {"layers": tflite_layers' info or null, "repair": tflite_repair's info or null}
}
A figure that was not measured is null. Keys are only ever added.

The report is made from the build's results, not by a cached step: it must show failed and
skipped steps too (a skipped step leaves nothing to cache), and it costs milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .gates import limits_for, violations
from .metrics import CLASSIFICATION, METRICS, REGRESSION
from .record import write_text_atomic
from .report_quantization import quantization_html, quantization_markdown
from .report_page import html_page
from .report_plots import build_plots
from .report_steps import steps_html, steps_markdown
from .report_table import markdown
from .runner import BUILT, CACHED, FAILED, SKIPPED, BuildResult, StepResult

COLUMNS = {
    "artifact": "the artifact's name (format/variant)",
    "runtime": "what ran it (TensorFlow, LiteRT, TF.js + backend)",
    "bytes": "size on disk",
    "gzip_bytes": "size gzipped (-9), what a download costs",
    "p50_ms": "median latency at batch 1, ms",
    "p95_ms": "95th percentile latency at batch 1, ms",
    "p99_ms": "99th percentile latency at batch 1, ms",
    "p50_spread": "(max - min) / median of the timing rounds' p50s: the run's own noise on p50",
    "p95_spread": "(max - min) / median of the timing rounds' p95s",
    "rounds": "interleaved timing rounds; p50_ms is the median of the rounds' p50s",
    "p50_rounds_ms": "each timing round's p50 at batch 1, ms (what tfbuild-report diff compares)",
    "p95_rounds_ms": "each timing round's p95 at batch 1, ms",
    "samples_per_s": "throughput at batch_size, from the median batch time",
    "tasks": "each model output's task (classification or regression)",
    "generated": "true when the test inputs were generated from the model's signature (no labels, no metrics)",
    "metrics": "per output on the held-out test split: accuracy (classification); MAE and RMSE (regression)",
    "metric_deltas": "per output, each metric minus the SavedModel's (the reference)",
    "accuracy": "top-1 accuracy of the first classification output on the held-out test split",
    "accuracy_delta": "accuracy minus the SavedModel's (the reference)",
    "mae": "mean absolute error of the first regression output, in its target's units",
    "mae_delta": "MAE minus the SavedModel's (positive: worse)",
    "rmse": "root mean squared error of the first regression output",
    "verify": "passed / failed / skipped on its runtime against the SavedModel; reference; off",
    "top1_agreement": "share of test samples whose top-1 class matches the SavedModel's (worst classification output)",
    "max_abs_diff": "largest |artifact - SavedModel| over every output value (worst runtime)",
    "max_rel_diff": "largest relative difference to the SavedModel over every output value",
    "min_cosine": "smallest per-sample cosine similarity to the SavedModel's outputs",
    "mean_abs_diff": "mean |artifact - SavedModel| over every output value (worst runtime)",
    "gate": "passed / failed: LIMIT, ... against gates.*; - when no gate applies",
    "p50_spread": "relative spread of p50 between the benchmark's timing rounds, when it timed several",
    "steps": "the steps that made, verified and benchmarked the artifact: status, seconds in this build, "
             "seconds when it was built (for a cached step, what the cache saved)",
    "shared_steps": "on the SavedModel's row: the steps every artifact shares (data, train, reference, ...)",
}
REFERENCE = "saved_model"
FILES = ("report.json", "report.md", "report.html")
VERIFY_FIGURES = ("top1_agreement", "max_abs_diff", "max_rel_diff", "min_cosine", "mean_abs_diff")
STEP_ROLES = ("export", "verify", "benchmark")


def report_rows(result: BuildResult, gates: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_name = {r.spec.name: r for r in result.steps}
    build = _build_facts(result)
    rows: list[dict[str, Any]] = []
    for step in result.steps:
        for out in step.spec.outputs:
            if out.format is None or (out.format == REFERENCE and out.artifact != REFERENCE):
                continue
            rows += _artifact_rows(step, out, by_name, build)
    _add_shared_steps(rows, result.steps)
    reference = next((r for r in rows if r["artifact"] == REFERENCE and r["metrics"]), None)
    for row in rows:
        _add_deltas(row, reference)
        limits = limits_for(gates, row["format"], row["variant"])
        broken = violations(row, limits)
        row["gate_problems"] = [phrase for _, phrase in broken]
        row["gate"] = "-" if not limits else "failed: " + ", ".join(limit for limit, _ in broken) if broken else "passed"
    return rows


def _build_facts(result: BuildResult) -> dict[str, Any]:
    """What the whole build knows about the model's outputs: their tasks (from whichever step
    recorded them: scores name them; with generated inputs, verification's config does), and
    whether the inputs were generated."""
    tasks: dict[str, str] = {}
    generated = False
    for step in result.steps:
        if step.spec.kind not in ("reference", "verify", "benchmark") or not step.info:
            continue
        generated = generated or bool(step.info.get("generated"))
        scored = [step.info.get("metrics") or {}, *((r.get("metrics") or {}) for r in (step.info.get("runtimes") or {}).values())]
        for found in (step.info.get("tasks") or {}, *({n: m["task"] for n, m in s.items()} for s in scored)):
            for name, task in found.items():
                tasks.setdefault(name, task)
    return {"tasks": tasks, "generated": generated}


def _artifact_rows(export: StepResult, out: Any, by_name: Mapping[str, StepResult],
                   build: Mapping[str, Any]) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "artifact": out.artifact,
        "format": out.format,
        "variant": out.variant,
        "path": out.publish,
        "bytes": export.entry.manifest["outputs"][out.role]["bytes"] if export.entry else None,
        "gzip_bytes": export.info.get("gzip_bytes"),
        "tasks": dict(build["tasks"]),
        "generated": build["generated"],
        "verify": _verify_status(out.artifact, by_name),
        **dict.fromkeys(VERIFY_FIGURES),
        "steps": dict(zip(STEP_ROLES, (step_time(s) for s in (
            export, by_name.get(f"verify[{out.artifact}]"), by_name.get(f"benchmark[{out.artifact}]"))))),
    }
    verify = by_name.get(f"verify[{out.artifact}]")
    if verify is not None and verify.info:
        base.update({figure: verify.info.get(figure) for figure in VERIFY_FIGURES})
    bench = by_name.get(f"benchmark[{out.artifact}]")
    runtimes = bench.info.get("runtimes", {}) if bench is not None and bench.status in (BUILT, CACHED) else {}
    if not runtimes:
        return [{**base, "runtime": None, "threads": None, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                 "p50_spread": None, "p95_spread": None, "rounds": None, "p50_rounds_ms": None, "p95_rounds_ms": None,
                 "samples_per_s": None, "batch_size": None, **_with_metrics({})}]
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
            # null where a format plug-in times without rounds (not measured).
            "p50_spread": figures["latency"].get("p50_spread"),
            "p95_spread": figures["latency"].get("p95_spread"),
            "rounds": figures["latency"].get("rounds"),
            "p50_rounds_ms": figures["latency"].get("p50_rounds_ms"),
            "p95_rounds_ms": figures["latency"].get("p95_rounds_ms"),
            "samples_per_s": figures["throughput"]["samples_per_s"],
            "batch_size": figures["throughput"]["batch_size"],
            **_with_metrics(figures.get("metrics") or {}),
        })  # fmt: skip
    return rows


def step_time(step: StepResult | None) -> dict[str, Any] | None:
    """How long a step took: `seconds` in this build (a cache hit's lookup), `built_seconds`
    when its cache entry was built (what a hit saved)."""
    if step is None:
        return None
    built = step.entry.manifest.get("seconds") if step.entry is not None else None
    return {"name": step.spec.name, "status": step.status, "seconds": round(step.seconds, 3),
            "built_seconds": round(step.seconds, 3) if built is None and step.status == BUILT else built}


def _add_shared_steps(rows: list[dict[str, Any]], steps: list[StepResult]) -> None:
    """The steps no single row owns (data, train, reference, ...) go on the SavedModel's row:
    they made the SavedModel, and every other artifact is made from it."""
    owned = {t["name"] for row in rows for t in row["steps"].values() if t is not None}
    host = next((r for r in rows if r["artifact"] == REFERENCE), rows[0] if rows else None)
    for row in rows:
        row["shared_steps"] = None
    if host is not None:
        host["shared_steps"] = [step_time(s) for s in steps if s.spec.name not in owned]


def _with_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The per-output metrics, and the first output of each task's flattened for tools that
    read one number (report diffs of older reports, Pareto fronts)."""
    first = {task: next((m for m in metrics.values() if m["task"] == task), {}) for task in (CLASSIFICATION, REGRESSION)}
    return {
        "metrics": {name: dict(figures) for name, figures in metrics.items()},
        "metric_deltas": {},
        "accuracy": first[CLASSIFICATION].get("accuracy"),
        "accuracy_delta": None,
        "mae": first[REGRESSION].get("mae"),
        "mae_delta": None,
        "rmse": first[REGRESSION].get("rmse"),
    }


def _add_deltas(row: dict[str, Any], reference: Mapping[str, Any] | None) -> None:
    if reference is None:
        return
    for name, figures in row["metrics"].items():
        base = reference["metrics"].get(name) or {}
        row["metric_deltas"][name] = {
            m: float(f"{figures[m] - base[m]:.6g}") for m in METRICS[figures["task"]] if m in figures and base.get(m) is not None
        }
    for metric, key in (("accuracy", "accuracy_delta"), ("mae", "mae_delta")):
        name = next((n for n, f in row["metrics"].items() if metric in f), None)
        if name is not None:
            row[key] = row["metric_deltas"].get(name, {}).get(metric)


def _verify_status(artifact: str, by_name: Mapping[str, StepResult]) -> str:
    step = by_name.get(f"verify[{artifact}]")
    if step is None:  # the SavedModel is the reference, unless a float32 twin is
        return "reference" if artifact == REFERENCE else "off"
    return {BUILT: "passed", CACHED: "passed", FAILED: "failed", SKIPPED: "skipped"}.get(step.status, step.status)


def gate_violations(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{_label(r)}: {problem}" for r in rows for problem in r["gate_problems"]]


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['artifact']} ({row['runtime']})" if row["runtime"] else row["artifact"]


def write_report(run_dir: Path, rows: list[dict[str, Any]], *, recipe: str | None,
                 quantization: Mapping[str, Any] | None = None) -> list[Path]:
    """`quantization`: report_quantization.quantization_facts of the build, when it has them."""
    title = f"tfbuild report: {recipe or '(no recipe)'}"
    violations_ = gate_violations(rows)
    record = {
        "tfbuild": __version__,
        "recipe": recipe,
        "status": "failed" if violations_ or any(r["verify"] in ("failed", "skipped") for r in rows) else "passed",
        "reference": REFERENCE,
        "generated_inputs": any(r["generated"] for r in rows),
        "columns": COLUMNS,
        "rows": rows,
        "gate_violations": violations_,
        # The tflite_layers and tflite_repair steps' info, null where the step did not run.
        "quantization": {"layers": (quantization or {}).get("layers"), "repair": (quantization or {}).get("repair")},
    }
    paths = [run_dir / name for name in FILES]
    write_text_atomic(paths[0], json.dumps(record, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(rows, title, extra=steps_markdown(rows) + quantization_markdown(quantization)))
    page = html_page(rows, title, build_plots(rows), extra=steps_html(rows) + quantization_html(quantization))
    write_text_atomic(paths[2], page)
    return paths
