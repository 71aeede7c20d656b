"""What report.md/.html and sweep_report.html show beyond the terminal's table: verification
figures, p50's spread, step times, the sweep's jobs, overrides and Pareto marks; with
failed and skipped steps, one artifact, regressions, missing figures and hostile names."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from rich.console import Console

from tfbuild.console import report_table
from tfbuild.plan import StepSpec
from tfbuild.report import report_rows, write_report
from tfbuild.report_table import report_columns, table_cells, table_columns
from tfbuild.runner import BUILT, CACHED, FAILED, SKIPPED, BuildResult, StepResult
from tfbuild.sweep_report import write_sweep_report

from tests.unit.test_report import NO_GATES, bench, build_result, export, verify
from tests.unit.test_report_tasks import regression_build, write_job

HOSTILE = '<script>alert("x")</script>'


def headers(rows) -> list[str]:
    return [c.header for c in report_columns(rows)]


def cells(rows, row) -> dict[str, str]:
    columns = report_columns(rows)
    return dict(zip((c.header for c in columns), table_cells(row, columns)))


def timed(step: StepResult, status: str, seconds: float, built_seconds: float | None = None) -> StepResult:
    """The step as the runner returns it: how long it took here, and its cache entry's record."""
    manifest = {"seconds": built_seconds, "outputs": {"model": {"bytes": 1000}}} if built_seconds is not None else None
    return StepResult(step.spec, status, step.reason, seconds=seconds, info=step.info,
                      entry=SimpleNamespace(manifest=manifest) if manifest else None)  # fmt: skip


def page_text(path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", path.read_text()))


def test_report_columns_carry_the_verification_figures_the_terminal_leaves_out():
    rows = report_rows(build_result(), NO_GATES)
    assert headers(rows)[-4:] == ["max |Δ|", "top-1 agree", "verify", "gate"]
    assert "max |Δ|" not in [c.header for c in table_columns(rows)], "the terminal's table is not widened"
    assert cells(rows, rows[1])["max |Δ|"] == "0.01" and cells(rows, rows[1])["top-1 agree"] == "99.0%"
    assert cells(rows, rows[0])["max |Δ|"] == "-", "the reference is not compared with itself"


def test_a_regression_shows_the_mean_difference_instead_of_top1_agreement():
    rows = report_rows(regression_build(), NO_GATES)
    assert headers(rows)[-4:] == ["max |Δ|", "mean |Δ|", "verify", "gate"]
    assert cells(rows, rows[1])["mean |Δ|"] == "0.002"


def test_without_verification_there_are_no_verification_columns():
    result = BuildResult([export("saved_model", "saved_model", None, 1), bench("saved_model", 2, ("TensorFlow", 0.2, 0.9))])
    rows = report_rows(result, NO_GATES)
    assert not {"max |Δ|", "top-1 agree", "mean |Δ|"} & set(headers(rows))


def test_p50_spread_shows_in_the_report_but_not_on_the_terminal(tmp_path):
    result = build_result()
    spread = {"saved_model": 0.031, "tflite/int8": 0.004}
    for step in result.steps:
        for name, figures in (step.info.get("runtimes") or {}).items():
            if step.spec.kind == "benchmark" and step.spec.name[10:-1] in spread:
                figures["latency"]["p50_spread"] = spread[step.spec.name[10:-1]]
    rows = report_rows(result, NO_GATES)
    assert [r["p50_spread"] for r in rows] == [0.031, 0.004, None, None]
    assert [cells(rows, r)["p50 ms"] for r in rows] == ["0.2500 ±3%", "0.0040 ±0.4%", "0.9000", "0.1500"]
    write_report(tmp_path, rows, recipe="digits")
    assert "0.2500 ±3%" in (tmp_path / "report.html").read_text() and "0.2500 ±3%" in (tmp_path / "report.md").read_text()
    assert "how far the median moved between the benchmark's timing rounds" in page_text(tmp_path / "report.html")
    console = Console(width=250, record=True)
    console.print(report_table(rows, "report"))
    assert "±" not in console.export_text()


def test_rows_carry_step_times_and_the_page_shows_them(tmp_path):
    steps = build_result().steps
    steps[0] = timed(steps[0], CACHED, 0.002, built_seconds=0.82)  # saved_model: a cache hit
    steps[1] = timed(steps[1], BUILT, 0.31, built_seconds=0.31)  # tflite/int8: built now
    steps[3] = timed(steps[3], FAILED, 0.12)  # verify[tflite/int8] failed
    steps.append(timed(StepResult(StepSpec(name="train", kind="train"), CACHED, ""), CACHED, 0.004, built_seconds=6.48))
    rows = report_rows(BuildResult(steps), NO_GATES)
    int8 = rows[1]
    assert int8["steps"]["export"] == {"name": "export[tflite/int8]", "status": BUILT, "seconds": 0.31, "built_seconds": 0.31}
    assert int8["steps"]["verify"]["status"] == FAILED and int8["verify"] == "failed"
    assert rows[0]["steps"]["verify"] is None and rows[0]["steps"]["export"]["built_seconds"] == 0.82
    assert [s["name"] for s in rows[0]["shared_steps"]] == ["train"] and rows[1]["shared_steps"] is None
    write_report(tmp_path, rows, recipe="digits")
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["steps"]["export"]["seconds"] == 0.31
    markdown = (tmp_path / "report.md").read_text()
    assert "| tflite/int8 | 0.31 | failed after 0.12 | cached |" in markdown, "a hit whose entry has no time"
    assert "| saved_model | (0.82) | - |" in markdown and "Steps every artifact shares: `train` (6.48)." in markdown
    page = (tmp_path / "report.html").read_text()
    assert '<td class="num cached">(0.82)</td>' in page and '<td class="num failed">failed after 0.12</td>' in page
    assert "tfjs/uint8" in page_text(tmp_path / "report.html").split("Step times")[1], "one step row per artifact"
    assert page_text(tmp_path / "report.html").split("Step times")[1].count("tfjs/uint8") == 1


def test_skipped_and_missing_figures_render_as_dashes(tmp_path):
    result = BuildResult([
        export("saved_model", "saved_model", None, 150_000),
        export("tflite/int8", "tflite", "int8", 40_000),
        export("tfjs/uint8", "tfjs", "uint8", 36_000),
        verify("tflite/int8", SKIPPED, max_abs_diff=None, top1_agreement=None),
        verify("tfjs/uint8"),
        bench("saved_model", 250_000, ("TensorFlow", 0.25, 0.94)),
        StepResult(StepSpec(name="benchmark[tflite/int8]", kind="benchmark"), SKIPPED, "tflite[int8] did not build"),
    ])  # fmt: skip
    rows = report_rows(result, NO_GATES)
    int8 = cells(rows, rows[1])
    assert (int8["verify"], int8["p50 ms"], int8["accuracy"], int8["max |Δ|"]) == ("skipped", "-", "-", "-")
    write_report(tmp_path, rows, recipe="digits")
    page = (tmp_path / "report.html").read_text()
    assert '<td class="num skipped">skipped</td>' in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)


def test_one_artifact_makes_a_whole_report(tmp_path):
    result = BuildResult([export("saved_model", "saved_model", None, 150_000), bench("saved_model", 250_000, ("TensorFlow", 0.25, 0.94))])
    write_report(tmp_path, report_rows(result, NO_GATES), recipe="one")
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 2 and "Step times" in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)


def hostile_result() -> BuildResult:
    return BuildResult([
        export("saved_model", "saved_model", None, 150_000),
        export(HOSTILE, "tflite", "int8", 40_000),
        verify(HOSTILE),
        bench("saved_model", 250_000, (f"TensorFlow {HOSTILE}", 0.25, 0.94)),
        bench(HOSTILE, 45_000, ("LiteRT", 0.004, 0.93)),
        StepResult(StepSpec(name=f"train{HOSTILE}", kind="train"), BUILT, ""),
    ])  # fmt: skip


def test_the_report_page_escapes_every_name(tmp_path):
    write_report(tmp_path, report_rows(hostile_result(), NO_GATES), recipe=HOSTILE)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 6
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)


def sweep(tmp_path, overrides: list[list[str]], build=build_result) -> str:
    for job, given in enumerate(overrides):
        write_job(tmp_path, job, given, report_rows(build(), NO_GATES))
    write_sweep_report(tmp_path)
    return (tmp_path / "sweep_report.html").read_text()


def test_the_sweep_page_has_jobs_their_overrides_and_the_pareto_marks(tmp_path):
    page = sweep(tmp_path, [["recipe=digits", "export.tflite.quantization=int8"], ["recipe=digits", "export.tflite.quantization=float"]])
    head = re.search(r"<thead>(.*?)</thead>", page).group(1)
    assert [html.unescape(re.sub("<wbr>", "", h)) for h in re.findall(r"<th[^>]*>(.*?)</th>", head)][:3] == [
        "job", "export.tflite.quantization", "artifact"]  # fmt: skip
    assert head.endswith('<th class="text">pareto front</th></tr>')
    body = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1])
    first = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", body[0])]
    assert first[:3] == ["0", "int8", "saved_model"]
    assert '<td class="text front">size</td>' in page or '<td class="text front">size, latency</td>' in page
    assert "job 1: <code>recipe=digits export.tflite.quantization=float</code>" in page
    assert "Pareto front: p50 latency at batch 1 vs accuracy" in page and "log scale" in page
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "- job 1: `recipe=digits export.tflite.quantization=float` — succeeded" in markdown
    assert "| job | export.tflite.quantization | artifact |" in markdown and markdown.count("\n| ") == 1 + 2 * 4


def test_the_sweep_page_axes_start_at_the_data_not_at_zero(tmp_path):
    page = sweep(tmp_path, [["a=1"], ["a=2"]])
    size_plot = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    ticks = [float(t) for t in re.findall(r'text-anchor="end" fill="#444">([\d.]+)<', size_plot)]
    assert ticks and min(ticks) > 90 and max(ticks) <= 100, ticks  # accuracies 93-94%


def test_the_sweep_page_escapes_overrides_and_names(tmp_path):
    page = sweep(tmp_path, [[f"recipe={HOSTILE}"], ["recipe=digits"]], build=hostile_result)
    assert "<script>" not in page and "&lt;script&gt;" in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)
