"""Run a TF.js graph model in real headless Chromium (webgl, wasm, cpu; webgpu where the
browser offers it) from Python, as tfjs_node.py does in Node.

What a browser user gets is not what Node gets: the webgl backend (shaders, float16 textures
where float32 ones are missing), the browser's WebAssembly engine, and the model fetched over
HTTP. So the converted folder is served on 127.0.0.1 with TF.js's dist files and a runner
page (browser_page.html/.js), and browser_run.js drives the system's Chromium through
puppeteer-core: one browser per call, one page per backend. The outputs come back as arrays.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from .chromium import chromium_problem, find_chromium
from .feeds import Inputs, batch_size, batches, match_inputs, sample_count
from .processes import end_marked
from .static_server import StaticServer
from .tfjs_graph import TfjsRuntimeError, graph_signature, weight_bytes
from .tfjs_node import NODE_MODULES, TfjsRun, failure_line, node_problem, parse_report, time_limit, write_npy
from .timing import Protocol

if TYPE_CHECKING:  # numpy is imported inside functions: planning must not pay for it
    import numpy as np

__all__ = ["BROWSER_BACKENDS", "TfjsBrowserRun", "browser_version", "run_tfjs_browser"]

BROWSER_BACKENDS = ("webgl", "wasm", "cpu", "webgpu")
HERE = Path(__file__).parent
SCRIPT = HERE / "browser_run.js"
PAGE_FILES = ("browser_page.html", "browser_page.js")
# Served under lib/: TF.js's union bundle (core, converter, cpu and webgl; the ES2017 build,
# which loaded in half the time of the ES5 tf.min.js here and runs in any browser we drive),
# the wasm backend and its binaries (which one loads is the browser's pick: SIMD here;
# threads need a cross-origin isolated page), and the webgpu backend where it is installed
# (package.json does not ask for it today).
LIBRARIES = {
    "tf.es2017.min.js": "@tensorflow/tfjs/dist/tf.es2017.min.js",
    "tf-backend-wasm.es2017.min.js": "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.es2017.min.js",
    "tfjs-backend-wasm.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "tfjs-backend-wasm-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "tfjs-backend-wasm-threaded-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
}
OPTIONAL_LIBRARIES = {"tf-backend-webgpu.es2017.min.js": "@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.es2017.min.js"}
WITHOUT = "or verify in Node.js only with verify.browser_backends=[]"

# Time limit (see tfjs_node.time_limit): seconds per sample per MB of weights + one sample's
# input, set well above what was measured here (2 cores, no GPU, WebGL on SwiftShader).
# Start-up: Chromium, then per backend a page, TF.js and the model over HTTP.
SECONDS_PER_MB = {"wasm": 0.05, "cpu": 2.0, "webgl": 0.5, "webgpu": 0.5}
STARTUP_S = 60.0
STARTUP_PER_BACKEND_S = 30.0


@dataclass
class TfjsBrowserRun(TfjsRun):
    """A TfjsRun (outputs, timings, bench figures by backend) plus what ran it."""

    browser: str = ""  # puppeteer's browser.version(), e.g. "HeadlessChrome/150.0.7871.100"
    # backend -> what the page found: webgl {renderer, webgl_version, float32}, wasm {simd, threads}.
    backend_info: dict[str, dict[str, Any]] = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def _version_of(executable: str) -> str:
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TfjsRuntimeError(f"`{executable} --version` failed ({error})") from None
    # Debian's `chromium` is a shell wrapper that may also complain on stderr; stdout counts.
    match = re.search(r"((?:Chromium|Google Chrome|Chrome)[^\d\n]*?)\s*(\d+(?:\.\d+)+)", done.stdout)
    if match is None:
        raise TfjsRuntimeError(f"`{executable} --version` printed no browser version (got {done.stdout.strip()!r})")
    return f"{match.group(1).strip()} {match.group(2)}"


def browser_version(chromium: str | None = None) -> str:
    """"Chromium 150.0.7871.100" for the Chromium `find_chromium(chromium)` finds; one
    `--version` call per executable per process."""
    found = find_chromium(chromium)
    if found is None:
        raise TfjsRuntimeError(str(chromium_problem(chromium)))
    return _version_of(str(found.resolve()))


def run_tfjs_browser(
    model_dir: Path,
    inputs: Inputs,
    backends: Sequence[str] = ("webgl",),
    *,
    chromium: str | None = None,
    node: str = "node",
    bench: tuple[Protocol, int] | None = None,
    timeout_s: float | None = None,
    workdir: Path | None = None,
) -> TfjsBrowserRun:
    """Run the TF.js graph model in `model_dir` in headless Chromium on all samples of
    `inputs` ({name: array}, names as in the model's signature), once per backend, a batch
    at a time; as `run_tfjs` (same arguments, same result) with the browser's backends.

    `chromium`: an executable name or path (None: TFBUILD_CHROMIUM or the usual names).
    `workdir`, if given, keeps the served folder, outputs and Chromium profile there.
    A backend that cannot start (no WebGL context, no WebGPU adapter) is an error naming it,
    never a silent fallback to another backend.
    """
    import numpy as np

    unknown = [b for b in backends if b not in BROWSER_BACKENDS]
    if unknown or not backends or len(set(backends)) != len(backends):
        raise ValueError(f"backends must be a non-empty subset of {BROWSER_BACKENDS}, got {list(backends)}")
    problem = chromium_problem(chromium) or node_problem(node)
    if problem is not None:
        raise TfjsRuntimeError(problem)
    executable = find_chromium(chromium)
    model_dir = Path(model_dir).resolve()
    signature = graph_signature(model_dir)
    feeds = match_inputs(inputs, list(signature.inputs), f"TF.js model {model_dir}")
    samples = sample_count(feeds, model_dir)
    if samples == 0:
        raise DataError(f"no samples to run TF.js model {model_dir} on")
    batch = batch_size(feeds)
    if timeout_s is None:
        values = sum(math.prod(x.shape[1:]) for x in feeds.values())
        startup = STARTUP_S + STARTUP_PER_BACKEND_S * len(backends)
        timeout_s = time_limit(
            samples, values, weight_bytes(model_dir), backends, bench, factors=SECONDS_PER_MB, startup_s=startup
        )

    keep = contextlib.nullcontext(str(workdir)) if workdir is not None else None
    with keep or tempfile.TemporaryDirectory(prefix="tfjs-browser-") as folder:
        work = Path(folder).resolve()
        work.mkdir(parents=True, exist_ok=True)
        for ours in ("site", "outputs", "chromium-profile"):  # a kept workdir's last run
            shutil.rmtree(work / ours, ignore_errors=True)
        site = _write_site(work / "site", model_dir, feeds, signature, batch, bench)
        profile = work / "chromium-profile"
        command = [
            node, str(SCRIPT), "--backends", ",".join(backends), "--out", str(work / "outputs"),
            "--label", str(model_dir), "--profile", str(profile),
        ]  # fmt: skip
        if bench is not None:
            protocol, bench_batch = bench
            command += ["--bench", f"{protocol.warmup},{protocol.min_runs},{protocol.min_seconds * 1000:g},{bench_batch}"]
        env = {**os.environ, "TFBUILD_CHROMIUM": str(executable)}
        with StaticServer(site) as server:
            command[2:2] = ["--url", server.url(PAGE_FILES[0])]
            done = _drive(command, env, work, timeout_s, f"--user-data-dir={profile}", backends, samples, model_dir)
        if done.returncode != 0:
            raise TfjsRuntimeError(failure_line(done, "browser_run"))
        report = parse_report(done.stdout, "browser_run")
        run = TfjsBrowserRun(str(report.get("tfjs")), {}, {}, {}, {}, batch, timeout_s, str(report.get("browser", "")))
        for backend in backends:
            entry = report["backends"].get(backend)
            if entry is None:
                raise TfjsRuntimeError(f"browser_run reported no result for backend '{backend}'")
            # np.load reads the whole file now, so the temporary folder can go.
            run.outputs[backend] = {name: np.load(file) for name, file in entry.pop("outputs").items()}
            run.timings[backend] = {"load_ms": float(entry.pop("load_ms")), "predict_ms": float(entry.pop("predict_ms"))}
            if "latency_ms" in entry:
                run.latency_ms[backend] = [float(v) for v in entry.pop("latency_ms")]
                run.batch_ms[backend] = [float(v) for v in entry.pop("batch_ms")]
            run.backend_info[backend] = entry  # what is left: renderer, simd, ...
    return run


def _write_site(
    site: Path, model_dir: Path, feeds: dict[str, Any], signature: Any, batch: int, bench: tuple[Protocol, int] | None
) -> Path:
    """The served folder: model/ (a link to the artifact itself, so what is verified is what
    ships), lib/ (TF.js from node_modules), the runner page, the inputs one .npy per input per
    batch, and config.json saying where everything is."""
    (site / "lib").mkdir(parents=True)
    (site / "model").symlink_to(model_dir, target_is_directory=True)
    for name, relative in {**LIBRARIES, **OPTIONAL_LIBRARIES}.items():
        source = NODE_MODULES / relative
        if source.is_file():
            (site / "lib" / name).symlink_to(source)
        elif name in LIBRARIES:
            raise TfjsRuntimeError(f"{source} is missing: run `make setup` (npm ci), {WITHOUT}")
    for name in PAGE_FILES:
        (site / name).symlink_to(HERE / name)

    def write(part: str, rows: slice) -> dict[str, Any]:
        (site / part).mkdir(parents=True)
        files = []
        for i, (name, x) in enumerate(feeds.items()):
            write_npy(site / part / f"{i}.npy", x[rows], signature.inputs[name])
            files.append(f"{part}/{i}.npy")
        return {"rows": rows.stop - rows.start, "files": files}

    samples = sample_count(feeds, "inputs")
    config = {
        "model": "model/model.json",
        "inputs": [{"name": name} for name in feeds],
        "outputs": list(signature.outputs),
        "samples": samples,
        "batches": [write(f"inputs/{k}", rows) for k, rows in enumerate(batches(samples, batch))],
        # The bench's first `batch` samples (fewer if there are fewer), as tfjs_run.js takes them.
        "bench": write("bench", slice(0, min(bench[1], samples))) if bench is not None else None,
        "libs": {"webgpu": (site / "lib" / "tf-backend-webgpu.es2017.min.js").exists()},
    }
    (site / "config.json").write_text(json.dumps(config))
    return site


def _drive(
    command: list[str], env: dict[str, str], cwd: Path, timeout_s: float, marker: str,
    backends: Sequence[str], samples: int, model_dir: Path,
) -> subprocess.CompletedProcess:  # fmt: skip
    """Run browser_run.js; whatever happens (success, error, time limit, Ctrl-C), no Chromium
    outlives the call: the driver's group is ended, then any process carrying `marker`."""
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, start_new_session=True
        )
    except OSError as error:
        raise TfjsRuntimeError(f"could not start `{command[0]}`: {error}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _end_group(process)
        _, stderr = process.communicate()
        stages = [line[len("stage: ") :] for line in stderr.splitlines() if line.startswith("stage: ")]
        where = f"; it was at {stages[-1]}" if stages else ""
        raise TfjsRuntimeError(
            f"TF.js in Chromium ({', '.join(backends)}) did not finish {samples} samples of {model_dir} within "
            f"{timeout_s:.3g} s (the limit for this model size and sample count{where}); verify fewer samples "
            f"(verify.samples), {WITHOUT}"
        ) from None
    finally:
        _end_group(process)
        end_marked(marker)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _end_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver's process group (start_new_session made the driver its leader)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
