"""Run a TF.js graph model in real TF.js (Node.js, `cpu` and `wasm` backends) from Python.

Parity checked in Python's own TensorFlow proves nothing about what a browser runs: the
converter, weight quantization and TF.js's kernels are all in between. So the converted
folder is run by `tfjs_run.js` with the `@tensorflow/tfjs` packages pinned in the repo's
package.json (installed by `make setup`, no native code), and the outputs come back as arrays.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import DataError
from ..recipes import PROJECT_ROOT
from .feeds import Inputs, batch_size, match_inputs, sample_count
from .tfjs_graph import TfjsRuntimeError, graph_signature, weight_bytes
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
__all__ = ["TfjsRun", "TfjsRuntimeError", "failure_line", "node_problem", "run_tfjs", "time_limit", "write_npy"]

# The time limit grows with the work: seconds per sample ~ (weight bytes + input bytes) x a
# per-backend factor, set well above what was measured so a loaded machine still passes: a
# MobileNetV2 at 224x224 (14 MB of weights, 0.6 MB of input) took 0.039 s a sample on wasm
# and 1.8 s on cpu here (factors below allow 0.29 s and 15 s). Plus a start-up allowance for
# Node, TF.js and the weights.
STARTUP_S = 60.0
SECONDS_PER_MB = {"wasm": 0.02, "cpu": 1.0}  # per sample, per MB of weights + one sample's input


@dataclass
class TfjsRun:
    version: str  # tf.version.tfjs that produced the outputs
    outputs: dict[str, dict[str, "np.ndarray"]]  # backend -> output name -> float32 [N, ...]
    timings: dict[str, dict[str, float]]  # backend -> {"load_ms": ..., "predict_ms": ...}
    # With `bench=`: backend -> ms per timed call at batch 1, and at the bench batch size,
    # per round of the timing protocol (timing.py).
    latency_rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    batch_rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    batch_size: int = 0  # samples per call while predicting
    timeout_s: float = 0.0  # the limit the run was given


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
    inputs: Inputs,
    backends: Sequence[str] = ("wasm",),
    *,
    node: str = "node",
    bench: tuple[Protocol, int] | None = None,
    timeout_s: float | None = None,
    workdir: Path | None = None,
) -> TfjsRun:
    """Run the TF.js graph model in `model_dir` on all samples of `inputs` ({name: array},
    names as in the model's signature), once per backend, a batch at a time.

    `timeout_s` None: a limit that grows with the work (`time_limit`). `workdir`, if given,
    keeps the input and output .npy files there (for inspection); otherwise they live in a
    temporary folder that is removed. `bench=(protocol, batch)` also times calls at batch 1
    and at `batch` (see timing.py for the protocol).
    """
    import numpy as np

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"backends must be a non-empty subset of {BACKENDS}, got {list(backends)}")
    problem = node_problem(node)
    if problem is not None:
        raise TfjsRuntimeError(problem)
    model_dir, signature, feeds, samples, batch = model_feeds(model_dir, inputs)
    if timeout_s is None:
        values = sum(math.prod(x.shape[1:]) for x in feeds.values())
        timeout_s = time_limit(samples, values, weight_bytes(model_dir), backends, bench)

    keep = contextlib.nullcontext(str(workdir)) if workdir is not None else None
    with keep or tempfile.TemporaryDirectory(prefix="tfjs-run-") as folder:
        work = Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        command = [
            node, str(SCRIPT), "--model", str(model_dir), "--backends", ",".join(backends),
            "--out", str(work / "tfjs_outputs"), "--batch", str(batch),
        ]  # fmt: skip
        if signature.outputs:
            command += ["--outputs", ",".join(signature.outputs)]
        for i, (name, x) in enumerate(feeds.items()):
            file = work / f"input_{i}.npy"
            write_npy(file, x, signature.inputs[name])
            command += ["--input", f"{name}={file}"]
        if bench is not None:
            protocol, bench_batch = bench
            command += ["--bench", json.dumps(protocol.for_js(bench_batch))]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=work)
        except subprocess.TimeoutExpired:
            slower = "; cpu is far slower than wasm (verify.tfjs_backends=[wasm])" if "cpu" in backends else ""
            raise TfjsRuntimeError(
                f"TF.js ({', '.join(backends)}) did not finish {samples} samples of {model_dir} within "
                f"{timeout_s:.3g} s (the limit for this model size and sample count){slower}; verify fewer "
                f"samples (verify.samples), {DISABLE_HINT}"
            ) from None
        except OSError as error:
            raise TfjsRuntimeError(f"could not start `{node}`: {error}") from None
        if done.returncode != 0:
            raise TfjsRuntimeError(failure_line(done, "tfjs_run"))
        report = _parse_report(done.stdout)
        outputs, timings, latency, batches = {}, {}, {}, {}
        for backend in backends:
            entry = report["backends"].get(backend)
            if entry is None:
                raise TfjsRuntimeError(f"tfjs_run reported no result for backend '{backend}'")
            # np.load reads the whole file now, so the temporary folder can go.
            outputs[backend] = {name: np.load(file) for name, file in entry["outputs"].items()}
            timings[backend] = {"load_ms": float(entry["load_ms"]), "predict_ms": float(entry["predict_ms"])}
            if "latency_ms" in entry:
                latency[backend] = rounds_of(entry["latency_ms"])
                batches[backend] = rounds_of(entry["batch_ms"])
    return TfjsRun(str(report["tfjs"]), outputs, timings, latency, batches, batch, timeout_s)


def rounds_of(reported: Any) -> list[list[float]]:
    """A runner's per-round timings ([[ms, ...], ...]) as floats."""
    return [[float(v) for v in one] for one in reported]


def model_feeds(model_dir: Path, inputs: Inputs) -> tuple[Path, Any, dict[str, Any], int, int]:
    """(the folder, its signature, inputs by the signature's names, sample count, samples per
    call): what running a TF.js folder needs, in Node or in a browser."""
    model_dir = Path(model_dir).resolve()
    signature = graph_signature(model_dir)
    feeds = match_inputs(inputs, list(signature.inputs), f"TF.js model {model_dir}")
    samples = sample_count(feeds, model_dir)
    if samples == 0:
        raise DataError(f"no samples to run TF.js model {model_dir} on")
    return model_dir, signature, feeds, samples, batch_size(feeds)


def time_limit(
    samples: int,
    input_values: int,
    weights: int,
    backends: Sequence[str],
    bench: tuple[Protocol, int] | None,
    *,
    factors: Mapping[str, float] = SECONDS_PER_MB,
    startup_s: float = STARTUP_S,
) -> float:
    """Seconds a run may take: start-up, plus each backend's samples (and timed calls) at a
    generous per-sample cost that grows with the model's weights and input size. `factors`
    (seconds per sample per MB, by backend) and `startup_s` default to Node's; the browser
    runtime passes its own."""
    size_mb = max((weights + 4 * input_values) / 1e6, 0.05)  # weights + one sample; a floor for tiny models
    calls, extra_s = samples, 0.0
    if bench is not None:
        protocol, batch = bench
        # Warm-up and timed calls at batch 1 and at `batch` (each round rounds its share of
        # min_runs up); the minimum time is spent twice, and so is the warm-up's budget.
        calls += (protocol.warmup + protocol.min_runs + protocol.rounds) * (1 + batch)
        extra_s = 2 * (protocol.min_seconds + protocol.warmup_budget())
    return startup_s + sum(calls * factors[b] * size_mb + extra_s for b in backends)


def write_npy(file: Path, x: "np.ndarray", dtype: str) -> None:
    """`x` as a C-ordered .npy of `dtype`, a slice at a time (a memory-mapped split is never
    loaded whole)."""
    import numpy as np
    from numpy.lib.format import open_memmap

    out = open_memmap(file, mode="w+", dtype=np.dtype(dtype), shape=tuple(x.shape))
    step = max(1, 2**24 // max(1, math.prod(x.shape[1:])))
    for start in range(0, len(x), step):
        out[start : start + step] = x[start : start + step]
    out.flush()
    del out


def failure_line(done: subprocess.CompletedProcess, script: str) -> str:
    """The script's own `<script>: ...` line; otherwise (a crash, a kill) the last thing said."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(f"{script}: ")]
    if ours:
        return ours[-1]
    detail = lines[-1] if lines else "no message"
    return f"{script} exited with code {done.returncode}: {detail}"


def _parse_report(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
        report["backends"]  # noqa: B018 - the one key everything below needs
    except (IndexError, ValueError, KeyError, TypeError):
        raise TfjsRuntimeError(f"tfjs_run printed no JSON result (stdout: {stdout[-200:]!r})") from None
    return report
