"""The timing protocol every runtime's benchmark follows, and the figures drawn from it.

Warm-up calls first (first calls pay for allocation and kernel selection), then timed calls
until both a minimum count and a minimum time are reached: the count makes percentiles
meaningful for slow models, the time keeps fast ones from being measured in one burst.
The same protocol runs in Node for TF.js (tfjs_run.js, --bench).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Protocol:
    warmup: int
    min_runs: int
    min_seconds: float


def time_calls(call: Callable[[], Any], protocol: Protocol) -> list[float]:
    """Milliseconds per timed call."""
    for _ in range(protocol.warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < protocol.min_runs or time.perf_counter() - started < protocol.min_seconds:
        before = time.perf_counter()
        call()
        times.append((time.perf_counter() - before) * 1000.0)
    return times


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default), without NumPy."""
    position = (len(sorted_ms) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_ms) - 1)
    return sorted_ms[low] + (sorted_ms[high] - sorted_ms[low]) * (position - low)


def latency_figures(ms: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(ms)
    return {
        "p50_ms": round(percentile(ordered, 50), 5),
        "p95_ms": round(percentile(ordered, 95), 5),
        "p99_ms": round(percentile(ordered, 99), 5),
        "mean_ms": round(statistics.fmean(ordered), 5),
        "stdev_ms": round(statistics.stdev(ordered), 5) if len(ordered) > 1 else 0.0,
        "min_ms": round(ordered[0], 5),
        "max_ms": round(ordered[-1], 5),
        "runs": len(ordered),
    }


def throughput_figures(ms: Sequence[float], batch_size: int) -> dict[str, float | int]:
    """Samples per second at `batch_size`, from the median batch time."""
    p50 = percentile(sorted(ms), 50)
    return {"batch_size": batch_size, "batch_p50_ms": round(p50, 5), "samples_per_s": round(batch_size * 1000.0 / p50, 1), "runs": len(ms)}


def figures(runtime: str, threads: int, latency_ms: Sequence[float], batch_ms: Sequence[float], batch: int,
            metrics: dict[str, Any], samples: int) -> dict[str, Any]:
    """One runtime's row of a benchmark: what every format's benchmark returns per runtime."""
    return {
        "runtime": runtime,
        "threads": threads,
        "latency": latency_figures(latency_ms),
        "throughput": throughput_figures(batch_ms, batch),
        "metrics": metrics,
        "samples": samples,
    }
