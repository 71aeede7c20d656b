"""`benchmark[artifact]`: time an artifact on its own runtime and measure what users compare.

TensorFlow (a session, as TF Serving runs it) for the SavedModel, LiteRT for .tflite, TF.js
in Node for TF.js, each on the same protocol (runtimes/timing.py): latency percentiles at
batch 1, throughput at `batch_size`, size on disk and gzipped, and the task metrics of every
output on the held-out test split (accuracy for classification, MAE and RMSE for regression;
none for generated inputs, which have no labels). Keyed, like any step, on the artifact's
digest and these settings, so a cached benchmark is reused until either changes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from ..digests import tree_files
from ..metrics import GENERATED, describe, task_metrics
from ..signature import NO_XLA_SIGNATURE, SIGNATURE
from .base import StepContext
from .compressed import gzip_bytes

Arrays = dict[str, Any]  # name -> array
Scorer = Callable[[Arrays], dict[str, Any]]


class BenchmarkStep:
    kind = "benchmark"
    version = 2  # 2: named inputs and outputs; metrics per output and task
    tools = ("tensorflow", "ai-edge-litert", "numpy")  # TF.js is keyed by the npm lockfile

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.split import Split
        from ..runtimes.timing import Protocol

        p = ctx.params
        path = ctx.inputs["artifact"]
        split = Split(ctx.inputs["data"])
        inputs = {name: _in_memory(a) for name, a in split.inputs("test").items()}
        # The task metrics of every output against the test targets ({} without labels).
        score = partial(task_metrics, targets={} if split.generated else split.targets("test"), target_tasks=split.tasks())
        protocol = Protocol(p["warmup"], p["min_runs"], p["min_seconds"])
        runtimes = _MEASURE[p["format"]](path, inputs, score, p, protocol)
        info: dict[str, Any] = {
            "format": p["format"],
            "variant": p["variant"],
            "bytes": sum(f.bytes for f in tree_files(path)),
            "gzip_bytes": gzip_bytes(path),
            "protocol": {"warmup": p["warmup"], "min_runs": p["min_runs"], "min_seconds": p["min_seconds"]},
            "generated": split.generated,
            "runtimes": runtimes,
        }
        first = next(iter(runtimes.values()))
        metrics = describe(first["metrics"]) if first["metrics"] else GENERATED
        info["summary"] = f"p50 {first['latency']['p50_ms']:.3f} ms, {metrics}"
        return info


def _in_memory(array: Any) -> Any:
    """A memory-mapped test input read into memory: timed calls must not read from disk."""
    import numpy as np

    return np.ascontiguousarray(array)


def _figures(runtime: str, threads: int, latency_ms: list[float], batch_ms: list[float], batch: int,
             outputs: Arrays, score: Scorer) -> dict[str, Any]:
    from ..runtimes.timing import latency_figures, throughput_figures

    return {
        "runtime": runtime,
        "threads": threads,
        "latency": latency_figures(latency_ms),
        "throughput": throughput_figures(batch_ms, batch),
        "metrics": score(outputs),
        "samples": len(next(iter(outputs.values()))),
    }


def _first(inputs: Arrays) -> Arrays:
    return {name: a[:1] for name, a in inputs.items()}


def _tiled(inputs: Arrays, n: int) -> Arrays:
    """Each input's samples repeated up to a batch of `n` (the same rows for every input)."""
    import numpy as np

    return {name: np.resize(a, (n, *a.shape[1:])) for name, a in inputs.items()}


def _saved_model(path: Path, x: Arrays, score: Scorer, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
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
            one, batch = _first(x), _tiled(x, p["batch_size"])
            latency = time_calls(lambda: session.predict(one), protocol)
            batches = time_calls(lambda: session.predict(batch), protocol)
        finally:
            session.close()
        runtime = f"TensorFlow {tf.__version__}" + (f" ({label})" if label else "")
        figures[runtime] = _figures(runtime, p["threads"], latency, batches, p["batch_size"], outputs, score)
    return figures


def _tflite(path: Path, x: Arrays, score: Scorer, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from ..runtimes.litert import LiteRtModel, litert_version
    from ..runtimes.timing import time_calls

    model = LiteRtModel(path, p["threads"])
    outputs = model.predict(x)
    # Timed: set input, invoke, read output, on an input already quantized (as on a device).
    one = model.prepare(_first(x))
    latency = time_calls(lambda: model.invoke(one), protocol)
    batch = model.prepare(_tiled(x, p["batch_size"]))
    batches = time_calls(lambda: model.invoke(batch), protocol)
    runtime = litert_version()
    return {runtime: _figures(runtime, p["threads"], latency, batches, p["batch_size"], outputs, score)}


def _tfjs(path: Path, x: Arrays, score: Scorer, p: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from ..runtimes.tfjs_node import run_tfjs

    run = run_tfjs(path, x, p["backends"], node=p["node"], bench=(protocol, p["batch_size"]))
    figures = {}
    for backend in p["backends"]:
        runtime = f"TF.js {run.version} {backend}"
        # TF.js in Node runs on one thread (wasm threads are off under Node).
        figures[runtime] = _figures(runtime, 1, run.latency_ms[backend], run.batch_ms[backend], p["batch_size"],
                                    run.outputs[backend], score)
    return figures


_MEASURE = {"saved_model": _saved_model, "tflite": _tflite, "tfjs": _tfjs}
