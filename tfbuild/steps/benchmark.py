"""`benchmark[artifact]`: time an artifact on its own runtime and measure what users compare.

Each format says how (its module's `benchmark`, tfbuild/formats/): TensorFlow for the
SavedModel, LiteRT for .tflite, TF.js for TF.js, each on the same protocol
(runtimes/timing.py: a warm-up, then `rounds` interleaved rounds of batch-1 and batch calls):
latency percentiles at batch 1 with the spread of the rounds' p50s (`p50_spread`, the noise
`tfbuild-report diff` weighs a change against), throughput at `batch_size`, size on
disk and gzipped, and the task metrics of every output on the held-out test split (accuracy
for classification, MAE and RMSE for regression; none for generated inputs, which have no
labels). Keyed, like any step, on the artifact's digest and these settings, so a cached
benchmark is reused until either changes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..digests import tree_files
from ..metrics import GENERATED, describe, task_metrics
from ..plan import StepSpec
from .base import StepContext
from .compressed import gzip_bytes


class BenchmarkStep:
    kind = "benchmark"
    version = 4  # 4: interleaved rounds, steady-state warm-up, p50 as the rounds' median, spreads
    tools = ("tensorflow", "ai-edge-litert", "numpy")  # TF.js is keyed by the npm lockfile
    exclusive = True  # it times: nothing else may run beside it (jobs > 1)

    def affinity(self, spec: StepSpec) -> str | None:
        """What it keeps in its process for the next such step (a Chromium): see the runner."""
        from ..formats import shared_runtime

        return shared_runtime(spec.params)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import numpy as np

        from ..datasets.split import Split
        from ..formats import FORMATS
        from ..runtimes.timing import Protocol, cpu_pressure

        p = ctx.params
        path = ctx.inputs["artifact"]
        split = Split(ctx.inputs["data"])
        # Read into memory: timed calls must not read a memory-mapped split from disk.
        inputs = {name: np.ascontiguousarray(a) for name, a in split.inputs("test").items()}
        # The task metrics of every output against the test targets ({} without labels).
        score = partial(task_metrics, targets={} if split.generated else split.targets("test"), target_tasks=split.tasks())
        protocol = Protocol(p["warmup"], p["min_runs"], p["min_seconds"], p["rounds"])
        measure = FORMATS[p["format"]].benchmark
        assert measure is not None  # the resolver plans benchmarks of formats that have one
        with cpu_pressure() as pressure:
            runtimes = measure(path, inputs, score, p, protocol)
        info: dict[str, Any] = {
            "format": p["format"],
            "variant": p["variant"],
            "bytes": sum(f.bytes for f in tree_files(path)),
            "gzip_bytes": gzip_bytes(path),
            "protocol": {k: p[k] for k in ("warmup", "min_runs", "min_seconds", "rounds")},
            "generated": split.generated,
            "runtimes": runtimes,
            # The share of the benchmark's time during which tasks waited for a CPU (Linux
            # PSI; null elsewhere): how busy the machine was while it measured.
            "cpu_pressure": pressure["share"],
        }
        first = next(iter(runtimes.values()))
        metrics = describe(first["metrics"]) if first["metrics"] else GENERATED
        latency = first["latency"]
        info["summary"] = f"p50 {latency['p50_ms']:.3f} ms (spread {latency['p50_spread']:.0%}), {metrics}"
        return info
