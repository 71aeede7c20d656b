"""TF.js in real headless Chromium (webgl on SwiftShader, wasm, cpu): the browser runtime's
contract, on a tiny two-input two-output model converted by the real tfjs step into every
TF.js quantization, against the SavedModel and against TF.js in Node.

Without Chromium (or Node and `make setup`) these tests skip with the reason (pytest -ra);
in CI (env CI set) they fail instead, so a CI image that lost its browser cannot pass green.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tfbuild.formats.tfjs import TOLERANCES
from tfbuild.runtimes.chromium import chromium_problem
from tfbuild.runtimes.processes import marked_pids
from tfbuild.runtimes.tfjs_browser import (
    BROWSER_BACKENDS,
    SECONDS_PER_MB,
    BrowserSession,
    browser_version,
    run_tfjs_browser,
)
from tfbuild.runtimes.tfjs_node import TfjsRuntimeError, node_problem, run_tfjs, time_limit
from tfbuild.runtimes.timing import Protocol

from tests.integration.conftest import require_browser
from tests.integration.multi_io import save_serving, step_context, two_io_inputs, two_io_model

PROBLEM = chromium_problem() or node_problem()
VARIANTS = ("none", "float16", "uint8", "uint16")
BACKENDS = ["webgl", "wasm", "cpu"]
# The tfjs format's default tolerances: max_abs_diff where it sets one, else top-1 agreement
# of the class output (none 1e-4, float16 and uint16 1e-2; uint8 top-1 0.97).
MAX_ABS = {v: t["max_abs_diff"] for v, t in TOLERANCES.items() if "max_abs_diff" in t}
MIN_TOP1 = {v: t["min_top1_agreement"] for v, t in TOLERANCES.items() if "max_abs_diff" not in t}
SAMPLES = 300  # more than one batch (256 at a time for 8x8 inputs)


@pytest.fixture(scope="module")
def browser():
    """Chromium, Node and puppeteer-core are there; else skip, or fail under CI."""
    require_browser(PROBLEM)


@pytest.fixture(scope="module")
def converted(browser, tmp_path_factory):
    """({variant: TF.js folder}, inputs, SavedModel outputs on them); one conversion each."""
    from tfbuild.runtimes.savedmodel import run_saved_model
    from tfbuild.formats.tfjs import TfjsStep

    root = tmp_path_factory.mktemp("tfjs-browser")
    save_serving(two_io_model(), root / "saved_model")
    folders = {}
    for variant in VARIANTS:
        folders[variant] = root / variant
        TfjsStep().run(step_context({"quantization": variant}, {"saved_model": root / "saved_model"}, folders[variant]))
    x = two_io_inputs(SAMPLES, seed=3)
    return folders, x, run_saved_model(root / "saved_model", x)


@pytest.fixture(scope="module")
def session(browser, tmp_path_factory):
    """One Chromium for the module's parity runs (what a verify step over variants can do)."""
    with BrowserSession(workdir=tmp_path_factory.mktemp("session")) as shared:
        yield shared


def leftovers(marker: Path | str) -> list[str]:
    """Processes whose command line contains `marker` (a run's own folder), pgrep's view."""
    if shutil.which("pgrep") is None:
        return [str(pid) for pid in marked_pids(str(marker))]
    done = subprocess.run(["pgrep", "-f", "--", str(marker)], capture_output=True, text=True)
    return done.stdout.split()


def top1(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_on_webgl_wasm_and_cpu_like_the_saved_model_and_node(converted, session, variant):
    folders, x, reference = converted
    run = session.run(folders[variant], x, BACKENDS)
    assert run.version == "4.22.0" and run.batch_size == 256 and run.browser.split("/")[0] in {"HeadlessChrome", "Chrome"}
    for backend in BACKENDS:
        outputs = run.outputs[backend]
        assert {k: (v.shape, v.dtype) for k, v in outputs.items()} == {
            "digit": ((SAMPLES, 10), np.float32), "size": ((SAMPLES, 1), np.float32),
        }  # fmt: skip
        if variant in MAX_ABS:
            for name in ("digit", "size"):
                np.testing.assert_allclose(outputs[name], reference[name], atol=MAX_ABS[variant], rtol=0)
        else:
            assert top1(outputs["digit"], reference["digit"]) >= MIN_TOP1[variant]
        assert run.timings[backend]["predict_ms"] > 0
    # webgl ran on a real WebGL context (SwiftShader here), wasm on its SIMD binary.
    webgl = run.backend_info["webgl"]
    assert webgl["renderer"] and webgl["webgl_version"] in (1, 2)
    assert run.backend_info["wasm"]["simd"] in (True, False)
    # The same TF.js kernels as Node's wasm: the browser's engine changes nothing that matters.
    node = run_tfjs(folders[variant], x, ["wasm"])
    for name in ("digit", "size"):
        np.testing.assert_allclose(run.outputs["wasm"][name], node.outputs["wasm"][name], atol=1e-6, rtol=0)
        np.testing.assert_allclose(run.outputs["webgl"][name], node.outputs["wasm"][name], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_session_keeps_one_chromium_across_models_and_errors_and_leaves_nothing(converted, tmp_path):
    folders, x, reference = converted
    few = {name: v[:20] for name, v in x.items()}
    missing = shutil.copytree(folders["none"], tmp_path / "missing")
    (missing / "group1-shard1of1.bin").unlink()
    work = tmp_path / "work"
    with BrowserSession(workdir=work) as session:
        first = session.run(folders["float16"], few, ["wasm"])
        browsers = set(leftovers(f"--user-data-dir={work}"))
        with pytest.raises(TfjsRuntimeError, match="listed in model.json is missing"):
            session.run(missing, few, ["wasm"])
        after = session.run(folders["none"], few, ["wasm"])  # a failed model spoils nothing
        assert set(leftovers(f"--user-data-dir={work}")) & browsers, "the same Chromium ran all three"
    np.testing.assert_allclose(first.outputs["wasm"]["digit"], reference["digit"][:20], atol=1e-2)
    np.testing.assert_allclose(after.outputs["wasm"]["digit"], reference["digit"][:20], atol=1e-4)
    assert leftovers(work) == []
    with pytest.raises(TfjsRuntimeError, match="this browser session has ended"):
        session.run(folders["none"], few, ["wasm"])


@pytest.mark.slow
def test_a_killed_python_leaves_no_chromium(browser, tmp_path):
    # Python killed outright (SIGKILL: no finally, no atexit) while its session is open.
    work = tmp_path / "work"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from tfbuild.runtimes.tfjs_browser import BrowserSession
        session = BrowserSession(workdir={str(work)!r})
        print("open", flush=True)
        input()
        os.kill(os.getpid(), signal.SIGKILL)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.stdout.readline().strip() == "open"
    chromium = f"--user-data-dir={work}"  # Chromium's processes; the Node driver's differ
    deadline = time.monotonic() + 30
    while not leftovers(chromium) and time.monotonic() < deadline:  # Chromium is starting
        time.sleep(0.1)
    assert leftovers(chromium), "Chromium never started"
    child.stdin.write("\n")
    child.stdin.flush()
    child.wait(timeout=30)
    deadline = time.monotonic() + 10  # the driver sees its stdin close, Chromium its pipe
    while leftovers(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(work) == []


@pytest.mark.slow
def test_bench_times_batch_1_and_the_bench_batch_on_each_backend(converted):
    folders, x, _ = converted
    run = run_tfjs_browser(folders["none"], x, ["wasm", "webgl"], bench=(Protocol(1, 3, 0.0, rounds=3), 4))
    for backend in ("wasm", "webgl"):
        rounds = run.latency_rounds[backend], run.batch_rounds[backend]
        assert [len(r) for r in rounds[0]] == [len(r) for r in rounds[1]] == [1, 1, 1]  # 3 rounds of 1 call each
        latency, batch = [ms for r in rounds[0] for ms in r], [ms for r in rounds[1] for ms in r]
        assert all(0 <= ms < 10_000 for ms in latency + batch) and max(latency) > 0
        assert run.timings[backend]["load_ms"] > 0
    assert run.timeout_s > 60


@pytest.mark.slow
def test_altered_weights_change_the_outputs(converted, tmp_path):
    folders, x, reference = converted
    altered = shutil.copytree(folders["none"], tmp_path / "altered")
    shard = next(altered.glob("*.bin"))
    data = bytearray(shard.read_bytes())
    # Every 16th float32 (little-endian: byte 3 holds the sign and high exponent bits) x4 or /4.
    data[3::64] = bytes(b ^ 0x01 for b in data[3::64])
    shard.write_bytes(bytes(data))
    run = run_tfjs_browser(altered, x, ["wasm", "webgl"])
    for backend in ("wasm", "webgl"):
        diff = max(float(np.abs(run.outputs[backend][n] - reference[n]).max()) for n in ("digit", "size"))
        assert diff > 1e-3, backend


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", "its weight shards hold 5134 bytes but model.json's weightsManifest needs 10268"),
        ("remove", "group1-shard1of1.bin listed in model.json is missing (HTTP 404)"),
        ("shape", "The shape of dict['image'] provided in model.execute(dict) must be [-1,8,8,1], but was [5,8,8,2]"),
    ],
)
def test_a_broken_artifact_is_one_line_naming_it(converted, tmp_path, damage, expected):
    folders, x, _ = converted
    broken = shutil.copytree(folders["none"], tmp_path / "broken")
    shard = broken / "group1-shard1of1.bin"
    feeds = {name: v[:5] for name, v in x.items()}
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:5134])
    elif damage == "remove":
        shard.unlink()
    else:
        feeds["image"] = np.zeros((5, 8, 8, 2), np.float32)
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs_browser(broken, feeds, ["wasm"])
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"browser_run: ") and str(broken) in message
    assert expected in message


@pytest.mark.slow
def test_a_hung_run_ends_at_its_time_limit_with_one_line_and_no_chromium_left(converted, tmp_path):
    folders, x, _ = converted
    hung = tmp_path / "hung"
    hung.mkdir()
    shutil.copy(folders["none"] / "model.json", hung)
    # A shard that never answers (the server blocks opening a FIFO): a stalled disk or share.
    os.mkfifo(hung / "group1-shard1of1.bin")
    try:
        with pytest.raises(TfjsRuntimeError) as caught:
            run_tfjs_browser(hung, {n: v[:5] for n, v in x.items()}, ["wasm"], timeout_s=6, workdir=tmp_path / "work")
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"TF.js in Chromium (wasm) did not finish 5 samples of {hung} within 6 s")
        # It hung with Chromium up (fetching the shard), and that Chromium was ended.
        assert "; it was at checking the model files" in message and "verify.browser_backends=[]" in message
        assert leftovers(tmp_path / "work") == []
    finally:  # let the server's blocked thread go: open the FIFO's other end, then close it
        threading.Thread(target=lambda: os.close(os.open(hung / "group1-shard1of1.bin", os.O_WRONLY | os.O_NONBLOCK)), daemon=True).start()


def test_webgpu_without_an_adapter_is_one_line_saying_so(browser, tmp_path):
    # This runs only where the browser offers no WebGPU (the case here: no GPU); elsewhere it
    # would need @tensorflow/tfjs-backend-webgpu, which package.json does not install.
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text(
        '{"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": [],'
        ' "signature": {"inputs": {"x": {"dtype": "DT_FLOAT"}}, "outputs": {"y": {}}}}'
    )
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs_browser(folder, {"x": np.zeros((1, 2), np.float32)}, ["webgl", "webgpu"])
    message = str(caught.value)
    assert "\n" not in message and "the webgpu backend cannot run" in message
    assert "webgpu needs a GPU-enabled browser" in message


def test_missing_chromium_is_chromium_problems_line():
    bogus = "/no/such/chromium"
    expected = chromium_problem(bogus)
    assert expected is not None and "Chromium not found: `/no/such/chromium`" in expected
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs_browser(Path("/nowhere"), {"x": np.zeros((1, 2), np.float32)}, ["wasm"], chromium=bogus)
    assert str(caught.value) == expected
    with pytest.raises(TfjsRuntimeError, match="Chromium not found"):
        browser_version(bogus)


def test_browser_version_names_the_browser(browser):
    version = browser_version()
    assert version.split(" ")[0] in {"Chromium", "Google", "Chrome"} and version.split(" ")[-1][0].isdigit()
    assert browser_version() is version  # asked once per executable


def test_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="non-empty subset"):
        run_tfjs_browser(Path("/nowhere"), {}, ["webgl", "tpu"])
    with pytest.raises(ValueError):
        run_tfjs_browser(Path("/nowhere"), {}, [])


def test_the_time_limit_has_a_factor_for_every_browser_backend():
    assert set(SECONDS_PER_MB) == set(BROWSER_BACKENDS)
    mobilenet = dict(input_values=224 * 224 * 3, weights=14_000_000, bench=None, factors=SECONDS_PER_MB)
    wasm = time_limit(256, backends=["wasm"], **mobilenet)
    assert time_limit(256, backends=["webgl"], **mobilenet) > wasm
    assert time_limit(256, backends=["wasm", "webgl"], **mobilenet) > time_limit(256, backends=["webgl"], **mobilenet)
