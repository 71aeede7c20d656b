"""The report's int8 quantization section, from step results shaped as tflite_layers and
tflite_repair record them, without TensorFlow."""

from __future__ import annotations

import json

from tfbuild.plan import StepSpec
from tfbuild.report import write_report
from tfbuild.report_quantization import quantization_facts, quantization_html, quantization_markdown
from tfbuild.runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, BuildResult, StepResult

DIGEST = "abcdef123456" + "0" * 52
HIDDEN = "model/hidden/MatMul;model/hidden/Relu;model/hidden/BiasAdd"
OUT = "model/out/MatMul;model/out/BiasAdd"


def layer_row(rank: int, op: str, layer: str, rel: float, op_type: str = "FULLY_CONNECTED") -> dict:
    return {"rank": rank, "op": op, "op_type": op_type, "layer": layer, "scale": 1.86, "zero_point": -128,
            "range_min": 0.0, "range_max": 474.9, "rmse_over_scale": 0.259, "rel_error": rel,
            "max_abs_error": 1.87}  # fmt: skip


def layers_info(worst: list[dict] | None = None) -> dict:
    return {
        "ops": 7,
        "worst": worst or [layer_row(1, HIDDEN, "hidden", 0.375), layer_row(2, OUT, "out", 0.021),
                           layer_row(3, "model/Softmax", "", 0.004, "SOFTMAX")],
        "beyond_rounding": 1,
        "calibration": {"samples": 100, "split": "train", "sha256": DIGEST},
        "summary": "worst: hidden (FULLY_CONNECTED) loses 38% of its output, rmse/scale 0.26",
    }  # fmt: skip


def trial(n: int, added: str, value: float, meets: bool, nbytes: int) -> dict:
    return {"float_ops": n, "added": added, "output": "probs", "metric": "accuracy", "value": value,
            "reference": 0.95, "drop": round(0.95 - value, 6), "bytes": nbytes, "meets": meets}  # fmt: skip


def repair_info(bound: float | None = 0.01) -> dict:
    trials = [trial(0, "", 0.86, False, 5440), trial(3, "model/Softmax", 0.95, True, 13000),
              trial(1, HIDDEN, 0.93, False, 9000), trial(2, OUT, 0.95, True, 11752)]  # fmt: skip
    return {
        "max_metric_drop": bound, "split": "validation", "samples": 180,
        "reference": {"output": "probs", "metric": "accuracy", "value": 0.95},
        "full_int8": {"output": "probs", "metric": "accuracy", "value": 0.86, "drop": 0.09, "bytes": 5440, "p50_ms": 0.004},
        "chosen": {"output": "probs", "metric": "accuracy", "value": 0.95, "drop": 0.0, "bytes": 11752, "p50_ms": 0.006,
                   "float_ops": [HIDDEN, OUT]},
        "quantized_ops": 3, "trials": trials if bound is not None else trials[:1] + trials[-1:],
        "summary": "2 of 3 ops in float",
    }  # fmt: skip


def step(kind: str, status: str, info: dict) -> StepResult:
    return StepResult(StepSpec(name=f"{kind}[int8]", kind=kind), status, "", info=info)


def build(layers_status: str = BUILT, repair_status: str = BUILT, bound: float | None = 0.01) -> BuildResult:
    # A step that did not run records no info.
    ran = (BUILT, CACHED)
    return BuildResult([
        StepResult(StepSpec(name="export[tflite/int8]", kind="tflite"), BUILT, ""),
        step("tflite_layers", layers_status, layers_info() if layers_status in ran else {}),
        step("tflite_repair", repair_status, repair_info(bound) if repair_status in ran else {}),
    ])  # fmt: skip


def test_facts_are_the_steps_info_and_null_where_a_step_did_not_run():
    facts = quantization_facts(build())
    assert facts == {"layers": layers_info(), "repair": repair_info()}
    assert quantization_facts(build(CACHED, NOT_NEEDED)) == {"layers": layers_info(), "repair": None}
    assert quantization_facts(BuildResult([])) == {"layers": None, "repair": None}


def test_markdown_worst_layer_first_calibration_cost_and_search_in_order():
    md = quantization_markdown(quantization_facts(build()))
    assert "## int8 quantization" in md
    assert "Worst layers (of 7 quantized ops; full list in tflite/int8/layers.csv)" in md
    assert md.index("| 1 | hidden | FULLY_CONNECTED | 0..474.9 | 0.26 | 37.5% |") < md.index("| 2 | out |")
    assert "| 3 | SOFTMAX | SOFTMAX |" in md  # no layer in the name: the op type stands in
    assert HIDDEN not in md  # full op names would break the table's layout
    assert "rmse/scale ≈ 0.29 is rounding alone" in md
    assert "calibrated on 100 samples of the train split (sha256 abcdef123456…)" in md
    assert "| SavedModel (float) | 95.00% | - | - | - |" in md
    assert "| full int8 | 86.00% | 9.00 pp | 5.3 | 0.0040 |" in md
    assert "| int8, 2 ops in float | 95.00% | 0.00 pp | 11.5 | 0.0060 |" in md
    assert "Kept in float (2 of 3 quantized ops): hidden, out." in md
    assert "max_metric_drop 0.01 on the validation split, 180 samples" in md
    search = [line for line in md.splitlines() if line.endswith(("✓ |", "✗ |"))]
    assert [line.split(" | ")[:2] for line in search] == [["| 0", "-"], ["| 3", "model/Softmax"], ["| 1", "hidden"], ["| 2", "out"]]
    assert [line[-3] for line in search] == ["✗", "✓", "✗", "✓"]


def test_html_has_the_same_facts_with_full_op_names_in_titles():
    page = quantization_html(quantization_facts(build()))
    assert page.startswith('<section class="quantization">')
    assert page.index(">hidden<") < page.index(">out<")
    assert f'title="{HIDDEN}"' in page
    assert "abcdef123456…" in page and DIGEST not in page
    assert ">full int8<" in page and ">int8, 2 ops in float<" in page
    assert page.index("9.00 pp") < page.index("0.00 pp")
    assert [page.index(f'title="{op}"', page.index("Search")) for op in ("model/Softmax", HIDDEN, OUT)] == sorted(
        page.index(f'title="{op}"', page.index("Search")) for op in ("model/Softmax", HIDDEN, OUT))
    assert page.count('class="text passed">✓') == 2 and page.count('class="text failed">✗') == 2


def test_an_explicit_float_set_has_no_search_table():
    facts = quantization_facts(build(bound=None))
    md, page = quantization_markdown(facts), quantization_html(facts)
    assert "export.tflite.int8.float_layers" in md and "Search" not in md and "Search" not in page
    assert "| int8, 2 ops in float |" in md


def test_nothing_when_the_steps_are_absent_or_did_not_run():
    for result in (BuildResult([]), build(NOT_NEEDED, NOT_NEEDED), build(FAILED, SKIPPED)):
        facts = quantization_facts(result)
        assert quantization_markdown(facts) == "" and quantization_html(facts) == ""
    assert quantization_markdown(None) == "" and quantization_html(None) == ""


def test_only_the_ran_step_shows():
    facts = quantization_facts(build(BUILT, NOT_NEEDED))
    md = quantization_markdown(facts)
    assert "Worst layers" in md and "cost and benefit" not in md


def test_hostile_names_are_escaped():
    hostile = '<script>alert("x")</script>'
    facts = {"layers": layers_info([layer_row(1, hostile, hostile, 0.5, hostile)]), "repair": repair_info()}
    facts["repair"]["chosen"]["float_ops"] = [hostile]
    facts["repair"]["trials"][1]["added"] = hostile
    page = quantization_html(facts)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_write_report_records_and_renders_the_section(tmp_path):
    facts = quantization_facts(build())
    write_report(tmp_path, [], recipe="x", quantization=facts)
    record = json.loads((tmp_path / "report.json").read_text())
    assert record["quantization"] == {"layers": layers_info(), "repair": repair_info()}
    assert "## int8 quantization" in (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert '<section class="quantization">' in page and page.rstrip().endswith("</html>")


def test_write_report_without_quantization_keeps_the_key_null(tmp_path):
    write_report(tmp_path, [], recipe="x")
    record = json.loads((tmp_path / "report.json").read_text())
    assert record["quantization"] == {"layers": None, "repair": None}
    assert "int8 quantization" not in (tmp_path / "report.md").read_text()
