"""The web bundle, end to end: a real model converted by the real tfjs step, bundled by the web
step, served as it is from 127.0.0.1 and opened in Debian's Chromium, where the page runs real
TF.js on webgl (SwiftShader), wasm and cpu. No part is mocked.

Without Chromium (or Node.js and `make setup`) the browser tests skip with the reason here
(pytest -ra); in CI (env CI set) they fail instead: CI must verify what users open.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from tfbuild.agreement import compare_outputs, violations
from tfbuild.datasets.split import ArraySpec, Split, SplitWriter
from tfbuild.formats.base import PlanContext
from tfbuild.formats.tfjs import TOLERANCES
from tfbuild.formats.web import WEB, WebStep
from tfbuild.formats.web.bundle import PAGE_FILES, RUNTIME_FILES, write_bundle
from tfbuild.formats.web.check import RESULTS, SHOWN, check_page
from tfbuild.runtimes.chromium import chromium_problem
from tfbuild.runtimes.page import PageError, open_page
from tfbuild.runtimes.tfjs_node import NODE_MODULES, node_problem
from tfbuild.steps.base import StepContext

from tests.integration.conftest import require_browser
from tests.integration.multi_io import TWO_IO_TARGETS, save_serving, step_context, two_io_inputs, two_io_model

pytestmark = pytest.mark.slow
BROWSER_PROBLEM = node_problem() or chromium_problem(without="the web bundle tests open its page in it")
SAMPLES = 6  # bundled; the test split has more, as a real one does
CLASSES = [f"class {i}" for i in range(10)]
BACKENDS = ("webgl", "wasm", "cpu")


@pytest.fixture(scope="module")
def browser():
    require_browser(BROWSER_PROBLEM)


def labelled_split(folder: Path) -> Path:
    """The two-input, two-output model's split, with labels and class names."""
    counts = {"train": 4, "validation": 4, "test": 10}
    specs = {"image": ArraySpec((8, 8, 1), "float32"), "meta": ArraySpec((3,), "float32")}
    writer = SplitWriter(folder, specs, TWO_IO_TARGETS, counts, class_names={"digit": CLASSES})
    rng = np.random.default_rng(0)
    for seed, (part, n) in enumerate(counts.items()):
        targets = {"digit": rng.integers(0, 10, n), "size": rng.normal(size=(n, 1)).astype(np.float32)}
        writer.write(part, np.arange(n), two_io_inputs(n, seed), targets)
    writer.close()
    return folder


def build_bundle(built: SimpleNamespace, out: Path) -> dict:
    """The web step as the runner runs it: the planned step's params and keyed files."""
    ctx = StepContext(spec=built.step, params=built.step.params, inputs={"model": built.tfjs, "data": built.split},
                      files={k: Path(v) for k, v in built.step.files.items()}, outputs={"bundle": out})  # fmt: skip
    return WebStep().run(ctx)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The float model's bundle, the folders it came from, and the SavedModel's outputs on the
    bundled samples (the reference the page is held to)."""
    from tfbuild.runtimes.savedmodel import run_saved_model
    from tfbuild.formats.tfjs import TfjsStep

    root = tmp_path_factory.mktemp("web")
    save_serving(two_io_model(), root / "saved_model")
    TfjsStep().run(step_context({"quantization": "none"}, {"saved_model": root / "saved_model"}, root / "tfjs"))
    from tfbuild.schema import current_schema

    cfg = OmegaConf.structured(current_schema())
    cfg.export.web.samples = SAMPLES
    _, step = WEB.plan(PlanContext(cfg, "saved_model", {}, "two heads"), "none")
    built = SimpleNamespace(root=root, tfjs=root / "tfjs", split=labelled_split(root / "split"), step=step)
    built.info = build_bundle(built, root / "bundle")
    built.bundle = root / "bundle"
    built.inputs = Split(built.split).inputs("test")
    built.reference = run_saved_model(root / "saved_model", {k: v[:SAMPLES] for k, v in built.inputs.items()})
    return built


@pytest.fixture(scope="module")
def shown(built, browser):
    """The bundle's page, opened once as a user would (what it shows, what it computed)."""
    return open_page(built.bundle, results=RESULTS, collect=SHOWN, timeout_s=120)


def test_the_bundle_is_the_page_tfjs_the_model_and_the_samples(built):
    files = sorted(str(p.relative_to(built.bundle)) for p in built.bundle.rglob("*") if p.is_file())
    model = sorted(f"model/{p.name}" for p in built.tfjs.iterdir())
    assert files == sorted([*PAGE_FILES, *RUNTIME_FILES, *model, "samples.json", "samples.bin"])
    for name, source in RUNTIME_FILES.items():  # byte copies of the pinned npm packages
        assert (built.bundle / name).read_bytes() == (NODE_MODULES / source).read_bytes()
    for name in model:
        assert (built.bundle / name).read_bytes() == (built.tfjs / Path(name).name).read_bytes()
    assert built.info["samples"] == SAMPLES and built.info["outputs"] == {"digit": "classification", "size": "regression"}
    meta = json.loads((built.bundle / "samples.json").read_text())
    digit, size = meta["outputs"]
    labels = Split(built.split).targets("test", SAMPLES)
    assert digit["expected"] == labels["digit"].tolist() and digit["classes"] == CLASSES
    np.testing.assert_array_equal(np.float32(size["expected"]), labels["size"])
    assert [i["image"] for i in meta["inputs"]] == [True, False]  # (8, 8, 1) is drawn; (3,) is not


def test_the_page_names_nothing_outside_its_folder(built):
    """Our files use relative URLs only; the vendored TF.js is checked in the browser (a
    request leaving the folder's origin is refused and fails the page)."""
    for name in [*PAGE_FILES, "samples.json", "model/model.json"]:
        text = (built.bundle / name).read_text()
        assert "http://" not in text and "https://" not in text, name
        assert str(built.root) not in text and "/work/" not in text and 'src="/' not in text, name


def test_rebuilding_gives_a_byte_identical_bundle(built, tmp_path):
    build_bundle(built, tmp_path / "again")
    first = {p.relative_to(built.bundle): p.read_bytes() for p in built.bundle.rglob("*") if p.is_file()}
    again = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}
    assert first == again


def test_generated_inputs_bundle_without_labels(built, tmp_path):
    from tfbuild.datasets.generated import write_generated_split

    split = write_generated_split(tmp_path / "split", {"image": ((8, 8, 1), "float32"), "meta": ((3,), "float32")}, 4, 0)
    write_bundle(tmp_path / "bundle", built.tfjs, split, {}, samples=SAMPLES, title="t", variant="none",
                 task="regression", task_outputs={"digit": "classification"})  # fmt: skip
    meta = json.loads((tmp_path / "bundle" / "samples.json").read_text())
    assert meta["samples"] == 4
    assert [(o["name"], o["task"], o["expected"]) for o in meta["outputs"]] == [
        ("digit", "classification", None), ("size", "regression", None)]  # fmt: skip


def test_the_page_shows_the_references_predictions_on_every_backend(built, shown):
    assert shown.problems() == [] and not shown.timed_out
    assert shown.results["status"] == "done" and shown.results["error"] is None
    assert shown.results["tfjs"] == "4.22.0" and shown.results["samples"] == SAMPLES
    classes = built.reference["digit"].argmax(axis=1)
    for backend in BACKENDS:
        assert shown.results["backends"][backend]["latency_ms"] > 0
        cells = {(int(c["sample"]), c["output"]): c for c in shown.collected if c["backend"] == backend}
        assert len(cells) == 2 * SAMPLES
        for s in range(SAMPLES):
            digit, size = cells[s, "digit"], cells[s, "size"]
            assert digit["prediction"] == str(classes[s]) and digit["text"].startswith(CLASSES[classes[s]])
            # Regression values are shown to 4 significant digits.
            assert float(size["prediction"]) == pytest.approx(float(built.reference["size"][s, 0]), rel=1e-3, abs=1e-6)


def test_verify_holds_each_backend_to_the_reference(built, browser):
    # verify gets every test input; the page's rows are the first SAMPLES of them.
    runs = WEB.verify(built.bundle, built.inputs, {"backends": ["webgl", "wasm"], "node": "node"})
    assert sorted(label.rsplit(" ", 1)[1] for label in runs) == sorted(BACKENDS)
    label = next(iter(runs))
    assert label.startswith("Chromium ") and " web page, TF.js 4.22.0 " in label
    for outputs in runs.values():
        assert {k: (v.shape, v.dtype) for k, v in outputs.items()} == {
            "digit": ((SAMPLES, 10), np.float32), "size": ((SAMPLES, 1), np.float32)}  # fmt: skip
        figures = compare_outputs(outputs, built.reference, {"digit": "classification", "size": "regression"})
        assert violations(figures, TOLERANCES["none"]) == []


def test_altered_weights_show_other_outputs_and_fail_verification(built, browser, tmp_path):
    bundle = shutil.copytree(built.bundle, tmp_path / "bundle")
    (shard,) = (bundle / "model").glob("*.bin")
    data = bytearray(shard.read_bytes())
    offset = 0  # float32 weights negated in place; int32 shape constants left as they are
    for weight in json.loads((bundle / "model" / "model.json").read_text())["weightsManifest"][0]["weights"]:
        size = 4 * int(np.prod(weight["shape"]))
        if weight["dtype"] == "float32":
            data[offset : offset + size] = (-np.frombuffer(data, np.float32, size // 4, offset)).tobytes()
        offset += size
    assert offset == len(data)
    shard.write_bytes(bytes(data))
    runs = WEB.verify(bundle, built.inputs, {"backends": ["wasm"]})
    for outputs in runs.values():
        figures = compare_outputs(outputs, built.reference, {"digit": "classification", "size": "regression"})
        assert violations(figures, TOLERANCES["none"]), figures


def test_a_missing_wasm_binary_is_one_line_naming_the_backend_and_the_file(built, browser, tmp_path):
    bundle = shutil.copytree(built.bundle, tmp_path / "bundle")
    for binary in bundle.glob("*.wasm"):
        binary.unlink()
    with pytest.raises(PageError) as caught:
        WEB.verify(bundle, built.inputs, {"backends": ["webgl", "wasm"]})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("web page in Chromium ")
    assert "backend wasm did not run" in message and ".wasm (HTTP 404)" in message


def test_samples_other_than_the_first_test_rows_are_refused_before_opening(built):
    shifted = {k: v[1:] for k, v in built.inputs.items()}
    with pytest.raises(PageError, match="input 'image' is not the first 6 test samples"):
        check_page(built.bundle, shifted, ["wasm"])


def test_a_page_past_its_time_limit_is_one_line(built, browser):
    with pytest.raises(PageError) as caught:
        check_page(built.bundle, built.inputs, ["wasm"], timeout_s=0.2)
    message = str(caught.value)
    assert "\n" not in message and ("not done within" in message or "timeout" in message.lower()), message


def test_a_page_that_reaches_for_a_cdn_is_refused_and_reported(browser, tmp_path):
    """What guards the vendored TF.js too: nothing may leave the folder's origin."""
    (tmp_path / "index.html").write_text(
        '<!doctype html><link rel="icon" href="data:,">'
        '<script src="https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/tf.min.js"></script>'
        "<script>window.tfbuildResults = {done: true, tf: typeof tf}</script>"
    )
    run = open_page(tmp_path, results=RESULTS, timeout_s=30)
    assert run.results == {"done": True, "tf": "undefined"}  # refused, so never loaded
    assert run.offsite_requests == ["https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/tf.min.js"]
    assert "request to another origin (refused): https://cdn.jsdelivr.net/" in run.problems()[0]
