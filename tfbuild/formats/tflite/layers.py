"""Where an int8 model loses accuracy, op by op: the per-layer quantization report.

The figures come from the model `tf.lite.experimental.QuantizationDebugger` runs: the
calibrated model quantized with a NumericVerify op after every quantized op, which compares
the op's dequantized int8 output with its float twin run on the same input (so each row is
that op's own error, not what it inherited). The debugger reduces each sample to scalars;
the tensors are read here directly (all tensors preserved, no delegate), because one figure
needs every channel over every sample:

- `rmse_over_scale`: RMSE / scale, the debugger's headline. Rounding alone gives about 0.29
  (the RMS of a uniform error over one step); above 1, the op's weights or clipping lose more.
- `rel_error`: per output channel, RMS error over RMS float value, median over channels. A
  layer whose range one outlier channel widens rounds "perfectly" (rmse/scale near 0.29) and
  still loses most of every other channel: this catches it, so the report ranks by it.
- `range_min`, `range_max`: what int8 can represent, (-128 - zero point) and (127 - zero
  point) times scale.

An op is named by its output tensor in the calibrated model (what the quantizer's
`denylisted_nodes` takes), its TFLite op type, and the Keras layer the name comes from where
the name still shows it ("model/dense_1/MatMul;..." -> "dense_1").
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

from ...errors import DataError
from ...signature import SIGNATURE
from .convert import Samples

ROUNDING_ONLY = 0.29  # RMSE / scale of rounding alone: 1/sqrt(12)
# TensorFlow op names inside a layer's scope are CamelCase ("MatMul", "BiasAdd", "ReadVariableOp");
# Keras layer names are not, unless a user chose such a name (then the op's scope shows instead).
_TF_OP = re.compile(r"[A-Z][A-Za-z0-9]*")
_NOT_OPS = ("QUANTIZE", "DEQUANTIZE", "NumericVerify", "DELEGATE")


@dataclass(frozen=True)
class QuantizedOp:
    name: str  # the op's output tensor name in the calibrated model
    op_type: str  # TFLite's: CONV_2D, FULLY_CONNECTED, ...
    layer: str  # the Keras layer, "" where the name does not show it


@dataclass(frozen=True)
class LayerStats:
    rank: int  # 1: the op whose quantization loses most of its output (highest rel_error)
    op: str
    op_type: str
    layer: str
    scale: float
    zero_point: int
    range_min: float
    range_max: float
    rmse_over_scale: float
    rel_error: float
    max_abs_error: float


COLUMNS = tuple(f.name for f in fields(LayerStats))


def layer_of(op_name: str) -> str:
    """The Keras layer in a TFLite tensor name: the innermost scope of its first fused part that
    is not a TensorFlow op ("model/conv0/Relu;model/conv0/BiasAdd" -> "conv0")."""
    first = op_name.split(";")[0]
    scopes = first.split("/")[1:-1]  # without the model's own scope and the op
    while scopes and _TF_OP.fullmatch(scopes[-1]):
        scopes.pop()
    return scopes[-1] if scopes else ""


def quantizable_ops(calibrated: bytes) -> list[QuantizedOp]:
    """The ops of the calibrated model, in graph order, that int8 quantizes (or may keep in float)."""
    interpreter = _interpreter(calibrated)
    ops = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing
        if op["op_name"] in _NOT_OPS or not len(op["outputs"]):
            continue
        name = interpreter._get_tensor_details(op["outputs"][0], 0)["name"]  # noqa: SLF001
        ops.append(QuantizedOp(name, op["op_name"], layer_of(name)))
    return ops


def matching_ops(patterns: Sequence[str], ops: Sequence[QuantizedOp], key: str) -> list[str]:
    """The names of the ops that `patterns` pick, in graph order. A pattern is an op's name, a
    layer's name, an op type, or a regular expression (RE2: linear time) matching any of them
    in full. A pattern that picks nothing is an error naming the layers there are."""
    from .patterns import compile_pattern

    chosen: set[str] = set()
    for pattern in patterns:
        regex = compile_pattern(pattern)
        picked = {op.name for op in ops if any(pattern == text or regex.fullmatch(text) for text in _texts(op))}
        if not picked:
            layers = sorted({op.layer for op in ops if op.layer})
            types = sorted({op.op_type for op in ops})
            shown = ", ".join(layers[:12]) + (", ..." if len(layers) > 12 else "")
            raise DataError(
                f"{key}: {pattern!r} matches no quantized op (layers: {shown or '(none named)'}; "
                f"op types: {', '.join(types)}); tflite/int8/layers.csv lists every op"
            )
        chosen |= picked
    return [op.name for op in ops if op.name in chosen]


def _texts(op: QuantizedOp) -> tuple[str, ...]:
    return tuple(t for t in (op.name, op.layer, op.op_type) if t)


def layer_statistics(tf: Any, calibrated: bytes, samples: Samples) -> list[LayerStats]:
    """Every quantized op's figures over the calibration samples, worst first."""
    import numpy as np

    from .convert import quantized

    debug = _interpreter(quantized(tf, calibrated, debug=True), preserve=True)
    checks = [op for op in debug._get_ops_details() if op["op_name"] == "NumericVerify"]  # noqa: SLF001
    twins = _twins(debug, checks, quantizable_ops(calibrated))
    runner = debug.get_signature_runner(SIGNATURE)
    sums: dict[int, dict[str, Any]] = {}
    for sample in samples():
        runner(**{name: np.asarray(x, np.float32) if x.dtype.kind == "f" else x for name, x in sample.items()})
        for check in checks:
            q_index, f_index = check["inputs"][:2]
            details = debug._get_tensor_details(q_index, 0)  # noqa: SLF001
            scale = float(details["quantization_parameters"]["scales"][0])
            zero_point = int(details["quantization_parameters"]["zero_points"][0])
            want = debug.get_tensor(f_index).astype(np.float64)
            got = (debug.get_tensor(q_index).astype(np.float64) - zero_point) * scale
            channels = want.shape[-1] if want.ndim else 1
            error, value = (got - want).reshape(-1, channels), want.reshape(-1, channels)
            acc = sums.setdefault(check["index"], {
                "scale": scale, "zero_point": zero_point, "op": twins[check["index"]],
                "error2": np.zeros(channels), "value2": np.zeros(channels), "rows": 0, "max": 0.0,
            })  # fmt: skip
            acc["error2"] += (error**2).sum(0)
            acc["value2"] += (value**2).sum(0)
            acc["rows"] += len(error)
            acc["max"] = max(acc["max"], float(np.abs(error).max(initial=0.0)))
    rows = []
    for acc in sums.values():
        rows.append(_row(acc, acc["op"]))
    rows.sort(key=lambda r: (-r.rel_error, -r.rmse_over_scale, r.op))
    return [LayerStats(rank=i + 1, **{k: v for k, v in asdict(r).items() if k != "rank"}) for i, r in enumerate(rows)]


def _row(acc: dict[str, Any], op: QuantizedOp) -> LayerStats:
    import numpy as np

    scale, zero_point = acc["scale"], acc["zero_point"]
    rmse = float(np.sqrt(acc["error2"].sum() / max(acc["rows"] * len(acc["error2"]), 1)))
    live = acc["value2"] > 0  # a channel that is always zero (a dead ReLU) has nothing to lose
    ratios = np.sqrt(acc["error2"][live] / acc["value2"][live])
    return LayerStats(
        rank=0, op=op.name, op_type=op.op_type, layer=op.layer, scale=_g(scale), zero_point=zero_point,
        range_min=_g(scale * (-128 - zero_point)), range_max=_g(scale * (127 - zero_point)),
        rmse_over_scale=_g(rmse / scale if scale else 0.0),
        rel_error=_g(float(np.median(np.minimum(ratios, 1.0))) if ratios.size else 0.0),
        max_abs_error=_g(acc["max"]),
    )


def _twins(debug: Any, checks: Sequence[Any], ops: Sequence[QuantizedOp]) -> dict[int, QuantizedOp]:
    """NumericVerify op index -> the calibrated model's op it checks. The quantizer renames
    tensors as it duplicates ops ("...:01", "tfl.dequantize"; an op that keeps its input's
    scale, like max pooling, is checked against a dequantized copy rather than a float
    twin), so they are paired by order instead: the k-th quantized op of a type is the k-th
    op of that type in the model."""
    defining = {t: op for op in debug._get_ops_details() for t in op["outputs"]}  # noqa: SLF001
    by_type: dict[str, list[QuantizedOp]] = {}
    for op in ops:
        by_type.setdefault(op.op_type, []).append(op)
    seen: dict[int, QuantizedOp] = {}  # float twin op index -> its op
    twins = {}
    for check in checks:
        twin = defining[check["inputs"][0]]  # the quantized op
        if twin["index"] not in seen:
            same = by_type.get(twin["op_name"], [])
            k = sum(1 for op in seen.values() if op.op_type == twin["op_name"])
            name = debug._get_tensor_details(twin["outputs"][0], 0)["name"]  # noqa: SLF001
            seen[twin["index"]] = same[k] if k < len(same) else QuantizedOp(name, twin["op_name"], layer_of(name))
        twins[check["index"]] = seen[twin["index"]]
    return twins


def _interpreter(model: bytes, preserve: bool = False) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No delegate: XNNPACK would fuse ops away and their intermediate tensors with them.
    interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=preserve,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _g(value: float) -> float:
    return float(f"{value:.6g}")  # six significant digits: the same bytes for the same figures


# -- layers.csv -------------------------------------------------------------------------------


def to_csv(rows: Iterable[LayerStats]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, c) for c in COLUMNS])
    return out.getvalue()


def from_csv(text: str) -> list[LayerStats]:
    types = {f.name: f.type for f in fields(LayerStats)}
    convert = {"int": int, "float": float, "str": str}
    return [LayerStats(**{k: convert[types[k]](v) for k, v in row.items()}) for row in csv.DictReader(io.StringIO(text))]


def summary(rows: Sequence[LayerStats], worst: int = 5) -> list[dict[str, Any]]:
    """The worst rows, for build.json and the report."""
    return [asdict(r) for r in rows[:worst]]
