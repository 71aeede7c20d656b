"""Report rows, gates, plots, the sweep's Pareto front and report diffs, without TensorFlow:
report rows are made from step results shaped as the real steps record them (classification,
regression, several outputs, generated inputs)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tfbuild.gates import limits_for, violations
from tfbuild.plan import OutputSpec, StepSpec
from tfbuild.plots import latency_chart, scatter_plot
from tfbuild.report import report_rows, write_report
from tfbuild.report_diff import main as diff_main
from tfbuild.runner import BUILT, CACHED, FAILED, BuildResult, StepResult
from tfbuild.sweep_report import pareto_front, varying

NO_GATES = {"saved_model": {}, "tflite": {}, "tfjs": {}}


def export(artifact: str, fmt: str, variant: str | None, gzip: int) -> StepResult:
    out = OutputSpec(role="model", artifact=artifact, path="x", publish=artifact, format=fmt, variant=variant)
    return StepResult(StepSpec(name=f"export[{artifact}]", kind=fmt, outputs=(out,)), BUILT, "", info={"gzip_bytes": gzip})


def classified(accuracy: float, name: str = "probabilities") -> dict:
    return {name: {"task": "classification", "accuracy": accuracy}}


def regressed(name: str, mae: float, rmse: float) -> dict:
    return {name: {"task": "regression", "mae": mae, "rmse": rmse}}


def bench(artifact: str, nbytes: int, *runtimes: tuple[str, float, float | dict], generated: bool = False) -> StepResult:
    """runtimes: (name, p50 ms, accuracy of the one classification output, or {output: metrics})."""
    figures = {
        name: {"threads": 1, "latency": {"p50_ms": p50, "p95_ms": p50 * 1.2, "p99_ms": p50 * 1.5},
               "throughput": {"samples_per_s": 1000 / p50, "batch_size": 32},
               "metrics": metrics if isinstance(metrics, dict) else classified(metrics)}
        for name, p50, metrics in runtimes
    }  # fmt: skip
    info = {"bytes": nbytes, "gzip_bytes": nbytes // 2, "generated": generated, "runtimes": figures}
    return StepResult(StepSpec(name=f"benchmark[{artifact}]", kind="benchmark"), CACHED, "", info=info)


def verify(artifact: str, status: str = BUILT, **figures) -> StepResult:
    info = {"top1_agreement": 0.99, "max_abs_diff": 0.01, "max_rel_diff": 0.5, "min_cosine": 0.999, "mean_abs_diff": 0.002, **figures}
    return StepResult(StepSpec(name=f"verify[{artifact}]", kind="verify"), status, "", info=info)


def build_result(int8_verify: str = BUILT) -> BuildResult:
    return BuildResult([
        export("saved_model", "saved_model", None, 150_000),
        export("tflite/int8", "tflite", "int8", 40_000),
        export("tfjs/uint8", "tfjs", "uint8", 36_000),
        verify("tflite/int8", int8_verify),
        verify("tfjs/uint8"),
        bench("saved_model", 250_000, ("TensorFlow", 0.25, 0.94)),
        bench("tflite/int8", 45_000, ("LiteRT", 0.004, 0.93)),
        bench("tfjs/uint8", 46_000, ("TF.js cpu", 0.9, 0.94), ("TF.js wasm", 0.15, 0.94)),
    ])  # fmt: skip


def test_rows_per_artifact_and_runtime_with_delta_against_the_saved_model():
    rows = report_rows(build_result(), NO_GATES)
    assert [(r["artifact"], r["runtime"]) for r in rows] == [
        ("saved_model", "TensorFlow"), ("tflite/int8", "LiteRT"), ("tfjs/uint8", "TF.js cpu"), ("tfjs/uint8", "TF.js wasm"),
    ]  # fmt: skip
    int8 = rows[1]
    assert int8["accuracy_delta"] == pytest.approx(-0.01)
    assert (int8["bytes"], int8["gzip_bytes"], int8["p50_ms"]) == (45_000, 22_500, 0.004)
    assert [r["verify"] for r in rows] == ["reference", "passed", "passed", "passed"]
    assert {r["gate"] for r in rows} == {"-"}
    assert int8["metrics"] == classified(0.93) and int8["metric_deltas"] == {"probabilities": {"accuracy": -0.01}}
    assert (int8["tasks"], int8["mae"], int8["generated"]) == ({"probabilities": "classification"}, None, False)
    assert (int8["top1_agreement"], int8["max_abs_diff"], int8["min_cosine"]) == (0.99, 0.01, 0.999)


def test_failed_verification_shows_in_the_report():
    rows = report_rows(build_result(int8_verify=FAILED), NO_GATES)
    assert rows[1]["verify"] == "failed"


def test_gate_limits_come_from_the_most_specific_key():
    gates = {"max_bytes": 100_000, "tflite": {"max_bytes": 50_000, "int8": {"max_bytes": 44_000}}}
    assert limits_for(gates, "tflite", "int8") == {"max_bytes": (44_000, "gates.tflite.int8.max_bytes")}
    assert limits_for(gates, "tflite", "float") == {"max_bytes": (50_000, "gates.tflite.max_bytes")}
    assert limits_for(gates, "tfjs", "uint8") == {"max_bytes": (100_000, "gates.max_bytes")}


def test_each_gate_limit_names_the_figure_the_limit_and_its_key():
    rows = report_rows(build_result(), {
        "min_accuracy": 0.935, "max_accuracy_drop": 0.005, "max_bytes": None, "max_p95_ms": None,
        "saved_model": {}, "tfjs": {"max_p95_ms": 0.5}, "tflite": {"int8": {"max_bytes": 44_999}},
    })  # fmt: skip
    by = {(r["artifact"], r["runtime"]): r for r in rows}
    assert by[("saved_model", "TensorFlow")]["gate"] == "passed"
    int8 = by[("tflite/int8", "LiteRT")]
    assert int8["gate"] == "failed: min_accuracy, max_accuracy_drop, max_bytes"
    assert int8["gate_problems"] == [
        "accuracy 0.9300 < 0.9350 (gates.min_accuracy)",
        "accuracy drop 0.0100 > 0.0050 (gates.max_accuracy_drop)",
        "size 45000 bytes > 44999 bytes (gates.tflite.int8.max_bytes)",
    ]
    assert by[("tfjs/uint8", "TF.js cpu")]["gate_problems"] == ["p95 1.08 ms > 0.5 ms (gates.tfjs.max_p95_ms)"]
    assert by[("tfjs/uint8", "TF.js wasm")]["gate"] == "passed"


def test_a_limit_on_a_figure_that_was_not_measured_fails():
    assert violations({"accuracy": None}, {"min_accuracy": (0.9, "gates.min_accuracy")}) == [
        ("min_accuracy", "accuracy was not measured (gates.min_accuracy 0.9)")
    ]


def test_report_files_parse_and_the_html_has_its_plots(tmp_path):
    rows = report_rows(build_result(), NO_GATES)
    write_report(tmp_path, rows, recipe="digits")
    record = json.loads((tmp_path / "report.json").read_text())
    assert record["status"] == "passed" and len(record["rows"]) == 4 and "p95_ms" in record["columns"]
    markdown = (tmp_path / "report.md").read_text()
    table, steps = markdown.split("## Step times")
    assert table.count("\n| ") == 5 and "| tflite/int8 | LiteRT | 45,000 |" in table
    assert steps.count("\n| ") == 4, "one row of step times per artifact"
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 2 and "Size vs accuracy" in page and "Latency at batch 1" in page


def test_plots_are_well_formed_svg():
    ET.fromstring(scatter_plot([(1, 90, "a"), (2, 95, "b<&>")], title="t", x_label="x", y_label="y", front=[1]))
    ET.fromstring(scatter_plot([(1, 90, "only")], title="t", x_label="x", y_label="y"))
    ET.fromstring(latency_chart([("a", 0.1, 0.2), ("b", None, 0.3)], title="t"))


def test_pareto_front_keeps_what_nothing_beats():
    # (size, accuracy): the smallest, the most accurate, and one in between are on the front.
    points = [(100, 0.90), (50, 0.80), (60, 0.95), (70, 0.94), (200, 0.96), (60, 0.95)]
    assert pareto_front(points) == {1, 2, 4, 5}


def test_sweep_rows_are_labelled_by_what_the_sweep_varied():
    jobs = [{"overrides": ["recipe=digits", "export.tflite.quantization=float"]},
            {"overrides": ["recipe=digits", "export.tflite.quantization=int8"]}]
    assert varying(jobs) == ["export.tflite.quantization"]


def write_rows(folder, rows):
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"rows": rows}))
    return folder


def test_diff_names_what_regressed_and_exits_1(tmp_path, capsys):
    row = {"artifact": "tflite/int8", "runtime": "LiteRT", "bytes": 45_000, "p50_ms": 0.004, "p95_ms": 0.005, "accuracy": 0.93}
    a = write_rows(tmp_path / "a", [row, dict(row, artifact="tflite/float", bytes=150_000)])
    b = write_rows(tmp_path / "b", [dict(row, bytes=46_000, p95_ms=0.0056, accuracy=0.92), dict(row, artifact="tfjs/uint8")])
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(a), str(b), "--p95"])  # p95 grew (+12%), p50 did not
    assert exit_code.value.code == 1
    err = capsys.readouterr().err
    assert "regression: tflite/int8 (LiteRT): bigger, slower, less accurate" in err
    with pytest.raises(SystemExit) as same:
        diff_main(["diff", str(a), str(a), "--json"])
    assert same.value.code == 0
    assert json.loads(capsys.readouterr().out)[0]["regressions"] == []


def test_diff_of_a_folder_without_a_report_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(tmp_path), str(tmp_path)])
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.strip() == f"tfbuild-report: error: {tmp_path}: no report.json (pass a run folder or its report.json)"


GOOD_ROW = {"artifact": "tflite/int8", "runtime": "LiteRT", "bytes": 45_000, "p50_ms": 0.004, "p95_ms": 0.005, "accuracy": 0.93}
MALFORMED_REPORTS = {
    "not JSON": b"{rows: oops",
    "binary garbage": bytes(range(256)),
    "not an object": b"[1, 2]",
    "rows not a list": b'{"rows": {"a": 1}}',
    "no rows": b'{"recipe": "digits"}',
    "a row not an object": b'{"rows": [5]}',
    "a row missing artifact": json.dumps({"rows": [{k: v for k, v in GOOD_ROW.items() if k != "artifact"}]}).encode(),
    "a row missing runtime": json.dumps({"rows": [{k: v for k, v in GOOD_ROW.items() if k != "runtime"}]}).encode(),
    "a row missing a figure": json.dumps({"rows": [{k: v for k, v in GOOD_ROW.items() if k != "p95_ms"}]}).encode(),
    "a figure of the wrong type": json.dumps({"rows": [dict(GOOD_ROW, bytes="45 KB")]}).encode(),
    "a boolean figure": json.dumps({"rows": [dict(GOOD_ROW, accuracy=True)]}).encode(),
    "artifact not a string": json.dumps({"rows": [dict(GOOD_ROW, artifact=["a"])]}).encode(),
    "runtime unhashable": json.dumps({"rows": [dict(GOOD_ROW, runtime={"a": 1})]}).encode(),
    "NaN figure": b'{"rows": [{"artifact": "a", "runtime": null, "bytes": NaN, "p50_ms": 1, "p95_ms": 1, "accuracy": 1}]}',
}


@pytest.mark.parametrize("content", MALFORMED_REPORTS.values(), ids=MALFORMED_REPORTS.keys())
def test_diff_of_a_malformed_report_is_exit_2_in_one_line(tmp_path, capsys, content):
    good = write_rows(tmp_path / "good", [GOOD_ROW])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_bytes(content)
    for a, b in ((good, tmp_path / "bad"), (tmp_path / "bad" / "report.json", good)):
        with pytest.raises(SystemExit) as exit_code:
            diff_main(["diff", str(a), str(b)])
        err = capsys.readouterr().err
        assert exit_code.value.code == 2 and err.startswith("tfbuild-report: error: ") and err.count("\n") == 1, err
        assert str(tmp_path / "bad" / "report.json") in err


def test_diff_of_a_folder_named_report_json_is_exit_2(tmp_path, capsys):
    (tmp_path / "run" / "report.json").mkdir(parents=True)
    for target in (tmp_path / "run", tmp_path / "run" / "report.json"):
        with pytest.raises(SystemExit) as exit_code:
            diff_main(["diff", str(target), str(target)])
        assert exit_code.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_diff_accepts_null_figures_and_runtime(tmp_path, capsys):
    row = dict(GOOD_ROW, runtime=None, p50_ms=None, p95_ms=None)
    a = write_rows(tmp_path / "a", [row])
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(a), str(a)])
    assert exit_code.value.code == 0
