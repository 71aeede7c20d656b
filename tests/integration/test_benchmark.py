"""Each artifact benchmarked on its own runtime in the shared build: the figures exist, are
consistent, and agree with what verification measured on the same runtime."""

from __future__ import annotations

import pytest

from tfbuild.runtimes.tfjs_node import node_problem

from tests.integration.conftest import info

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(node_problem() is not None, reason=f"TF.js needs Node: {node_problem()}"),
]

ARTIFACTS = ["saved_model", *(f"tflite/{q}" for q in ("float", "dynamic", "fp16", "int8", "int16x8")),
             *(f"tfjs/{q}" for q in ("none", "float16", "uint8", "uint16"))]


def test_every_artifact_has_latency_throughput_size_and_its_metrics(built):
    _, cfg, result = built
    for artifact in ARTIFACTS:
        bench = info(result, f"benchmark[{artifact}]")
        assert bench["bytes"] > bench["gzip_bytes"] > 0, artifact
        assert bench["protocol"] == {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "rounds": 5}
        for runtime, figures in bench["runtimes"].items():
            latency = figures["latency"]
            assert latency["runs"] >= 5 and 0 < latency["min_ms"] <= latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
            # p50 is the median of the 5 rounds' p50s; the spread is their range over it.
            rounds = latency["p50_rounds_ms"]
            assert latency["rounds"] == len(rounds) == 5 and latency["p50_ms"] == sorted(rounds)[2]
            # From rounded figures: their rounding error grows with the ratio (a spread of 6.9
            # was seen with 1-call rounds), hence a relative tolerance as well.
            assert latency["p50_spread"] == pytest.approx((max(rounds) - min(rounds)) / latency["p50_ms"], rel=1e-2, abs=2e-3)
            assert figures["throughput"]["rounds"] == 5 and figures["throughput"]["batch_p50_spread"] >= 0
            assert figures["throughput"]["batch_size"] == cfg.benchmark.batch_size
            assert figures["throughput"]["samples_per_s"] > 0
            assert figures["samples"] == 120 and 0 < figures["metrics"]["probabilities"]["accuracy"] <= 1
    runtimes = {a: list(info(result, f"benchmark[{a}]")["runtimes"]) for a in ("saved_model", "tflite/int8", "tfjs/uint8")}
    assert runtimes == {"saved_model": ["TensorFlow 2.19.0"], "tflite/int8": ["LiteRT 2.3.0"], "tfjs/uint8": ["TF.js 4.22.0 wasm"]}
    assert info(result, "benchmark[tflite/int8]")["runtimes"]["LiteRT 2.3.0"]["threads"] == 1


def test_benchmark_metrics_match_verification_on_the_same_runtime(built):
    _, _, result = built
    for artifact in ("tflite/int8", "tfjs/uint8"):
        bench = info(result, f"benchmark[{artifact}]")["runtimes"]
        verified = info(result, f"verify[{artifact}]")["runtimes"]
        for runtime, figures in bench.items():
            assert figures["metrics"] == verified[runtime]["metrics"], (artifact, runtime)
    assert info(result, "benchmark[saved_model]")["runtimes"]["TensorFlow 2.19.0"]["metrics"] == info(result, "reference")["metrics"]
