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
            "verify", "top1_agreement", "max_abs_diff", "max_rel_diff", "min_cosine",
            "gate", "gate_problems": [...]}],
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
from .metrics import CLASSIFICATION, LABELS, METRICS, REGRESSION
from .plots import bar_chart, scatter_plot
from .record import write_text_atomic
from .report_quantization import quantization_html, quantization_markdown
from .report_table import html_page, markdown, metric_value, output_tasks
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
    "gate": "passed / failed: LIMIT, ... against gates.*; - when no gate applies",
}
REFERENCE = "saved_model"
FILES = ("report.json", "report.md", "report.html")
VERIFY_FIGURES = ("top1_agreement", "max_abs_diff", "max_rel_diff", "min_cosine")


def report_rows(result: BuildResult, gates: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_name = {r.spec.name: r for r in result.steps}
    build = _build_facts(result)
    rows: list[dict[str, Any]] = []
    for step in result.steps:
        for out in step.spec.outputs:
            if out.format is None or (out.format == REFERENCE and out.artifact != REFERENCE):
                continue
            rows += _artifact_rows(step, out, by_name, build)
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


def headline_metric(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(output, metric) the plots and Pareto fronts use: the first output's headline metric."""
    for name, task in output_tasks(rows).items():
        return name, METRICS[task][0]
    return None


def metric_axis(rows: list[dict[str, Any]], headline: tuple[str, str]) -> tuple[str, float]:
    """The axis label and scale of the headline metric in a plot."""
    name, metric = headline
    of = f" of {name}" if len(output_tasks(rows)) > 1 else ""
    return (f"test accuracy{of} (%)", 100.0) if metric == "accuracy" else (f"test {LABELS[metric]}{of} (lower is better)", 1.0)


def build_plots(rows: list[dict[str, Any]]) -> list[str]:
    plots = []
    headline = headline_metric(rows)
    if headline is not None:
        measured = [r for r in rows if metric_value(r, *headline) is not None and r["bytes"] is not None]
        if measured:
            label, scale = metric_axis(rows, headline)
            plots.append(scatter_plot(
                [(r["bytes"] / 1024, metric_value(r, *headline) * scale, _label(r)) for r in measured],
                title=f"Size vs {LABELS[headline[1]]}", x_label="size on disk (KB)", y_label=label,
            ))  # fmt: skip
    timed = [r for r in rows if r["p50_ms"] is not None]
    if timed:
        plots.append(bar_chart(
            [(_label(r), r["p50_ms"], r["p95_ms"]) for r in timed],
            title="Latency at batch 1", value_label="ms", series=("p50", "p95"),
        ))  # fmt: skip
    return plots


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
    write_text_atomic(paths[1], markdown(rows, title, extra=quantization_markdown(quantization)))
    write_text_atomic(paths[2], html_page(rows, title, build_plots(rows), extra=quantization_html(quantization)))
    return paths
