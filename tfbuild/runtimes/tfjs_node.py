"""Run a TF.js graph model in real TF.js (Node.js, `cpu` and `wasm` backends) from Python.

Parity checked in Python's own TensorFlow proves nothing about what a browser runs: the
converter, weight quantization and TF.js's kernels are all in between. So the converted
folder is run by `tfjs_run.js` with the `@tensorflow/tfjs` packages pinned in the repo's
package.json (installed by `make setup`, no native code), and the outputs come back as arrays.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..recipes import PROJECT_ROOT
from .timing import Protocol

if TYPE_CHECKING:  # numpy is imported inside functions: planning must not pay for it
    import numpy as np

SCRIPT = Path(__file__).with_name("tfjs_run.js")
NODE_MODULES = PROJECT_ROOT / "node_modules"
NPM_LOCKFILE = PROJECT_ROOT / "package-lock.json"
PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")
BACKENDS = ("cpu", "wasm")
MIN_NODE_MAJOR = 18
DISABLE_HINT = "or turn TF.js verification off with verify.enabled=false"


class TfjsRuntimeError(RuntimeError):
    """TF.js could not run the model; the message is one line meant for the user."""


@dataclass
class TfjsRun:
    version: str  # tf.version.tfjs that produced the outputs
    outputs: dict[str, "np.ndarray"]  # backend -> float32 [N, classes]
    timings: dict[str, dict[str, float]]  # backend -> {"load_ms": ..., "predict_ms": ...}
    # With `bench=`: backend -> ms per timed call at batch 1, and at the bench batch size.
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    batch_ms: dict[str, list[float]] = field(default_factory=dict)


def node_problem(node: str = "node") -> str | None:
    """None if `node` runs, is Node 18+, and the repo's TF.js packages are installed; else
    one line saying what is missing and how to fix it. One `node --version` call at most."""
    if shutil.which(node) is None:
        where = "is not on PATH" if os.sep not in node else "does not exist or is not executable"
        return (
            f"Node.js not found (`{node}` {where}): install Node.js {MIN_NODE_MAJOR}+ "
            f"(apt install nodejs npm), then run `make setup`; {DISABLE_HINT}"
        )
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`{node} --version` failed ({error}); {DISABLE_HINT}"
    match = re.match(r"v(\d+)\.", done.stdout.strip())
    if done.returncode != 0 or match is None:
        return f"`{node} --version` did not print a Node.js version (got {done.stdout.strip()!r}); {DISABLE_HINT}"
    if int(match.group(1)) < MIN_NODE_MAJOR:
        return (
            f"Node.js {done.stdout.strip()} is too old: TF.js verification needs Node.js "
            f"{MIN_NODE_MAJOR}+; {DISABLE_HINT}"
        )
    return _packages_problem()


def _packages_problem() -> str | None:
    """Installed and at the versions package.json pins (a stale node_modules is also caught)."""
    try:
        wanted = json.loads((PROJECT_ROOT / "package.json").read_text())["dependencies"]
    except (OSError, ValueError, KeyError):
        wanted = {}
    for package in PACKAGES:
        manifest = NODE_MODULES / package / "package.json"
        try:
            installed = json.loads(manifest.read_text()).get("version")
        except (OSError, ValueError):
            return f"TF.js packages are not installed in {NODE_MODULES}: run `make setup` (npm ci)"
        if package in wanted and installed != wanted[package]:
            return (
                f"{package} {installed} is installed in {NODE_MODULES} but package.json pins "
                f"{wanted[package]}: run `make setup` (npm ci)"
            )
    return None


def run_tfjs(
    model_dir: Path,
    x: "np.ndarray",
    backends: Sequence[str],
    *,
    node: str = "node",
    workdir: Path | None = None,
    output_name: str = "probabilities",
    bench: tuple[Protocol, int] | None = None,
    timeout_s: float = 300.0,
) -> TfjsRun:
    """Run the TF.js graph model in `model_dir` on the whole batch `x`, once per backend.

    `workdir`, if given, keeps the input and output .npy files there (for inspection);
    otherwise they live in a temporary folder that is removed. `bench=(protocol, batch)` also
    times calls at batch 1 and at `batch` (see timing.py for the protocol).
    """
    import numpy as np

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"backends must be a non-empty subset of {BACKENDS}, got {list(backends)}")
    problem = node_problem(node)
    if problem is not None:
        raise TfjsRuntimeError(problem)

    keep = contextlib.nullcontext(str(workdir)) if workdir is not None else None
    with keep or tempfile.TemporaryDirectory(prefix="tfjs-run-") as folder:
        work = Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        x_path, out_dir = work / "x.npy", work / "tfjs_outputs"
        # The script reads only little-endian float32 in C order; np.save of this array is that.
        np.save(x_path, np.ascontiguousarray(x, dtype="<f4"))
        command = [
            node, str(SCRIPT),
            "--model", str(Path(model_dir).resolve()),
            "--input", str(x_path),
            "--backends", ",".join(backends),
            "--out", str(out_dir),
            "--output-name", output_name,
        ]  # fmt: skip
        if bench is not None:
            protocol, batch = bench
            command += ["--bench", f"{protocol.warmup},{protocol.min_runs},{protocol.min_seconds * 1000:g},{batch}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=work)
        except subprocess.TimeoutExpired:
            raise TfjsRuntimeError(f"TF.js run of {model_dir} did not finish within {timeout_s:.0f} s") from None
        except OSError as error:
            raise TfjsRuntimeError(f"could not start `{node}`: {error}") from None
        if done.returncode != 0:
            raise TfjsRuntimeError(_failure_line(done))
        report = _parse_report(done.stdout)
        outputs, timings, latency, batches = {}, {}, {}, {}
        for backend in backends:
            entry = report["backends"].get(backend)
            if entry is None:
                raise TfjsRuntimeError(f"tfjs_run reported no result for backend '{backend}'")
            # np.load reads the whole file now, so the temporary folder can go.
            outputs[backend] = np.load(entry["output"])
            timings[backend] = {"load_ms": float(entry["load_ms"]), "predict_ms": float(entry["predict_ms"])}
            if "latency_ms" in entry:
                latency[backend] = [float(v) for v in entry["latency_ms"]]
                batches[backend] = [float(v) for v in entry["batch_ms"]]
    return TfjsRun(str(report["tfjs"]), outputs, timings, latency_ms=latency, batch_ms=batches)


def _failure_line(done: subprocess.CompletedProcess) -> str:
    """The script's own `tfjs_run: ...` line; otherwise (a crash, a kill) the last thing said."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("tfjs_run: ")]
    if ours:
        return ours[-1]
    detail = lines[-1] if lines else "no message"
    return f"tfjs_run exited with code {done.returncode}: {detail}"


def _parse_report(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
        report["backends"]  # noqa: B018 - the one key everything below needs
    except (IndexError, ValueError, KeyError, TypeError):
        raise TfjsRuntimeError(f"tfjs_run printed no JSON result (stdout: {stdout[-200:]!r})") from None
    return report
