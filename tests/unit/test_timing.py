"""The timing protocol (runtimes/timing.py) on fake calls and a fake clock: the warm-up goes on
while calls get faster and no longer, rounds interleave the two calls and split the minimums,
and the figures are the rounds' median and spread."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from tfbuild.runtimes.timing import (
    FIRST_WINDOW, STEADY, WARMUP_LIMIT, Protocol, latency_figures, spread, throughput_figures, time_rounds, warm_up,
)  # fmt: skip
from tfbuild.runtimes.tfjs_node import node_problem

TIMING_JS = Path(__file__).resolve().parents[2] / "tfbuild" / "runtimes" / "timing.js"


class FakeRuntime:
    """A call whose n-th invocation takes `cost(n)` seconds of a fake clock."""

    def __init__(self, cost):
        self.cost, self.now, self.calls = cost, 0.0, 0

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.now += self.cost(self.calls)
        self.calls += 1


def jit(n: int) -> float:
    """Like TF.js's JavaScript in V8: 0.31 ms a call at first, within 1% of 0.06 ms after
    about 3,000 calls (measured: 0.28 ms for the first 50, 0.062 ms from 2,000 on)."""
    return 0.00006 + 0.00025 * math.exp(-n / 600)


def test_a_steady_runtime_stops_after_two_windows():
    runtime = FakeRuntime(lambda n: 0.001)
    made = warm_up(runtime, Protocol(50, 50, 0.2), runtime.clock, runtime.clock)
    assert made == runtime.calls == 50 + 100


def test_warm_up_goes_on_while_calls_get_faster_then_stops():
    runtime = FakeRuntime(jit)
    made = warm_up(runtime, Protocol(50, 50, 0.4), runtime.clock, runtime.clock)
    # Windows of 50, 100, 200, ... calls; the first that is not STEADY faster than the one
    # before ends it: once calls are within a few % of their steady speed, before the budget.
    assert jit(made) < 0.00006 * 1.02 and runtime.now < WARMUP_LIMIT * 0.4
    # Within 2% from about 3,200 calls; the window after that is the one that shows it.
    assert made <= 4 * 3300


def test_warm_up_ends_at_its_budget_on_a_runtime_that_keeps_speeding_up():
    runtime = FakeRuntime(lambda n: 0.001 + 0.01 / math.sqrt(n + 1))  # 5% faster per doubling for 40,000 calls
    warm_up(runtime, Protocol(1, 1, 0.1), runtime.clock, runtime.clock)
    assert WARMUP_LIMIT * 0.1 <= runtime.now < WARMUP_LIMIT * 0.1 + 0.02


def test_the_first_window_is_whole_even_past_the_budget():
    runtime = FakeRuntime(lambda n: 1.0)  # one call takes longer than the whole budget
    assert warm_up(runtime, Protocol(3, 1, 0.01), runtime.clock, runtime.clock) == max(3, FIRST_WINDOW)


def test_without_min_seconds_warm_up_is_just_the_warmup_calls():
    runtime = FakeRuntime(jit)
    assert warm_up(runtime, Protocol(7, 5, 0.0), runtime.clock, runtime.clock) == runtime.calls == 7


def test_rounds_alternate_the_two_calls_and_split_min_runs():
    order: list[str] = []
    latency, batch = time_rounds(lambda: order.append("1"), lambda: order.append("B"), Protocol(2, 10, 0.0, rounds=4))
    assert order == ["1"] * 2 + ["B"] * 2 + (["1"] * 3 + ["B"] * 3) * 4  # warm-up once, then 4 rounds of ceil(10/4)
    assert [len(r) for r in latency] == [len(r) for r in batch] == [3] * 4


def test_latency_is_the_median_of_the_rounds_and_the_spread_their_range():
    rounds = [[1.0, 1.0, 1.1], [1.2, 1.2, 1.2], [0.9, 1.0, 5.0], [1.1, 1.1, 1.1], [1.3, 1.3, 1.0]]
    figures = latency_figures(rounds)
    # Round p50s 1.0, 1.2, 1.0, 1.1, 1.3: median 1.1, range 0.3.
    assert figures["p50_ms"] == 1.1 and figures["p50_spread"] == round(0.3 / 1.1, 4)
    assert figures["rounds"] == 5 and figures["runs"] == 15
    assert figures["max_ms"] == 5.0 and figures["min_ms"] == 0.9  # tails over every call
    assert figures["p95_spread"] > 0


def test_one_round_has_no_spread():
    assert latency_figures([[2.0, 3.0, 4.0]])["p50_spread"] == 0.0
    assert spread([5.0]) == 0.0 and spread([0.0, 0.0]) == 0.0


def test_throughput_comes_from_the_median_batch_round():
    figures = throughput_figures([[2.0, 2.0], [4.0, 4.0], [2.5, 2.5]], 32)
    assert figures["batch_p50_ms"] == 2.5 and figures["samples_per_s"] == 12800.0
    assert figures["batch_p50_spread"] == 0.8 and figures["rounds"] == 3 and figures["runs"] == 6


def test_protocol_for_js_carries_the_same_split_and_constants():
    js = Protocol(50, 50, 0.2, rounds=5).for_js(32)
    assert js == {"warmup": 50, "rounds": 5, "runsPerRound": 10, "msPerRound": pytest.approx(40.0),
                  "warmupMaxMs": pytest.approx(1000.0), "steady": STEADY, "firstWindow": FIRST_WINDOW,
                  "batch": 32}  # fmt: skip


@pytest.mark.skipif(node_problem() is not None, reason=f"timing.js needs Node: {node_problem()}")
def test_timing_js_runs_the_same_rounds_in_node():
    script = f"""
      const {{timeRounds}} = require({json.dumps(str(TIMING_JS))});
      const order = [];
      timeRounds(() => order.push('1'), async () => order.push('B'), {json.dumps(Protocol(2, 10, 0.0, 4).for_js(8))})
        .then((f) => console.log(JSON.stringify({{order: order.join(''), latency: f.latency_ms.map((r) => r.length),
                                                   batch: f.batch_ms.map((r) => r.length)}})));
    """
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result == {"order": "11BB" + "111BBB" * 4, "latency": [3] * 4, "batch": [3] * 4}
