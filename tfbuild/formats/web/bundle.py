"""The `web` bundle: a static folder that runs a TF.js model in the browser, deployable as it is.

    index.html, app.js, style.css        the page (tfbuild/formats/web/page/)
    tf.min.js, tf-backend-wasm.min.js    TF.js and its wasm backend, byte copies from the
    tfjs-backend-wasm*.wasm              npm packages the repo pins (no CDN: works offline)
    model/model.json, model/*.bin        the TF.js graph model, byte copies
    samples.json, samples.bin            the first test samples: inputs, labels, class names

samples.bin holds each input's samples as little-endian float32 or int32 (the dtype the model
takes), one input after the other; samples.json says where each starts. A binary file keeps
a 224x224 image bundle small (JSON numbers would be ~5x larger) and its bytes exact.
Every file is a pure function of the model, the split and the page, so equal inputs give a
byte-identical folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ...errors import DataError
from ...runtimes.feeds import match_inputs
from ...runtimes.tfjs_graph import graph_signature
from ...runtimes.tfjs_node import NODE_MODULES

if TYPE_CHECKING:
    from ...datasets.split import Split

PAGE_DIR = Path(__file__).with_name("page")
PAGE_FILES = ("index.html", "app.js", "style.css")
# bundle file -> where it comes from under node_modules (keyed by the npm lockfile).
RUNTIME_FILES = {
    "tf.min.js": "@tensorflow/tfjs/dist/tf.min.js",
    "tf-backend-wasm.min.js": "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
    "tfjs-backend-wasm.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "tfjs-backend-wasm-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "tfjs-backend-wasm-threaded-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
}
MODEL_DIR = "model"
SAMPLES_JSON = "samples.json"
SAMPLES_BIN = "samples.bin"
# Timed passes over the samples per backend; the page shows their median latency.
TIMED_RUNS = 3
FEED_TYPES = {"<f4": "float32", "<i4": "int32"}  # graph_signature's feed dtypes -> TF.js dtypes


def write_bundle(out: Path, model_dir: Path, split: Split, page: Mapping[str, Path], *,
                 samples: int, title: str, variant: str, task: str = "classification",
                 task_outputs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write the bundle into `out` (a new folder); returns what the step records.
    `page`: bundle file name -> source file. `task` and `task_outputs` (the config's
    task.name and task.outputs) give the outputs' tasks when the split has no targets
    (generated inputs)."""
    out.mkdir(parents=True)
    for name, source in page.items():
        shutil.copyfile(source, out / name)
    for name, source in RUNTIME_FILES.items():
        file = NODE_MODULES / source
        if not file.is_file():
            raise DataError(f"{file} is missing: the web bundle copies TF.js from node_modules; run `make setup` (npm ci)")
        shutil.copyfile(file, out / name)
    (out / MODEL_DIR).mkdir()
    for file in sorted(model_dir.iterdir()):
        shutil.copyfile(file, out / MODEL_DIR / file.name)
    tasks = (task, dict(task_outputs or {}))
    described = _write_samples(out, out / MODEL_DIR, split, samples, tasks, title=title, variant=variant)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {**described, "bytes": size, "summary": f"{described['samples']} samples, {size / 2**20:.1f} MB"}


def _write_samples(out: Path, model_dir: Path, split: Split, limit: int, tasks: tuple[str, dict[str, str]],
                   **header: Any) -> dict[str, Any]:
    import numpy as np

    signature = graph_signature(model_dir)
    if not signature.outputs:
        raise DataError(f"{model_dir / 'model.json'} names no outputs in its signature: the page would not know what to show")
    count = min(limit, split.count("test"))
    if count == 0:
        raise DataError("the test split is empty: the web page has no samples to run")
    feeds = match_inputs(split.inputs("test", count), list(signature.inputs), f"TF.js model {model_dir}")
    inputs, offset = [], 0
    with open(out / SAMPLES_BIN, "wb") as binary:
        for name, values in feeds.items():
            array = np.ascontiguousarray(values, dtype=signature.inputs[name])
            binary.write(array.tobytes())
            inputs.append({"name": name, "dtype": FEED_TYPES[signature.inputs[name]], "shape": list(array.shape),
                           "offset": offset, "image": _is_image(array.shape[1:])})  # fmt: skip
            offset += array.nbytes
    outputs = _outputs(signature.outputs, split, count, tasks)
    meta = {**header, "model": f"{MODEL_DIR}/model.json", "samples": count, "runs": TIMED_RUNS,
            "inputs": inputs, "outputs": outputs}  # fmt: skip
    (out / SAMPLES_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    return {"samples": count, "inputs": [i["name"] for i in inputs],
            "outputs": {o["name"]: o["task"] for o in outputs}}  # fmt: skip


def _outputs(names: list[str], split: Split, count: int, tasks: tuple[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Per model output: its task, and (with labelled data) the paired target's values on the
    bundled samples and its class names."""
    from ...metrics import CLASSIFICATION, output_tasks, pair_outputs

    if split.generated or not split.target_names:
        by_task = output_tasks(names, None, task=tasks[0], task_outputs=tasks[1])
        return [{"name": n, "task": by_task[n], "target": None, "expected": None, "classes": None} for n in names]
    pairs = pair_outputs(names, split.target_names)
    targets, target_tasks = split.targets("test", count), split.tasks()
    class_names = split.meta.get("class_names") or {}
    described = []
    for name in names:
        target = pairs[name]
        task = target_tasks[target]
        values = targets[target]
        expected = [int(v) for v in values] if task == CLASSIFICATION else [_floats(v) for v in values]
        classes = class_names.get(target) if task == CLASSIFICATION else None
        described.append({"name": name, "task": task, "target": target, "expected": expected, "classes": classes})
    return described


def _floats(value: Any) -> list[float]:
    import numpy as np

    return [float(v) for v in np.asarray(value, np.float32).reshape(-1)]


def _is_image(shape: tuple[int, ...]) -> bool:
    """(H, W, 1 or 3) with sides of 4+ pixels: drawn as a thumbnail beside its predictions."""
    return len(shape) == 3 and shape[2] in (1, 3) and min(shape[:2]) >= 4
