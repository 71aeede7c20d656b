"""Run a TF.js graph model in real headless Chromium (webgl, wasm, cpu; webgpu where the
browser offers it) from Python, as tfjs_node.py does in Node.

What a browser user gets is not what Node gets: the webgl backend (shaders, float16 textures
where float32 ones are missing), the browser's WebAssembly engine, and the model fetched over
HTTP. So the converted folder is served on 127.0.0.1 with TF.js's dist files and a runner
page (browser_page.html/.js), and browser_run.js drives the system's Chromium through
puppeteer-core. `run_tfjs_browser` starts one Chromium for its call; a `BrowserSession`
keeps one (and its page, with TF.js loaded) for many models, which is what makes browser
verification of several variants cost about what Node's does (benchmarks/browser_vs_node.py).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Sequence

from .chromium import chromium_problem, find_chromium
from .feeds import Inputs, batches, sample_count
from .line_driver import DriverError, DriverTimeout, LineDriver
from .static_server import StaticServer
from .tfjs_graph import GraphSignature, TfjsRuntimeError, weight_bytes
from .tfjs_node import NODE_MODULES, TfjsRun, model_feeds, node_problem, rounds_of, time_limit, write_npy
from .timing import Protocol

if TYPE_CHECKING:  # numpy is imported inside functions: planning must not pay for it
    import numpy as np

__all__ = ["BROWSER_BACKENDS", "BrowserSession", "TfjsBrowserRun", "browser_version", "run_tfjs_browser"]

BROWSER_BACKENDS = ("webgl", "wasm", "cpu", "webgpu")
HERE = Path(__file__).parent
SCRIPT = HERE / "browser_run.js"
PAGE = "browser_page.html"
PAGE_FILES = (PAGE, "browser_page.js", "timing.js")
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
# input, set well above what was measured here (2 cores, no GPU, WebGL on SwiftShader). A
# MobileNetV2 at 224x224 (14 MB of weights, 0.6 MB of input; 16 samples, 4 on cpu) took
# 0.034 s a sample on wasm, 0.58 s on webgl (its shaders compiled in that, once a model) and
# 1.05 s on cpu: the factors allow 0.73, 7.3 and 14.6 s. webgpu is unmeasured (no GPU here).
# Start-up: Chromium, TF.js, and per backend its start and the model over HTTP.
SECONDS_PER_MB = {"wasm": 0.05, "cpu": 1.0, "webgl": 0.5, "webgpu": 0.5}
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
    never a silent fallback to another backend. One Chromium for the call; to run several
    models on one, use a BrowserSession.
    """
    _check_backends(backends)
    with BrowserSession(chromium=chromium, node=node, workdir=workdir) as session:
        return session.run(model_dir, inputs, backends, bench=bench, timeout_s=timeout_s)


def _check_backends(backends: Sequence[str]) -> None:
    unknown = [b for b in backends if b not in BROWSER_BACKENDS]
    if unknown or not backends or len(set(backends)) != len(backends):
        raise ValueError(f"backends must be a non-empty subset of {BROWSER_BACKENDS}, got {list(backends)}")


class BrowserSession:
    """One headless Chromium, and one page with TF.js loaded, for many `run`s:

        with BrowserSession() as browser:
            for folder in variants:
                outputs = browser.run(folder, inputs, ["wasm", "webgl"]).outputs

    Chromium starts with the session (while the first run writes its inputs) and ends with
    it; a run past its time limit ends the session too (a hung page cannot be trusted), and
    later runs raise. Nothing outlives the session: not a `with` left by an exception, not
    an interpreter exiting, not (the script watches its stdin) a Python process killed.
    """

    def __init__(self, *, chromium: str | None = None, node: str = "node", workdir: Path | None = None) -> None:
        problem = chromium_problem(chromium) or node_problem(node)
        if problem is not None:
            raise TfjsRuntimeError(problem)
        self._temp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="tfjs-browser-")
        self.workdir = Path(workdir if workdir is not None else self._temp.name).resolve()  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        for ours in ("site", "outputs", "chromium-profile"):  # a kept workdir's last session
            shutil.rmtree(self.workdir / ours, ignore_errors=True)
        self._site = _write_shared_site(self.workdir / "site")
        self._runs = 0
        self._server = StaticServer(self._site).__enter__()
        profile = self.workdir / "chromium-profile"
        env = {**os.environ, "TFBUILD_CHROMIUM": str(find_chromium(chromium))}
        try:
            self._driver: LineDriver | None = LineDriver(
                [node, str(SCRIPT), "--profile", str(profile)], env=env, cwd=self.workdir,
                marker=f"--user-data-dir={profile}", name="browser_run",
            )  # fmt: skip
        except DriverError as error:
            self._server.__exit__(None, None, None)
            raise TfjsRuntimeError(str(error)) from None
        # If the session is never closed, the interpreter's exit still ends Chromium.
        self._finalizer = weakref.finalize(self, _end, self._driver, self._server, self._temp)

    def __enter__(self) -> "BrowserSession":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()
        self._driver = None

    @property
    def ended(self) -> bool:
        return self._driver is None

    def run(
        self,
        model_dir: Path,
        inputs: Inputs,
        backends: Sequence[str] = ("webgl",),
        *,
        bench: tuple[Protocol, int] | None = None,
        timeout_s: float | None = None,
    ) -> TfjsBrowserRun:
        """As `run_tfjs_browser`, in this session's Chromium."""
        import numpy as np

        _check_backends(backends)
        if self._driver is None:
            raise TfjsRuntimeError("this browser session has ended (closed, or stopped at a time limit): start a new one")
        model_dir, signature, feeds, samples, batch = model_feeds(model_dir, inputs)
        if timeout_s is None:
            values = sum(math.prod(x.shape[1:]) for x in feeds.values())
            startup = STARTUP_S + STARTUP_PER_BACKEND_S * len(backends)
            timeout_s = time_limit(
                samples, values, weight_bytes(model_dir), backends, bench, factors=SECONDS_PER_MB, startup_s=startup
            )

        self._runs += 1
        prefix = f"runs/{self._runs}/"
        out = self.workdir / "outputs" / str(self._runs)
        _write_run(self._site / prefix, prefix, model_dir, feeds, signature, batch, bench)
        request = {
            "url": self._server.url(PAGE), "config": f"{prefix}config.json", "prefix": prefix,
            "label": str(model_dir), "out": str(out), "backends": list(backends),
            "bench": None if bench is None else bench[0].for_js(bench[1]),
        }  # fmt: skip
        try:
            report = self._driver.request(request, timeout_s)
        except DriverTimeout as stuck:
            self.close()
            where = f"; it was at {stuck.stage}" if stuck.stage else ""
            raise TfjsRuntimeError(
                f"TF.js in Chromium ({', '.join(backends)}) did not finish {samples} samples of {model_dir} within "
                f"{timeout_s:.3g} s (the limit for this model size and sample count{where}); verify fewer samples "
                f"(verify.samples), {WITHOUT}"
            ) from None
        except DriverError as error:
            if not self._driver.alive:
                self.close()
            raise TfjsRuntimeError(str(error)) from None
        finally:
            if self._temp is not None:  # a kept workdir keeps every run's files
                shutil.rmtree(self._site / prefix, ignore_errors=True)

        run = TfjsBrowserRun(str(report.get("tfjs")), {}, {}, {}, {}, batch, timeout_s, str(report.get("browser", "")))
        for backend in backends:
            entry = dict(report["backends"].get(backend) or {})
            if not entry:
                raise TfjsRuntimeError(f"browser_run reported no result for backend '{backend}'")
            # np.load reads the whole file now, so the folder can go.
            run.outputs[backend] = {name: np.load(file) for name, file in entry.pop("outputs").items()}
            run.timings[backend] = {"load_ms": float(entry.pop("load_ms")), "predict_ms": float(entry.pop("predict_ms"))}
            if "latency_ms" in entry:
                run.latency_rounds[backend] = rounds_of(entry.pop("latency_ms"))
                run.batch_rounds[backend] = rounds_of(entry.pop("batch_ms"))
            run.backend_info[backend] = entry  # what is left: renderer, simd, ...
        if self._temp is not None:
            shutil.rmtree(out, ignore_errors=True)
        return run


def _end(driver: LineDriver, server: StaticServer, temp: tempfile.TemporaryDirectory | None) -> None:
    driver.close()
    server.__exit__(None, None, None)
    if temp is not None:
        temp.cleanup()


def _write_shared_site(site: Path) -> Path:
    """What every run's page shares: the runner page and lib/ (TF.js, linked from node_modules)."""
    (site / "lib").mkdir(parents=True)
    for name, relative in {**LIBRARIES, **OPTIONAL_LIBRARIES}.items():
        source = NODE_MODULES / relative
        if source.is_file():
            (site / "lib" / name).symlink_to(source)
        elif name in LIBRARIES:
            raise TfjsRuntimeError(f"{source} is missing: run `make setup` (npm ci), {WITHOUT}")
    for name in PAGE_FILES:
        (site / name).symlink_to(HERE / name)
    return site


def _write_run(
    folder: Path, prefix: str, model_dir: Path, feeds: dict[str, Any], signature: GraphSignature, batch: int,
    bench: tuple[Protocol, int] | None,
) -> None:  # fmt: skip
    """One run's files under the site's `prefix`: model/ (a link to the artifact itself, so
    what is verified is what ships), the inputs one .npy per input per batch, and
    config.json saying where everything is (paths from the site's root, as the page asks)."""
    folder.mkdir(parents=True)
    (folder / "model").symlink_to(model_dir, target_is_directory=True)

    def write(part: str, rows: slice) -> dict[str, Any]:
        (folder / part).mkdir(parents=True)
        files = []
        for i, (name, x) in enumerate(feeds.items()):
            write_npy(folder / part / f"{i}.npy", x[rows], signature.inputs[name])
            files.append(f"{prefix}{part}/{i}.npy")
        return {"rows": rows.stop - rows.start, "files": files}

    samples = sample_count(feeds, "inputs")
    config = {
        "model": f"{prefix}model/model.json",
        "inputs": [{"name": name} for name in feeds],
        "outputs": list(signature.outputs),
        "samples": samples,
        "batches": [write(f"inputs/{k}", rows) for k, rows in enumerate(batches(samples, batch))],
        # The bench's first `batch` samples (fewer if there are fewer), as tfjs_run.js takes them.
        "bench": write("bench", slice(0, min(bench[1], samples))) if bench is not None else None,
        "libs": {"webgpu": (folder.parent.parent / "lib" / "tf-backend-webgpu.es2017.min.js").exists()},
    }
    (folder / "config.json").write_text(json.dumps(config))


_shared: dict[tuple[str | None, str], BrowserSession] = {}
_shared_lock = threading.Lock()


def shared_session(chromium: str | None = None, node: str = "node") -> BrowserSession:
    """One Chromium for the whole build: every TF.js variant's verify and benchmark steps run
    in it, so Chromium and TF.js start once a build, not once a step (starting them costs
    more than running a small model's test split). Ended when the interpreter exits; a
    session that ended (a time limit) is replaced by a fresh one."""
    with _shared_lock:
        session = _shared.get((chromium, node))
        if session is None or session.ended:
            session = _shared[(chromium, node)] = BrowserSession(chromium=chromium, node=node)
        return session
