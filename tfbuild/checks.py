"""Value checks on the composed config that a schema cannot express.

Hydra and the dataclass schema already reject unknown keys, wrong types and bad enum values
at compose time. What is left: "one value or a list" keys, numeric ranges, and cross-field
rules. Each check is a small function that raises ConfigError naming the key and what is
allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, did_you_mean
from .hardware import gpu_count, tpu_address
from .schema import (
    ExportFormat,
    OptimizeMethod,
    TfjsBackend,
    TfjsQuantization,
    TfliteQuantization,
)

CALIBRATED_TFLITE = ("int8", "int16x8")


@dataclass(frozen=True)
class Choices:
    """The "one value or a list" keys, normalized to ordered tuples without repeats."""

    formats: tuple[str, ...]
    tflite: tuple[str, ...]
    tfjs: tuple[str, ...]
    tfjs_backends: tuple[str, ...]  # verified on
    bench_backends: tuple[str, ...]  # timed on
    force: bool | tuple[str, ...]


def check_config(cfg: DictConfig) -> Choices:
    _check_no_missing(cfg)
    _check_train(cfg)
    _check_data(cfg)
    _check_target(cfg)
    choices = Choices(
        formats=one_or_many(cfg.export.formats, ExportFormat, "export.formats"),
        tflite=one_or_many(cfg.export.tflite.quantization, TfliteQuantization, "export.tflite.quantization"),
        tfjs=one_or_many(cfg.export.tfjs.quantization, TfjsQuantization, "export.tfjs.quantization"),
        tfjs_backends=one_or_many(cfg.verify.tfjs_backends, TfjsBackend, "verify.tfjs_backends"),
        bench_backends=one_or_many(cfg.benchmark.tfjs_backends, TfjsBackend, "benchmark.tfjs_backends"),
        force=_force(cfg.force),
    )
    _check_calibration(cfg, choices)
    _check_optimize(cfg, choices)
    _check_verify(cfg)
    _check_benchmark(cfg)
    _check_gates(cfg)
    return choices


def one_or_many(value: Any, allowed: type[Enum], key: str) -> tuple[str, ...]:
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    names = [m.value for m in allowed]
    if not values:
        raise ConfigError(f"{key} is empty; choose one or more of: {', '.join(names)}")
    out: list[str] = []
    for item in values:
        item = item.value if isinstance(item, Enum) else item
        if not isinstance(item, str) or item not in names:
            raise ConfigError(
                f"{key}: '{item}' is not one of {', '.join(names)}{did_you_mean(str(item), names)}"
            )
        if item not in out:
            out.append(item)
    return tuple(out)


def _check_no_missing(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set")


def _at_least(cfg: DictConfig, key: str, minimum: float) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")


def _check_train(cfg: DictConfig) -> None:
    _at_least(cfg, "train.epochs", 1)
    _at_least(cfg, "train.batch_size", 1)
    _at_least(cfg, "train.seed", 0)
    if cfg.train.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate must be greater than 0, got {cfg.train.learning_rate}")


def _check_data(cfg: DictConfig) -> None:
    data = cfg.data
    _at_least(cfg, "data.calibration_samples", 0)
    _at_least(cfg, "data.seed", 0)
    _at_least(cfg, "data.limit", 10)
    for key in ("validation_fraction", "test_fraction"):
        if not 0 < data[key] < 1:
            raise ConfigError(f"data.{key} must be between 0 and 1 (exclusive), got {data[key]}")
    if data.validation_fraction + data.test_fraction >= 0.9:
        raise ConfigError(
            "data.validation_fraction + data.test_fraction must leave at least 10% for "
            f"training, got {data.validation_fraction} + {data.test_fraction}"
        )


def effective_precision(cfg: DictConfig) -> str:
    """precision=... when the recipe chose one, else the target profile's."""
    policy = cfg.precision.policy if cfg.precision.policy is not None else cfg.target.precision
    return policy.value


def _check_target(cfg: DictConfig) -> None:
    """The target's strategy against its settings and this machine; no TensorFlow needed."""
    target = cfg.target
    strategy = target.strategy.value
    asked = f"target={target.name.value} (strategy {strategy})"
    if target.cpu_devices is not None:
        _at_least(cfg, "target.cpu_devices", 1)
        if strategy != "mirrored":
            raise ConfigError(f"target.cpu_devices applies to strategy mirrored, not {strategy} ({asked})")
    if strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        if target.workers is None or target.workers < 2:
            raise ConfigError(
                f"{asked} needs target.workers=N (2 or more) to start N workers on this machine, "
                "or TF_CONFIG describing the cluster this process belongs to"
            )
    elif target.workers is not None:
        raise ConfigError(f"target.workers applies to strategy multi_worker, not {strategy} ({asked})")
    needs_gpus = strategy in ("one_device", "mirrored") and target.cpu_devices is None
    if needs_gpus:
        _at_least(cfg, "target.gpus", 1)
        found, how = gpu_count()
        if found < target.gpus:
            simulate = (
                "target=multi_gpu target.cpu_devices=2 to run MirroredStrategy over logical CPU devices"
                if strategy == "mirrored" else "target=cpu"
            )
            raise ConfigError(
                f"{asked} needs {target.gpus} GPU{'s' if target.gpus > 1 else ''}, found {found} ({how}): "
                f"run it on a machine with them, or use {simulate}"
            )
    if strategy == "tpu":
        address, how = tpu_address(target.tpu)
        if address is None:
            raise ConfigError(
                f"{asked} needs a reachable TPU, found none ({how}): set target.tpu=NAME_OR_GRPC_ADDRESS "
                "or TPU_NAME, or use target=cpu (or target=multi_gpu target.cpu_devices=2)"
            )


def _check_calibration(cfg: DictConfig, choices: Choices) -> None:
    if "tflite" not in choices.formats:
        return
    calibrated = [q for q in choices.tflite if q in CALIBRATED_TFLITE]
    if calibrated and cfg.data.calibration_samples < 1:
        raise ConfigError(
            f"export.tflite.quantization={calibrated[0]} needs calibration data: set "
            "data.calibration_samples to 1 or more (100 is typical)"
        )


def _check_optimize(cfg: DictConfig, choices: Choices) -> None:
    optimize = cfg.optimize
    if optimize.method == OptimizeMethod.none:
        return
    _at_least(cfg, "optimize.epochs", 1)
    if optimize.learning_rate <= 0:
        raise ConfigError(f"optimize.learning_rate must be greater than 0, got {optimize.learning_rate}")
    if optimize.method == OptimizeMethod.prune and not 0 < optimize.sparsity < 1:
        raise ConfigError(f"optimize.sparsity must be between 0 and 1 (exclusive), got {optimize.sparsity}")
    if optimize.method == OptimizeMethod.cluster:
        _at_least(cfg, "optimize.clusters", 2)
    if optimize.method == OptimizeMethod.qat:
        if effective_precision(cfg) != "float32" or cfg.target.jit_compile:
            raise ConfigError(
                "optimize=qat fine-tunes in float32 without XLA: use precision=float32 "
                "target.jit_compile=false, or optimize=none|prune|cluster"
            )
        if "tfjs" in choices.formats:
            raise ConfigError(
                "optimize=qat cannot be exported to TF.js (the converter has no FakeQuant ops): "
                "remove tfjs from export.formats, or use optimize=none|prune|cluster"
            )
        if "tflite" in choices.formats and "int16x8" in choices.tflite:
            raise ConfigError(
                "optimize=qat trains for int8 and cannot be converted to int16x8: remove int16x8 "
                "from export.tflite.quantization, or use optimize=none|prune|cluster"
            )


def _check_verify(cfg: DictConfig) -> None:
    _at_least(cfg, "verify.samples", 1)
    tolerances = cfg.verify.tolerances
    nodes = [("verify.tolerances.saved_model", tolerances.saved_model)]
    nodes += [(f"verify.tolerances.{f}.{v}", t) for f in ("tflite", "tfjs") for v, t in tolerances[f].items()]
    for key, tolerance in nodes:
        for bound in ("max_abs_diff", "mean_abs_diff"):
            if tolerance[bound] is not None and tolerance[bound] < 0:
                raise ConfigError(f"{key}.{bound} must be 0 or more (or null), got {tolerance[bound]}")
        top1 = tolerance.min_top1_agreement
        if top1 is not None and not 0 <= top1 <= 1:
            raise ConfigError(f"{key}.min_top1_agreement must be between 0 and 1 (or null), got {top1}")


def _check_benchmark(cfg: DictConfig) -> None:
    for key, minimum in (("warmup", 0), ("min_runs", 1), ("min_seconds", 0), ("batch_size", 1), ("threads", 1)):
        _at_least(cfg, f"benchmark.{key}", minimum)


# Gate limits that need a benchmark's figures (size is known without one).
MEASURED_LIMITS = ("min_accuracy", "max_accuracy_drop", "max_p95_ms")


def _check_gates(cfg: DictConfig) -> None:
    for path, gate in _gate_nodes(cfg.gates):
        for limit in ("min_accuracy", "max_accuracy_drop"):
            if gate[limit] is not None and not 0 <= gate[limit] <= 1:
                raise ConfigError(f"{path}.{limit} must be between 0 and 1 (or null), got {gate[limit]}")
        for limit in ("max_bytes", "max_p95_ms"):
            if gate[limit] is not None and gate[limit] <= 0:
                raise ConfigError(f"{path}.{limit} must be greater than 0 (or null), got {gate[limit]}")
        measured = [limit for limit in MEASURED_LIMITS if gate[limit] is not None]
        if measured and not cfg.benchmark.enabled:
            raise ConfigError(f"{path}.{measured[0]} needs the benchmark's figures: set benchmark.enabled=true")


def _gate_nodes(gates: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key path, node) for the top-level gate, each format's and each variant's."""
    nodes = [("gates", gates)]
    for fmt in ("saved_model", "tflite", "tfjs"):
        nodes.append((f"gates.{fmt}", gates[fmt]))
        nodes += [(f"gates.{fmt}.{v}", node) for v, node in gates[fmt].items() if isinstance(node, DictConfig)]
    return nodes


def _force(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, ListConfig)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"force must be true, false or a list of step names or kinds, got {value!r}")
