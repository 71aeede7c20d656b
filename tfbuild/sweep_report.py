"""One report for a whole sweep (`tfbuild -m ...`), written by a Hydra callback when the
multirun ends, so it works with any launcher: sweep_report.json, .md and .html in the
sweep folder, one row per job and artifact with the overrides that made it, and the Pareto
fronts of size and latency against the headline metric (the first output's: accuracy for a
classifier, MAE for a regression, where lower is better).

sweep_report.json: {"tfbuild", "sweep_dir", "jobs": [{"job", "overrides", "status": build.json's
"succeeded" | "failed", or "not built" (a config error)}],
"rows": [report.json row + "job", "overrides", "pareto_size", "pareto_latency"],
"pareto_metric": {"output", "metric"} or null (no metric measured: no fronts)}.

This module is imported whenever Hydra starts (callbacks are instantiated for single runs
too), so everything heavier than Hydra itself is imported inside the callback.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FILES = ("sweep_report.json", "sweep_report.md", "sweep_report.html")


# Jobs that did not succeed in the last sweep this process ran. Launchers that run jobs in
# other processes (joblib, submitit, ray) hide their exit codes; the CLI reads this instead.
failed_jobs: list[int] = []


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = write_sweep_report(Path(config.hydra.sweep.dir))
        failed_jobs[:] = [j["job"] for j in jobs if j["status"] != "succeeded"]


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> set[int]:
    """Indices of points that no other point beats: smaller (x) and at least as good (y:
    higher accuracy, or lower error)."""
    if not higher_is_better:
        points = [(x, -y) for x, y in points]
    front = set()
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.add(i)
    return front


def collect(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(jobs, rows) from the job folders' report.json and Hydra's record of their overrides."""
    import yaml

    jobs, rows = [], []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        report_file, build_file = job_dir / "report.json", job_dir / "build.json"
        if not build_file.is_file():  # the job stopped before building (a config error)
            jobs.append({"job": int(job_dir.name), "overrides": overrides, "status": "not built"})
            continue
        status = json.loads(build_file.read_text())["status"]
        jobs.append({"job": int(job_dir.name), "overrides": overrides, "status": status})
        if report_file.is_file():
            rows += [{"job": int(job_dir.name), "overrides": overrides, **row} for row in json.loads(report_file.read_text())["rows"]]
    return jobs, rows


def varying(jobs: list[dict[str, Any]]) -> set[str]:
    """The override keys whose values differ between jobs: what the sweep swept."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job["overrides"]:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1 or len(jobs) == 1}


def write_sweep_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write the three files; return the jobs with their status."""
    from . import __version__
    from .metrics import HIGHER_IS_BETTER, LABELS
    from .plots import scatter_plot
    from .report import headline_metric, metric_axis
    from .report_table import Column, html_page, markdown_table, metric_value, table_columns

    jobs, rows = collect(sweep_dir)
    swept = varying(jobs)
    headline = headline_metric(rows)
    measured = [] if headline is None else [
        i for i, r in enumerate(rows) if metric_value(r, *headline) is not None and r["bytes"] is not None
    ]  # fmt: skip
    better = HIGHER_IS_BETTER[headline[1]] if headline else True
    for key, figure in (("pareto_size", "bytes"), ("pareto_latency", "p50_ms")):
        on = [i for i in measured if rows[i][figure] is not None]
        front = pareto_front([(rows[i][figure], metric_value(rows[i], *headline)) for i in on], better)
        for n, i in enumerate(on):
            rows[i][key] = n in front
    for row in rows:
        row["made_by"] = " ".join(o for o in row["overrides"] if o.partition("=")[0] in swept) or "-"

    title = f"tfbuild sweep report: {sweep_dir}"
    columns = [
        Column("job", lambda row: str(row["job"])),
        Column("made by", lambda row: row["made_by"], numeric=False),
        *table_columns(rows),
        Column("pareto front", _pareto_cell, numeric=False),
    ]
    lines = [f"# {title}", "", *markdown_table(rows, columns)]
    failed = [j for j in jobs if j["status"] != "succeeded"]
    lines += ["", f"{len(jobs)} jobs, {len(rows)} rows; " + (
        f"jobs that did not succeed: {', '.join(str(j['job']) + ' (' + j['status'] + ')' for j in failed)}" if failed else "every job succeeded"
    ), ""]  # fmt: skip

    def label(i: int) -> str:
        return f"{rows[i]['job']}: {rows[i]['artifact']}"

    plots = []
    if measured and headline is not None:
        y_label, scale = metric_axis(rows, headline)
        for figure, x_label, key in (("bytes", "size on disk (KB)", "pareto_size"), ("p50_ms", "p50 latency at batch 1 (ms)", "pareto_latency")):
            on = [i for i in measured if rows[i][figure] is not None]
            if not on:
                continue
            x_scale = 1 / 1024 if figure == "bytes" else 1.0
            plots.append(scatter_plot(
                [(rows[i][figure] * x_scale, metric_value(rows[i], *headline) * scale, label(i)) for i in on],
                title=f"Pareto front: {x_label.split(' (')[0]} vs {LABELS[headline[1]]}", x_label=x_label, y_label=y_label,
                front=[n for n, i in enumerate(on) if rows[i][key]],
            ))  # fmt: skip
    pareto_metric = {"output": headline[0], "metric": headline[1]} if headline else None
    record = {"tfbuild": __version__, "sweep_dir": str(sweep_dir), "jobs": jobs, "rows": rows, "pareto_metric": pareto_metric}
    paths = [sweep_dir / name for name in FILES]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    paths[1].write_text("\n".join(lines))
    page = html_page(rows, title, plots, columns=columns, intro="<p>" + "<br>".join(
        html.escape(f"job {j['job']}: {' '.join(j['overrides']) or '(no overrides)'} — {j['status']}") for j in jobs
    ) + "</p>")  # fmt: skip
    paths[2].write_text(page)
    return jobs


def _pareto_cell(row: dict[str, Any]) -> str:
    flags = (("size", row.get("pareto_size")), ("latency", row.get("pareto_latency")))
    return ", ".join(name for name, on in flags if on) or "-"
