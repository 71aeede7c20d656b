"""The plots of the build's report and of a sweep's: which figures go on which axes, with
what names. Drawing them is plots.py's job."""

from __future__ import annotations

from typing import Any, Sequence

from .metrics import LABELS, METRICS
from .plot_axes import use_log_axis
from .plots import latency_chart, scatter_plot
from .report_table import metric_value, output_tasks


def headline_metric(rows: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """(output, metric) the plots and Pareto fronts use: the first output's headline metric."""
    for name, task in output_tasks(rows).items():
        return name, METRICS[task][0]
    return None


def metric_axis(rows: Sequence[dict[str, Any]], headline: tuple[str, str]) -> tuple[str, float]:
    """The axis label and scale of the headline metric in a plot."""
    name, metric = headline
    of = f" of {name}" if len(output_tasks(rows)) > 1 else ""
    return (f"test accuracy{of} (%)", 100.0) if metric == "accuracy" else (f"test {LABELS[metric]}{of} (lower is better)", 1.0)


def plot_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Short names for the plots: the artifact, with its runtime (versions left to the table)
    only where one artifact ran on several."""
    artifacts = [r["artifact"] for r in rows]
    return [f"{r['artifact']} ({_without_versions(r['runtime'])})" if r["runtime"] and artifacts.count(r["artifact"]) > 1
            else r["artifact"] for r in rows]  # fmt: skip


def _without_versions(runtime: str) -> str:
    return " ".join(word for word in runtime.split() if not word[:1].isdigit())


def build_plots(rows: list[dict[str, Any]]) -> list[str]:
    plots = []
    headline = headline_metric(rows)
    if headline is not None:
        measured = [r for r in rows if metric_value(r, *headline) is not None and r["bytes"] is not None]
        if measured:
            label, scale = metric_axis(rows, headline)
            plots.append(scatter_plot(
                [(r["bytes"] / 1024, metric_value(r, *headline) * scale, name) for r, name in zip(measured, plot_labels(measured))],
                title=f"Size vs {LABELS[headline[1]]}", x_label="size on disk (KB)", y_label=label,
                y_bounds=metric_bounds(headline),
            ))  # fmt: skip
    timed = [r for r in rows if r["p50_ms"] is not None]
    if timed:
        plots.append(latency_chart(
            [(name, r["p50_ms"], r["p95_ms"]) for r, name in zip(timed, plot_labels(timed))], title="Latency at batch 1",
        ))  # fmt: skip
    return plots


def metric_bounds(headline: tuple[str, str]) -> tuple[float, float]:
    """The range a metric's axis ticks may take: an accuracy axis padded past 100% has no tick there."""
    return (0.0, 100.0) if headline[1] == "accuracy" else (0.0, float("inf"))


# The sweep's fronts: (row key, x axis' name, the key marking the row's place on the front).
FRONTS = (("bytes", "size on disk (KB)", "pareto_size"), ("p50_ms", "p50 latency at batch 1 (ms)", "pareto_latency"))


def pareto_plots(rows: Sequence[dict[str, Any]], measured: Sequence[int], headline: tuple[str, str]) -> list[str]:
    """The sweep's two Pareto plots: size and p50 latency against the headline metric, each
    point named by its job, the front drawn red; a latency axis spanning more than ten
    times is logarithmic."""
    y_label, scale = metric_axis(rows, headline)
    plots = []
    for figure, x_label, key in FRONTS:
        on = [i for i in measured if rows[i][figure] is not None]
        if not on:
            continue
        xs = [rows[i][figure] / 1024 if figure == "bytes" else rows[i][figure] for i in on]
        log = figure == "p50_ms" and use_log_axis(xs)
        plots.append(scatter_plot(
            [(x, metric_value(rows[i], *headline) * scale, job_label(rows[i])) for x, i in zip(xs, on)],
            title=f"Pareto front: {x_label.split(' (')[0]} vs {LABELS[headline[1]]}",
            x_label=x_label.replace("(ms)", "(ms, log scale)") if log else x_label, y_label=y_label,
            front=[n for n, i in enumerate(on) if rows[i][key]], x_log=log, y_bounds=metric_bounds(headline),
            merge=merge_job_labels,
        ))  # fmt: skip
    return plots


def job_label(row: dict[str, Any]) -> str:
    return f"job {row['job']}: {row['artifact']}"


def merge_job_labels(labels: list[str]) -> str:
    """One label for points on one spot: "jobs 0, 1, 2: saved_model" for the SavedModel every
    job shares, rather than the artifact's name once per job."""
    by_artifact: dict[str, list[str]] = {}
    for label in labels:
        job, _, artifact = label.partition(": ")
        by_artifact.setdefault(artifact, []).append(job.removeprefix("job "))
    return "; ".join(f"job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)}: {artifact}" for artifact, jobs in by_artifact.items())
