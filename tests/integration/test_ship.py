"""Shipping to browsers and servers, as a user runs it: `target=browser` verifies every TF.js
quantization in headless Chromium on webgl, wasm and cpu, builds a web bundle whose page
shows the reference's predictions, and `export.formats=[serving]` leaves a TF Serving folder
whose configs parse and whose warmup records replay. One build (the installed `tfbuild`) is
shared by the tests; corrupted bundles are tested where they are built (test_serving.py,
test_web.py, test_tfjs_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild
from tests.integration.conftest import require_browser
from tfbuild.runtimes.chromium import chromium_problem

pytestmark = pytest.mark.slow
QUANTIZATIONS = ("none", "float16", "uint8", "uint16")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A browser build of digits with every TF.js variant verified on three backends in
    Chromium (and, for comparison, in Node), plus a serving bundle."""
    require_browser(chromium_problem())
    folder = tmp_path_factory.mktemp("ship")
    run = folder / "run"
    run_tfbuild(
        "recipe=digits", "target=browser", "export.formats=[serving]",
        f"export.tfjs.quantization=[{','.join(QUANTIZATIONS)}]",
        "verify.browser_backends=[webgl,wasm,cpu]", "verify.tfjs_backends=[wasm]",
        "export.serving.version=3", "export.serving.warmup_samples=5",
        *TINY, f"cache.dir={folder / 'cache'}", f"hydra.run.dir={run}",
        cwd=folder, check=True,
    )  # fmt: skip
    return run, json.loads((run / "build.json").read_text())


def _verify_info(record: dict, artifact: str) -> dict:
    (step,) = [s for s in record["steps"] if s["name"] == f"verify[{artifact}]"]
    assert step["status"] == "built", step
    return step["info"]


def test_every_tfjs_quantization_is_verified_in_chromium_on_three_backends(shipped):
    _, record = shipped
    for quantization in QUANTIZATIONS:
        runtimes = _verify_info(record, f"tfjs/{quantization}")["runtimes"]
        in_browser = {label.split()[2] for label in runtimes if " in Chromium " in label}
        assert in_browser == {"webgl", "wasm", "cpu"}, runtimes.keys()
        assert any(label.startswith("TF.js 4.22.0 wasm") and "Chromium" not in label for label in runtimes)


def test_the_report_has_one_row_per_browser_backend(shipped):
    run, _ = shipped
    rows = json.loads((run / "report.json").read_text())["rows"]
    timed = {row["runtime"].split()[2] for row in rows if row["artifact"] == "tfjs/uint8"}
    assert timed == {"webgl", "wasm"}  # benchmark.browser_backends of the browser target
    assert all(row["p95_ms"] > 0 for row in rows if row["artifact"] == "tfjs/uint8")


def test_the_web_bundle_is_published_and_its_page_matched_the_reference(shipped):
    run, record = shipped
    bundle = run / "web" / "uint8"
    assert {"index.html", "app.js", "tf.min.js", "samples.json"} <= {p.name for p in bundle.iterdir()}
    assert (bundle / "model" / "model.json").is_file()
    info = _verify_info(record, "web/uint8")
    assert info["top1_agreement"] == 1.0
    assert {label.split()[-1] for label in info["runtimes"]} >= {"webgl", "wasm"}


def test_the_serving_bundle_is_a_tf_serving_model_folder(shipped):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    run, record = shipped
    serving = run / "serving"
    config = text_format.Parse((serving / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "digits" and model.base_path == "/models/digits"
    assert (serving / "digits" / "3" / "saved_model.pb").is_file()
    assert (serving / "digits" / "3" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    request = json.loads((serving / "request.json").read_text())
    assert request["signature_name"] == "serving_default" and len(request["instances"]) == 3
    runtimes = _verify_info(record, "serving")["runtimes"]
    assert any(label.startswith("warmup replay (5 records)") for label in runtimes), runtimes.keys()


def test_a_missing_chromium_stops_planning_with_one_line(tmp_path):
    result = run_tfbuild("recipe=digits", "target=browser", "verify.chromium=/no/such/chromium", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tfbuild: error: verify.chromium: Chromium not found: `/no/such/chromium`")
    assert "apt-get install chromium" in line and "verify.browser_backends=[]" in line
    assert not (tmp_path / "outputs" / "cache").exists()
