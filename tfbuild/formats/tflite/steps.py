"""The TFLite format's steps.

tflite[VARIANT]         SavedModel -> .tflite (int8: with `export.tflite.int8.float_layers`,
                        or the repair's chosen set, kept in float)
tflite_layers[int8]     the per-layer quantization report, tflite/int8/layers.csv
tflite_repair[int8]     what keeping ops in float costs and buys, on the validation split;
                        with `max_metric_drop`, the search for the set that meets it
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ...plan import StepSpec
from ...signature import SIGNATURE
from ...steps.base import StepContext
from ...steps.compressed import gzip_bytes
from .convert import CALIBRATED, CalibrationSet, calibrated_model, calibration_set, converted, converter_for, quantized

FLOAT_LAYERS_KEY = "export.tflite.int8.float_layers"
TOOLS = ("tensorflow", "ai-edge-litert")
# Enough calls for a stable median on models this small, in well under a second.
COST_TIMING = {"warmup": 20, "min_runs": 100, "min_seconds": 0.2}


def _calibration(ctx: StepContext) -> CalibrationSet:
    from ...runtimes.savedmodel import signature_dtypes

    input_dtypes, _ = signature_dtypes(ctx.inputs["saved_model"])
    return calibration_set(ctx.inputs["data"], input_dtypes, ctx.params["calibration_samples"])


def _tensorflow(ctx: StepContext) -> Any:
    """TensorFlow; with the threads and oneDNN setting a calibrating step's params name."""
    from ...tfenv import Numerics, import_tensorflow

    return import_tensorflow(Numerics.of(ctx.params))


def _calibration_machine(spec: StepSpec) -> dict[str, str] | None:
    """Calibration runs the float model on this CPU's kernels, and the ranges it finds set the
    int8 scales: a calibrating step's key names the CPU family (StepKind.machine)."""
    from ...machine import key_entry

    return key_entry(accelerator=False) if "calibration_samples" in spec.params else None


def tensor_summary(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    summary = {"dtype": details["dtype"].__name__, "shape": details["shape_signature"].tolist()}
    if scale:
        summary["scale"], summary["zero_point"] = float(scale), int(zero_point)
    return summary


class TfliteStep:
    kind = "tflite"
    version = 3  # 3: int8 ops kept in float; calibration recorded with its digest
    tools = TOOLS
    machine = staticmethod(_calibration_machine)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ...runtimes.litert import LiteRtModel
        from .layers import matching_ops, quantizable_ops

        tf = _tensorflow(ctx)
        quantization = ctx.params["quantization"]
        saved_model = str(ctx.inputs["saved_model"])
        info: dict[str, Any] = {"quantization": quantization}
        calibration = _calibration(ctx) if quantization in CALIBRATED else None
        samples = calibration.samples if calibration else None
        patterns = list(ctx.params.get("float_layers") or ())
        if "repair" in ctx.inputs or patterns:
            assert calibration is not None
            calibrated = calibrated_model(tf, saved_model, calibration.samples)
            if "repair" in ctx.inputs:
                float_ops = json.loads(ctx.inputs["repair"].read_text())["float_ops"]
            else:
                float_ops = matching_ops(patterns, quantizable_ops(calibrated), FLOAT_LAYERS_KEY)
            # No op in float (the repair found full int8 good enough): the converter's own model.
            flatbuffer = quantized(tf, calibrated, float_ops) if float_ops else converted(converter_for(tf, saved_model, quantization, samples))
            info["float_ops"] = float_ops
        else:
            flatbuffer = converted(converter_for(tf, saved_model, quantization, samples))
        ctx.outputs["model"].write_bytes(flatbuffer)

        model = LiteRtModel(ctx.outputs["model"])  # LiteRT loads it, and by its signature
        compressed = gzip_bytes(ctx.outputs["model"])
        summary = f"gzip {compressed / 1024:.1f} KB"
        if info.get("float_ops"):
            summary += f", {len(info['float_ops'])} ops in float"
        return {
            **info,
            # Pruned zeros and clustered weights do not shrink a .tflite, but compress well.
            "gzip_bytes": compressed,
            "summary": summary,
            "calibration_samples": calibration.count if calibration else None,
            "calibration": calibration.record() if calibration else None,
            "signature": SIGNATURE,
            "inputs": {name: tensor_summary(d) for name, d in model.input_details().items()},
            "outputs": {name: tensor_summary(d) for name, d in model.output_details().items()},
        }


class TfliteLayersStep:
    kind = "tflite_layers"
    version = 1
    tools = TOOLS
    machine = staticmethod(_calibration_machine)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from .layers import ROUNDING_ONLY, layer_statistics, summary, to_csv

        tf = _tensorflow(ctx)
        calibration = _calibration(ctx)
        ctx.progress.start(2, "calibrating")
        calibrated = calibrated_model(tf, str(ctx.inputs["saved_model"]), calibration.samples)
        ctx.progress.advance(f"comparing each op with its float twin on {calibration.count} samples")
        rows = layer_statistics(tf, calibrated, calibration.samples)
        ctx.progress.advance()
        ctx.outputs["layers"].write_text(to_csv(rows))
        worst = rows[0] if rows else None
        text = "no quantized op" if worst is None else (
            f"worst: {worst.layer or worst.op_type} ({worst.op_type}) loses {worst.rel_error:.0%} "
            f"of its output, rmse/scale {worst.rmse_over_scale:.2f}")  # fmt: skip
        return {
            "ops": len(rows),
            "worst": summary(rows),
            "beyond_rounding": sum(1 for r in rows if r.rmse_over_scale > 2 * ROUNDING_ONLY),
            "calibration": calibration.record(),
            "summary": text,
        }


class TfliteRepairStep:
    kind = "tflite_repair"
    version = 1
    tools = TOOLS
    machine = staticmethod(_calibration_machine)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import numpy as np

        from ...agreement import compare_outputs, violations, worst
        from ...datasets.split import Split
        from ...metrics import output_tasks
        from ...runtimes.litert import LiteRtModel
        from ...runtimes.savedmodel import run_saved_model
        from ...runtimes.timing import Protocol, latency_figures, time_calls
        from .layers import from_csv, matching_ops, quantizable_ops
        from .repair import Trial, metric_drop, search, trial_record

        tf = _tensorflow(ctx)
        p = ctx.params
        target, tolerance = p["max_metric_drop"], p["tolerance"]
        split = Split(ctx.inputs["data"])
        # The validation split, not the test split: the test split stays for verification.
        part = "validation" if split.count("validation") else "train"
        inputs = {k: np.asarray(v) for k, v in split.inputs(part).items()}
        targets = {k: np.asarray(v) for k, v in split.targets(part).items()}
        reference = run_saved_model(ctx.inputs["saved_model"], inputs)
        tasks = output_tasks(list(reference), split.tasks())
        calibration = _calibration(ctx)
        calibrated = calibrated_model(tf, str(ctx.inputs["saved_model"]), calibration.samples)
        ops = quantizable_ops(calibrated)
        kept = matching_ops(p["float_layers"], ops, FLOAT_LAYERS_KEY) if p["float_layers"] else []
        ranked = [r.op for r in from_csv(ctx.inputs["layers"].read_text()) if r.op not in kept]
        models: dict[tuple[str, ...], bytes] = {}

        with tempfile.TemporaryDirectory(prefix="tfbuild-repair-") as scratch:
            def run(float_ops: list[str]) -> Any:
                key = tuple(float_ops)
                if key not in models:
                    models[key] = quantized(tf, calibrated, float_ops)
                path = Path(scratch) / f"{list(models).index(key)}.tflite"  # one file per candidate
                path.write_bytes(models[key])
                return LiteRtModel(path, threads=1), len(models[key])

            measured: dict[tuple[str, ...], Trial] = {}

            def evaluate(float_ops: list[str]) -> Trial:
                if tuple(float_ops) in measured:  # full int8 is the search's first candidate too
                    return measured[tuple(float_ops)]
                model, size = run(float_ops)
                outputs = model.predict(inputs)
                output, metric, value, ref, drop = metric_drop(outputs, reference, targets, split.tasks())
                per_output = compare_outputs(outputs, reference, tasks)
                held = not violations(per_output, tolerance)
                ctx.progress.advance(f"{len(float_ops)} ops in float: {metric} drop {_drop_text(metric, drop)}")
                added = float_ops[-1] if len(float_ops) > len(kept) else ""
                trial = Trial(len(float_ops), added, output, metric, value, ref, drop, size,
                              worst(per_output.values())["top1_agreement"], held,
                              held and (target is None or drop <= target))
                return measured.setdefault(tuple(float_ops), trial)

            def latency(float_ops: list[str]) -> float:
                model, _ = run(float_ops)
                one = model.prepare({k: v[:1] for k, v in inputs.items()})
                return latency_figures([time_calls(lambda: model.invoke(one), Protocol(**COST_TIMING))])["p50_ms"]

            ctx.progress.start(2 + len(ranked).bit_length() + bool(kept), "measuring full int8")
            full = evaluate([])
            if target is None:
                chosen, trials = kept, [full, evaluate(kept)]
            else:
                chosen, trials = search(ranked, kept, evaluate, target)
                trials = [full, *trials] if kept else trials
            chosen_trial = measured[tuple(chosen)]
            full_ms, chosen_ms = latency([]), latency(chosen)

        ctx.outputs["repair"].write_text(json.dumps({"float_ops": chosen}, indent=1) + "\n")
        info: dict[str, Any] = {
            "max_metric_drop": target, "tolerance": tolerance, "split": part, "samples": split.count(part),
            "reference": {"output": full.output, "metric": full.metric, "value": full.reference},
            "full_int8": {**_figures(full), "p50_ms": full_ms},
            "chosen": {**_figures(chosen_trial), "p50_ms": chosen_ms, "float_ops": chosen},
            "quantized_ops": len(ops), "trials": trial_record(trials),
            "summary": (f"{len(chosen)} of {len(ops)} ops in float: {full.metric} drop {_drop(full)} -> "
                        f"{_drop(chosen_trial)}, {full.bytes / 1024:.1f} -> {chosen_trial.bytes / 1024:.1f} KB"),
        }  # fmt: skip
        if target is not None:
            # A pin records the chosen set, so a release rebuild converts it without searching.
            info["pin"] = {FLOAT_LAYERS_KEY: chosen, "export.tflite.int8.max_metric_drop": None,
                           "export.tflite.int8.debug": True}  # fmt: skip
        return info


def _drop_text(metric: str, drop: float) -> str:
    return f"{drop * 100:.1f} pts" if metric == "accuracy" else f"{drop:.4g}"


def _drop(trial: Any) -> str:
    return _drop_text(trial.metric, trial.drop)


def _figures(trial: Any) -> dict[str, Any]:
    return {"output": trial.output, "metric": trial.metric, "value": trial.value, "drop": trial.drop,
            "bytes": trial.bytes}  # fmt: skip
