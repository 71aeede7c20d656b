"""What a TF.js graph model folder says about itself: its signature's names and dtypes (the
SavedModel's `serving_default`, which the converter copies into model.json) and its size.
Read with json alone: asking what a model takes costs no TensorFlow and no Node."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any



class TfjsRuntimeError(RuntimeError):
    """TF.js could not run the model; the message is one line meant for the user."""


# TF dtypes TF.js takes as float32 or int32 tensors (TF.js has no int64: int64 ids go in as int32).
FEED_DTYPES = {"DT_FLOAT": "<f4", "DT_INT32": "<i4", "DT_INT64": "<i4", "DT_INT16": "<i4", "DT_INT8": "<i4", "DT_UINT8": "<i4"}


@dataclass(frozen=True)
class GraphSignature:
    inputs: dict[str, str]  # name -> the .npy dtype to feed ('<f4' or '<i4')
    outputs: list[str]  # names, in model.json's order


def read_model_json(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "model.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TfjsRuntimeError(f"no model.json in {model_dir}: not a TF.js graph model folder") from None
    except (OSError, ValueError) as error:
        raise TfjsRuntimeError(f"{path} is not readable JSON ({error})") from None


def graph_signature(model_dir: Path) -> GraphSignature:
    signature = read_model_json(model_dir).get("signature") or {}
    if not signature.get("inputs"):
        raise TfjsRuntimeError(
            f"{Path(model_dir) / 'model.json'} has no signature: convert the SavedModel with its "
            f"serving signature (tensorflowjs signature_def='serving_default')"
        )
    inputs = {}
    for name, tensor in signature["inputs"].items():
        dtype = tensor.get("dtype", "DT_FLOAT")
        if dtype not in FEED_DTYPES:
            raise TfjsRuntimeError(f"input '{name}' of {model_dir} is {dtype}; this runner feeds {sorted(FEED_DTYPES)}")
        inputs[name] = FEED_DTYPES[dtype]
    return GraphSignature(inputs, list(signature.get("outputs") or {}))


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight shards model.json lists (missing shards count 0: tfjs_run names them)."""
    manifest = read_model_json(model_dir).get("weightsManifest") or []
    files = [Path(model_dir) / p for group in manifest for p in group.get("paths", [])]
    return sum(f.stat().st_size for f in files if f.is_file())
