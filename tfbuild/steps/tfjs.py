"""`tfjs[variant]`: the SavedModel converted to a TF.js graph model, one step per quantization.

none     float32 weights
float16  float16 weights
uint8    weights quantized to 8 bits (affine, per tensor), dequantized when the model loads
uint16   weights quantized to 16 bits

tensorflowjs writes `model.json` with node attributes in a different key order on every
conversion; it is rewritten with sorted keys so that equal models give equal bytes (and the
verify step runs the rewritten file, so the rewrite is checked on real TF.js).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..conversion import tfjs_unsupported_ops
from ..signature import SIGNATURE
from .base import StepContext
from .compressed import gzip_bytes

QUANTIZATION_MAPS: dict[str, dict[str, str] | None] = {
    "none": None,
    "float16": {"float16": "*"},
    "uint8": {"uint8": "*"},
    "uint16": {"uint16": "*"},
}


def canonicalize_model_json(path: Path) -> None:
    model = json.loads(path.read_text())
    path.write_text(json.dumps(model, sort_keys=True, separators=(",", ":")))


class TfjsStep:
    kind = "tfjs"
    version = 2  # 2: signature names in info; unsupported ops named
    tools = ("tensorflowjs", "tensorflow")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..tfenv import import_tensorflow

        import_tensorflow()
        from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

        quantization = ctx.params["quantization"]
        out = ctx.outputs["model"]
        try:
            # With signature_def, model.json carries the signature's input and output names.
            convert_tf_saved_model(
                str(ctx.inputs["saved_model"]),
                str(out),
                signature_def=SIGNATURE,
                saved_model_tags="serve",
                quantization_dtype_map=QUANTIZATION_MAPS[quantization],
            )
        except ValueError as error:
            unsupported = tfjs_unsupported_ops(error)
            if unsupported is None:
                raise
            raise unsupported from None
        canonicalize_model_json(out / "model.json")
        shards = sorted(p for p in out.iterdir() if p.name != "model.json")
        model = json.loads((out / "model.json").read_text())
        weights, signature = model["weightsManifest"], model.get("signature") or {}
        compressed = gzip_bytes(out)
        return {
            "quantization": quantization,
            "weights": sum(len(group["weights"]) for group in weights),
            "shards": [p.name for p in shards],
            "signature": SIGNATURE,
            "inputs": sorted(signature.get("inputs") or {}),
            "outputs": sorted(signature.get("outputs") or {}),
            "gzip_bytes": compressed,
            "summary": f"gzip {compressed / 1024:.1f} KB",
        }
