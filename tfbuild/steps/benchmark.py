"""`benchmark[artifact]`: time an artifact on its own runtime and measure what users compare.

TensorFlow (a session, as TF Serving runs it) for the SavedModel, LiteRT for .tflite, TF.js
in Node for TF.js, each on the same protocol (runtimes/timing.py): latency percentiles at
batch 1, throughput at `batch_size`, size on disk and gzipped, and accuracy on the held-out
test split. Keyed, like any step, on the artifact's digest and these settings, so a cached
benchmark is reused until the artifact or the settings change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agreement import accuracy
from ..digests import tree_files
from .base import StepContext
from .compressed import gzip_bytes
from .data import load_split
from .saved_model import NO_XLA_SIGNATURE, SIGNATURE


class BenchmarkStep:
    kind = "benchmark"
    version = 1
    tools = ("tensorflow", "ai-edge-litert", "numpy")  # TF.js is keyed by the npm lockfile

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..runtimes.timing import Protocol

        p = ctx.params
        path = ctx.inputs["artifact"]
        x, y = load_split(ctx.inputs["data"], "test")
        protocol = Protocol(p["warmup"], p["min_runs"], p["min_seconds"])
        runtimes = _MEASURE[p["format"]](path, x, y, p, protocol)
        info: dict[str, Any] = {
            "format": p["format"],
            "variant": p["variant"],
            "bytes": sum(f.bytes for f in tree_files(path)),
            "gzip_bytes": gzip_bytes(path),
            "protocol": {"warmup": p["warmup"], "min_runs": p["min_runs"], "min_seconds": p["min_seconds"]},
            "runtimes": runtimes,
        }
        first = next(iter(runtimes.values()))
        info["summary"] = f"p50 {first['latency']['p50_ms']:.3f} ms, accuracy {first['accuracy']:.1%}"
        return info


def _figures(runtime: str, threads: int, latency_ms: list[float], batch_ms: list[float], batch: int,
             outputs: Any, labels: Any) -> dict[str, Any]:
    from ..runtimes.timing import latency_figures, throughput_figures

    return {
        "runtime": runtime,
        "threads": threads,
        "latency": latency_figures(latency_ms),
        "throughput": throughput_figures(batch_ms, batch),
        "accuracy": round(accuracy(outputs, labels), 6),
        "samples": int(len(labels)),
    }


def _tiled(x: Any, n: int) -> Any:
    import numpy as np

    return np.resize(x, (n, *x.shape[1:]))  # repeats the samples as needed


def _saved_model(path: Path, x: Any, y: Any, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from ..runtimes.savedmodel import SavedModelSession
    from ..runtimes.timing import time_calls
    from ..tfenv import import_tensorflow

    tf = import_tensorflow()
    # With XLA, the served signature is compiled; its uncompiled twin shows what XLA buys.
    signatures = {"XLA": SIGNATURE, "no XLA": NO_XLA_SIGNATURE} if p.get("xla") else {"": SIGNATURE}
    figures = {}
    for label, signature in signatures.items():
        session = SavedModelSession(path, p["threads"], signature)
        try:
            outputs = session.predict(x)
            one, batch = x[:1], _tiled(x, p["batch_size"])
            latency = time_calls(lambda: session.predict(one), protocol)
            batches = time_calls(lambda: session.predict(batch), protocol)
        finally:
            session.close()
        runtime = f"TensorFlow {tf.__version__}" + (f" ({label})" if label else "")
        figures[runtime] = _figures(runtime, p["threads"], latency, batches, p["batch_size"], outputs, y)
    return figures


def _tflite(path: Path, x: Any, y: Any, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from ..runtimes.litert import LiteRtModel, litert_version
    from ..runtimes.timing import time_calls

    model = LiteRtModel(path, p["threads"])
    outputs = model.predict(x)
    # Timed: set input, invoke, read output, on an input already quantized (as on a device).
    one = model.prepare(x[:1])
    latency = time_calls(lambda: model.invoke(one), protocol)
    batch = model.prepare(_tiled(x, p["batch_size"]))
    batches = time_calls(lambda: model.invoke(batch), protocol)
    runtime = litert_version()
    return {runtime: _figures(runtime, p["threads"], latency, batches, p["batch_size"], outputs, y)}


def _tfjs(path: Path, x: Any, y: Any, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from ..runtimes.tfjs_node import run_tfjs

    run = run_tfjs(path, x, p["backends"], node=p["node"], bench=(protocol, p["batch_size"]))
    figures = {}
    for backend in p["backends"]:
        runtime = f"TF.js {run.version} {backend}"
        # TF.js in Node runs on one thread (wasm threads are off under Node).
        figures[runtime] = _figures(runtime, 1, run.latency_ms[backend], run.batch_ms[backend], p["batch_size"],
                                    run.outputs[backend], y)
    return figures


_MEASURE = {"saved_model": _saved_model, "tflite": _tflite, "tfjs": _tfjs}
