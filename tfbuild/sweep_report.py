"""One report for a whole sweep (`tfbuild -m ...`), written by a Hydra callback when the
multirun ends, so it works with any launcher: sweep_report.json, .md and .html in the
sweep folder, one row per job and artifact with the overrides that made it, and the Pareto
fronts of size and latency against the headline metric (the first output's: accuracy for a
classifier, MAE for a regression, where lower is better).

sweep_report.json: {"tfbuild", "sweep_dir", "jobs": [{"job", "overrides", "status": build.json's
"succeeded" | "failed", or "not built" (a config error), "exit_code": the job's (job_outcome.py)}],
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

from .job_outcome import read_exit_code

FILES = ("sweep_report.json", "sweep_report.md", "sweep_report.html")


# {job: exit code} of the jobs that did not succeed in the last sweep this process ran.
# Launchers that run jobs in other processes (joblib, submitit, ray) do not hand their exit
# codes back; the CLI reads them here, as the jobs left them in their folders.
failed_jobs: dict[int, int] = {}


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = write_sweep_report(sweep_dir)
        failed_jobs.clear()
        failed_jobs.update({j["job"]: j["exit_code"] for j in jobs if j["exit_code"] != 0})
        named = ", ".join(f"job {n} (exit {code})" for n, code in failed_jobs.items())
        failed = f", {len(failed_jobs)} failed: {named}" if failed_jobs else ""
        print(f"sweep report: {sweep_dir / 'sweep_report.html'} (and .md, .json; {len(jobs)} jobs{failed})", flush=True)


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
        recorded = read_exit_code(job_dir)
        if not build_file.is_file():  # the job stopped before building (a config error)
            code = 1 if recorded is None else recorded  # None: it never ended (its process died)
            jobs.append({"job": int(job_dir.name), "overrides": overrides, "status": "not built", "exit_code": code})
            continue
        status = json.loads(build_file.read_text())["status"]
        code = recorded if recorded is not None else (0 if status == "succeeded" else 1)
        jobs.append({"job": int(job_dir.name), "overrides": overrides, "status": status, "exit_code": code})
        if report_file.is_file():
            rows += [{"job": int(job_dir.name), "overrides": overrides, **row} for row in json.loads(report_file.read_text())["rows"]]
    return jobs, rows


def varying(jobs: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs (what the sweep swept), in the
    order the overrides name them."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job["overrides"]:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 or len(jobs) == 1]


def override_value(overrides: Sequence[str], key: str) -> str:
    return next((o.partition("=")[2] for o in overrides if o.partition("=")[0] == key), "-")


def sweep_columns(rows: list[dict[str, Any]], swept: Sequence[str]) -> list[Any]:
    """The job, one column per swept key (its value: the key is the header), the report's
    columns, and the row's place on the Pareto fronts."""
    from .report_table import Column, table_columns

    def value(key: str) -> Any:
        return lambda row: override_value(row["overrides"], key)

    return [
        Column("job", lambda row: str(row["job"])),
        *(Column(key, value(key), numeric=False) for key in swept),
        *table_columns(rows),
        Column("pareto front", _pareto_cell, numeric=False, style=lambda row: "front" if _pareto_cell(row) != "-" else ""),
    ]


def write_sweep_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write the three files; return the jobs with their status."""
    from . import __version__
    from .metrics import HIGHER_IS_BETTER
    from .report_page import html_page
    from .report_plots import headline_metric, pareto_plots
    from .report_table import NOTE, markdown_table, metric_note, metric_value

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
    columns = sweep_columns(rows, swept)
    lines = [f"# {title}", "", *_jobs_markdown(jobs), "", *markdown_table(rows, columns)]
    failed = [j for j in jobs if j["status"] != "succeeded"]
    summary = f"{len(jobs)} jobs, {len(rows)} rows; " + (
        f"jobs that did not succeed: {', '.join(str(j['job']) + ' (' + j['status'] + ')' for j in failed)}" if failed else "every job succeeded"
    )  # fmt: skip
    lines += ["", summary, ""]
    plots = pareto_plots(rows, measured, headline) if measured and headline is not None else []
    pareto_metric = {"output": headline[0], "metric": headline[1]} if headline else None
    record = {"tfbuild": __version__, "sweep_dir": str(sweep_dir), "jobs": jobs, "rows": rows, "pareto_metric": pareto_metric}
    paths = [sweep_dir / name for name in FILES]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    paths[1].write_text("\n".join(lines))
    note = " ".join(part for part in (summary + ".", NOTE, metric_note(rows), PARETO_NOTE if plots else "") if part)
    paths[2].write_text(html_page(rows, title, plots, columns=columns, intro=_jobs_html(jobs), note=note))
    return jobs


PARETO_NOTE = ("pareto front: no other row is smaller (size) or faster (latency, p50) without being "
               "worse on the headline metric; those rows are red in the plots.")


def _jobs_markdown(jobs: list[dict[str, Any]]) -> list[str]:
    return [f"- job {j['job']}: `{' '.join(j['overrides']) or '(no overrides)'}` — {_outcome(j)}" for j in jobs]


def _outcome(job: dict[str, Any]) -> str:
    """How a job ended: its status, and its exit code when it failed."""
    code = job.get("exit_code", 0)
    return job["status"] + (f" (exit {code})" if code else "")


def _jobs_html(jobs: list[dict[str, Any]]) -> str:
    """Each job with every override it was given and how it ended."""
    items = "".join(
        f'<li>job {j["job"]}: <code>{html.escape(" ".join(j["overrides"]) or "(no overrides)")}</code> — '
        f'<span class="{"passed" if j["status"] == "succeeded" else "failed"}">{html.escape(_outcome(j))}</span></li>'
        for j in jobs
    )  # fmt: skip
    return f'<ul class="jobs">{items}</ul>\n'


def _pareto_cell(row: dict[str, Any]) -> str:
    flags = (("size", row.get("pareto_size")), ("latency", row.get("pareto_latency")))
    return ", ".join(name for name, on in flags if on) or "-"
