"""One report for a whole sweep (`tfbuild -m ...`), written by a Hydra callback when the
multirun ends, so it works with any launcher: sweep_report.json, .md and .html in the
sweep folder, one row per job and artifact with the overrides that made it, and the
size/accuracy and latency/accuracy Pareto fronts.

sweep_report.json: {"tfbuild", "sweep_dir", "jobs": [{"job", "overrides", "status": build.json's
"succeeded" | "failed", or "not built" (a config error)}],
"rows": [report.json row + "job", "overrides", "pareto_size", "pareto_latency"]}.

This module is imported whenever Hydra starts (callbacks are instantiated for single runs
too), so everything heavier than Hydra itself is imported inside the callback.
"""

from __future__ import annotations

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


def pareto_front(points: Sequence[tuple[float, float]]) -> set[int]:
    """Indices of points that no other point beats: smaller (x) and at least as accurate (y)."""
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
    from .plots import scatter_plot
    from .report import HEADERS, html_page, table_cells

    jobs, rows = collect(sweep_dir)
    swept = varying(jobs)
    measured = [i for i, r in enumerate(rows) if r["accuracy"] is not None and r["bytes"] is not None]
    for key, figure in (("pareto_size", "bytes"), ("pareto_latency", "p50_ms")):
        front = pareto_front([(rows[i][figure], rows[i]["accuracy"]) for i in measured])
        for n, i in enumerate(measured):
            rows[i][key] = n in front
    for row in rows:
        row["made_by"] = " ".join(o for o in row["overrides"] if o.partition("=")[0] in swept) or "-"

    title = f"tfbuild sweep report: {sweep_dir}"
    headers = ("job", "made by", *HEADERS, "pareto (size, latency)")
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        pareto = ", ".join(k for k, flag in (("size", row.get("pareto_size")), ("latency", row.get("pareto_latency"))) if flag)
        cells = (str(row["job"]), row["made_by"], *table_cells(row), pareto or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = [j for j in jobs if j["status"] != "succeeded"]
    lines += ["", f"{len(jobs)} jobs, {len(rows)} rows; " + (
        f"jobs that did not succeed: {', '.join(str(j['job']) + ' (' + j['status'] + ')' for j in failed)}" if failed else "every job succeeded"
    ), ""]  # fmt: skip

    def label(i: int) -> str:
        return f"{rows[i]['job']}: {rows[i]['artifact']}"

    plots = []
    if measured:
        for figure, x_label, key in (("bytes", "size on disk (KB)", "pareto_size"), ("p50_ms", "p50 latency at batch 1 (ms)", "pareto_latency")):
            scale = 1 / 1024 if figure == "bytes" else 1.0
            plots.append(scatter_plot(
                [(rows[i][figure] * scale, rows[i]["accuracy"] * 100, label(i)) for i in measured],
                title=f"Pareto front: {x_label.split(' (')[0]} vs accuracy", x_label=x_label, y_label="test accuracy (%)",
                front=[n for n, i in enumerate(measured) if rows[i][key]],
            ))  # fmt: skip
    record = {"tfbuild": __version__, "sweep_dir": str(sweep_dir), "jobs": jobs, "rows": rows}
    paths = [sweep_dir / name for name in FILES]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    paths[1].write_text("\n".join(lines))
    page = html_page(rows, title, plots).replace(
        "<table>", "<p>" + "<br>".join(f"job {j['job']}: {' '.join(j['overrides']) or '(no overrides)'} — {j['status']}" for j in jobs) + "</p><table>", 1
    )
    paths[2].write_text(page)
    return jobs
