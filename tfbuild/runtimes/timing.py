"""The timing protocol every runtime's benchmark follows, and the figures drawn from it.

1. Warm-up, once, for the batch-1 call and then for the batch call (`warm_up`): at least
   `warmup` untimed calls, and more while calls still get faster, for at most 5 x
   min_seconds of CPU time. First calls pay for allocation, kernel selection and JIT
   compilation; V8 keeps optimizing TF.js's JavaScript over the first ~3,000 calls of a
   small model, so a fixed 50 calls left TF.js's timed calls up to 3x slower at first, and
   its p50 depended on how many calls fitted in min_seconds (p50s 60% apart between runs).
2. `rounds` rounds; each times the batch-1 call (latency), then the batch call (throughput),
   until both its share of `min_runs` and of `min_seconds` are reached (so the total timed
   work is as before: the minimums are split, not multiplied). Alternating means that a
   drift of the machine (another process, a clock change) hits both figures alike and shows
   up as a difference between rounds, which is what the spread measures.

Figures (`latency_figures`): `p50_ms` is the median of the rounds' p50s, so one round that
something else disturbed does not move it; `p95_ms`, `p99_ms`, mean, min and max are over
every timed call pooled (a tail needs all the calls). `p50_spread` and `p95_spread` are the
relative range of the rounds' p50s (p95s): (max - min) / median, 0 with one round. It is the
noise `tfbuild-report diff` holds a change against. Throughput is taken the same way from the
batch calls (`batch_p50_ms`, `batch_p50_spread`).

Python's garbage collector is off during timed calls, as `timeit` does: its pauses are the
harness's, not the model's. The same protocol runs in JavaScript for TF.js (timing.js, in
Node and in Chromium), with the constants `Protocol.for_js` hands it.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

Rounds = Sequence[Sequence[float]]  # ms per timed call, per round

# Warm-up goes on while a window of calls has a median more than STEADY below the window
# before (each window twice as long as the last), for at most WARMUP_LIMIT x min_seconds.
STEADY = 0.05
WARMUP_LIMIT = 5.0
FIRST_WINDOW = 16  # calls in the first window when `warmup` is smaller


@dataclass(frozen=True)
class Protocol:
    warmup: int
    min_runs: int
    min_seconds: float
    rounds: int = 1

    def per_round(self) -> tuple[int, float]:
        """(calls, seconds) each round times at least: min_runs and min_seconds split evenly."""
        return max(1, math.ceil(self.min_runs / self.rounds)), self.min_seconds / self.rounds

    def warmup_budget(self) -> float:
        """Seconds the adaptive part of a warm-up may last (0 with min_seconds 0: tests)."""
        return WARMUP_LIMIT * self.min_seconds

    def for_js(self, batch: int) -> dict[str, Any]:
        """What timing.js reads: the same protocol and constants, in milliseconds."""
        calls, seconds = self.per_round()
        return {"warmup": self.warmup, "rounds": self.rounds, "runsPerRound": calls, "msPerRound": seconds * 1000,
                "warmupMaxMs": self.warmup_budget() * 1000, "steady": STEADY, "firstWindow": FIRST_WINDOW,
                "batch": batch}  # fmt: skip


def warm_up(call: Callable[[], Any], protocol: Protocol, clock: Callable[[], float] = time.perf_counter,
            cpu_clock: Callable[[], float] = time.process_time) -> int:
    """Untimed calls until `call` runs at its steady speed; returns how many were made.

    A first window of max(warmup, FIRST_WINDOW) calls, then windows twice as long as the one
    before until a window's median is no more than STEADY below the previous window's, or the
    warm-up has used `warmup_budget()` seconds of this process's CPU time (the first window
    is always made whole). CPU time, not wall time: a JIT speeds up with the calls it has
    seen, and on a busy machine a wall-clock budget ended TF.js's warm-up early, leaving its
    first rounds ~15% slow. A runtime that is steady at once (LiteRT, TensorFlow) stops after
    two windows. With a budget of 0 (min_seconds 0: tests) it is just `warmup` calls."""
    budget = protocol.warmup_budget()
    if budget <= 0:
        for _ in range(protocol.warmup):
            call()
        return protocol.warmup
    started, made = cpu_clock(), 0
    size, previous = max(protocol.warmup, FIRST_WINDOW), math.inf
    while True:
        times: list[float] = []
        while len(times) < size and (made == 0 or cpu_clock() - started < budget):
            before = clock()
            call()
            times.append(clock() - before)
        made += len(times)
        if len(times) < size:  # out of time
            return made
        current = statistics.median(times)
        if current >= previous * (1 - STEADY):
            return made
        previous, size = current, size * 2


def _timed(call: Callable[[], Any], runs: int, seconds: float) -> list[float]:
    """Milliseconds per call, until both `runs` calls and `seconds` are done."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs or time.perf_counter() - started < seconds:
        before = time.perf_counter()
        call()
        times.append((time.perf_counter() - before) * 1000.0)
    return times


def time_rounds(latency_call: Callable[[], Any], batch_call: Callable[[], Any],
                protocol: Protocol) -> tuple[list[list[float]], list[list[float]]]:
    """(latency rounds, batch rounds): the protocol above, ms per timed call per round."""
    warm_up(latency_call, protocol)
    warm_up(batch_call, protocol)
    runs, seconds = protocol.per_round()
    latency: list[list[float]] = []
    batch: list[list[float]] = []
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(protocol.rounds):
            latency.append(_timed(latency_call, runs, seconds))
            batch.append(_timed(batch_call, runs, seconds))
    finally:
        if collecting:
            gc.enable()
    return latency, batch


def time_calls(call: Callable[[], Any], protocol: Protocol) -> list[float]:
    """One call timed alone: warm-up, then min_runs calls and min_seconds, in one round."""
    warm_up(call, protocol)
    return _timed(call, protocol.min_runs, protocol.min_seconds)


PSI_CPU = Path("/proc/pressure/cpu")


def cpu_stall_us() -> int | None:
    """Microseconds, since boot, during which some runnable task waited for a CPU (Linux
    pressure stall information, "some" line); None where the kernel does not report it."""
    try:
        return int(PSI_CPU.read_text().split("total=", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def cpu_pressure() -> Iterator[dict[str, float | None]]:
    """{"share": ...} once the block ends: the share of its wall time during which tasks
    waited for a CPU, i.e. the CPUs were oversubscribed (None: not reported)."""
    result: dict[str, float | None] = {"share": None}
    before, started = cpu_stall_us(), time.perf_counter()
    yield result
    after, elapsed = cpu_stall_us(), time.perf_counter() - started
    if before is not None and after is not None and elapsed > 0:
        result["share"] = round(min(1.0, (after - before) / 1e6 / elapsed), 3)


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default), without NumPy."""
    position = (len(sorted_ms) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_ms) - 1)
    return sorted_ms[low] + (sorted_ms[high] - sorted_ms[low]) * (position - low)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far a figure measured once per round moved between rounds,
    relative to the figure (0 for one round, or a median of 0)."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle > 0 else 0.0


def _per_round(rounds: Rounds, q: float) -> list[float]:
    return [percentile(sorted(r), q) for r in rounds if r]


def latency_figures(rounds: Rounds) -> dict[str, float | int]:
    """Latency at batch 1 from the rounds' timed calls (see the module's docstring)."""
    ordered = sorted(ms for r in rounds for ms in r)
    p50s, p95s = _per_round(rounds, 50), _per_round(rounds, 95)
    return {
        "p50_ms": round(statistics.median(p50s), 5),
        "p95_ms": round(percentile(ordered, 95), 5),
        "p99_ms": round(percentile(ordered, 99), 5),
        "mean_ms": round(statistics.fmean(ordered), 5),
        "stdev_ms": round(statistics.stdev(ordered), 5) if len(ordered) > 1 else 0.0,
        "min_ms": round(ordered[0], 5),
        "max_ms": round(ordered[-1], 5),
        "runs": len(ordered),
        "rounds": len(p50s),
        "p50_spread": round(spread(p50s), 4),
        "p95_spread": round(spread(p95s), 4),
        "p50_rounds_ms": [round(v, 5) for v in p50s],
        "p95_rounds_ms": [round(v, 5) for v in p95s],
    }


def throughput_figures(rounds: Rounds, batch_size: int) -> dict[str, float | int]:
    """Samples per second at `batch_size`, from the median of the rounds' median batch times."""
    p50s = _per_round(rounds, 50)
    p50 = statistics.median(p50s)
    return {
        "batch_size": batch_size,
        "batch_p50_ms": round(p50, 5),
        "samples_per_s": round(batch_size * 1000.0 / p50, 1),
        "runs": sum(len(r) for r in rounds),
        "rounds": len(p50s),
        "batch_p50_spread": round(spread(p50s), 4),
    }


def figures(runtime: str, threads: int, latency: Rounds, batches: Rounds, batch: int,
            metrics: dict[str, Any], samples: int) -> dict[str, Any]:
    """One runtime's row of a benchmark: what every format's benchmark returns per runtime."""
    return {
        "runtime": runtime,
        "threads": threads,
        "latency": latency_figures(latency),
        "throughput": throughput_figures(batches, batch),
        "metrics": metrics,
        "samples": samples,
    }
