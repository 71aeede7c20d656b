"""Verifying TF.js exports in headless Chromium against verifying them in Node: wall time of
one run over 360 test samples, per TF.js variant, as the verify step pays it (start-up,
model load, all samples, outputs back in Python). Target (issue #13): browser <= 2x Node.

Browser runs are timed two ways: each with its own Chromium (`run_tfjs_browser`), and inside
an open `BrowserSession` (one Chromium, and TF.js loaded once, for every variant); the last
line times verifying all four variants on wasm, Node against one session, start to close.

The model is the digits CNN (tfbuild's `cnn` builder, 8x8x1, one epoch on sklearn's digits),
saved and converted by tfbuild's own steps' code. Each figure is the median of --repeats
rounds, Node and browser interleaved (a shared machine's load hits both alike).

    python benchmarks/browser_vs_node.py [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tfbuild.runtimes.tfjs_browser import BrowserSession, browser_version, run_tfjs_browser  # noqa: E402
from tfbuild.runtimes.tfjs_node import run_tfjs  # noqa: E402

VARIANTS = ("none", "float16", "uint8", "uint16")
SAMPLES = 360


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, 360 test images) from the file sklearn ships."""
    sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    table = np.loadtxt(sklearn_dir / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    x = (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    y = table[:, -1].astype(np.int64)
    order = np.random.RandomState(0).permutation(len(x))
    return x[order[SAMPLES:]], y[order[SAMPLES:]], x[order[:SAMPLES]]


def build(root: Path) -> dict[str, Path]:
    """Train the CNN one epoch, save its serving SavedModel, convert every TF.js variant."""
    import tensorflow as tf
    import tf_keras as keras

    from tfbuild.models.builders import cnn
    from tfbuild.steps.base import StepContext
    from tfbuild.formats.tfjs import TfjsStep

    x_train, y_train, _ = digits()
    keras.utils.set_random_seed(0)
    model = cnn((8, 8, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="inputs")])
    def serve(inputs):
        return {"probabilities": model(inputs, training=False)}

    tf.saved_model.save(model, str(root / "saved_model"), signatures={"serving_default": serve})
    folders = {}
    for variant in VARIANTS:
        folders[variant] = root / f"tfjs_{variant}"
        ctx = StepContext(spec=None, params={"quantization": variant}, inputs={"saved_model": root / "saved_model"},
                          files={}, outputs={"model": folders[variant]})  # type: ignore[arg-type]  # fmt: skip
        TfjsStep().run(ctx)
    return folders


def wall(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the models here (and keep them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="browser-vs-node-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        folders = build(root)
        x = {"inputs": digits()[2]}
        own = {backend: (lambda f, b=backend: run_tfjs_browser(f, x, [b])) for backend in ("wasm", "webgl", "cpu")}
        for folder in folders.values():  # first runs pay for cold caches: not counted
            run_tfjs(folder, x, ["wasm"]), run_tfjs_browser(folder, x, ["wasm"])
        times: dict[tuple[str, str], list[float]] = {}
        totals: dict[str, list[float]] = {"node": [], "session": []}
        for _ in range(args.repeats):
            for variant, folder in folders.items():
                times.setdefault((variant, "node wasm"), []).append(wall(lambda: run_tfjs(folder, x, ["wasm"])))
                for backend, run in own.items():
                    times.setdefault((variant, f"own {backend}"), []).append(wall(lambda: run(folder)))
            with BrowserSession() as session:
                for variant, folder in folders.items():
                    for backend in ("wasm", "webgl", "cpu"):
                        times.setdefault((variant, f"session {backend}"), []).append(
                            wall(lambda: session.run(folder, x, [backend]))
                        )
            totals["node"].append(wall(lambda: [run_tfjs(f, x, ["wasm"]) for f in folders.values()]))
            totals["session"].append(wall(lambda: verify_in_one_session(folders, x)))

    columns = ["node wasm", "own wasm", "own webgl", "own cpu", "session wasm", "session webgl", "session cpu"]
    print(f"{browser_version()}, {SAMPLES} samples, median of {args.repeats} rounds, seconds per run")
    print(f"{'variant':<9}" + "".join(f"{name:>14}" for name in columns) + f"{'own/node':>10}{'session/node':>14}")
    for variant in VARIANTS:
        medians = {name: statistics.median(times[(variant, name)]) for name in columns}
        own_ratio = medians["own wasm"] / medians["node wasm"]
        session_ratio = medians["session wasm"] / medians["node wasm"]
        print(
            f"{variant:<9}" + "".join(f"{medians[name]:>14.2f}" for name in columns)
            + f"{own_ratio:>9.2f}x{session_ratio:>13.2f}x"
        )  # fmt: skip
    node, session = statistics.median(totals["node"]), statistics.median(totals["session"])
    print(
        f"all {len(VARIANTS)} variants on wasm: Node {node:.2f} s ({len(VARIANTS)} runs), one browser session "
        f"{session:.2f} s (start, {len(VARIANTS)} runs, close): {session / node:.2f}x"
    )


def verify_in_one_session(folders: dict[str, Path], x: dict[str, np.ndarray]) -> None:
    with BrowserSession() as session:
        for folder in folders.values():
            session.run(folder, x, ["wasm"])


if __name__ == "__main__":
    main()
