"""Verifying a web bundle: open its page in Chromium as a user would, and read what it computed.

The folder is served as it is (runtimes/page.py); the page runs its bundled samples on each
backend and publishes the outputs in `window.tfbuildResults`. Anything that would leave a
user with a broken page fails here in one line: an error the page shows, a backend that must
run and did not, a console error, a failed request (a missing .wasm, a missing shard), a
request that leaves the folder's origin (a CDN), or a prediction the page did not show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...runtimes.feeds import match_inputs
from ...runtimes.page import PageError, PageRun, open_page
from ...runtimes.tfjs_graph import TfjsRuntimeError, weight_bytes
from ...runtimes.tfjs_node import time_limit
from ..base import Arrays, Runs
from .bundle import MODEL_DIR, SAMPLES_BIN, SAMPLES_JSON

RESULTS = "tfbuildResults"  # the page's results object (page/app.js)
SHOWN = "[data-prediction]"  # the page's prediction cells
PAGE_BACKENDS = ("webgl", "wasm", "cpu")  # what the page runs, in app.js's order
MAX_REASONS = 3


def check_page(folder: Path, inputs: Arrays, backends: Sequence[str], *, node: str = "node",
               chromium: str | None = None, timeout_s: float | None = None) -> Runs:
    """{runtime label: {output name: float32 [S, ...]}} for each backend the page ran, S the
    bundled samples (the first S of `inputs`, checked). Raises PageError (one line) when the
    page fails, a backend of `backends` did not run, or the page did anything a deployed
    page must not."""
    import numpy as np

    folder = Path(folder)
    meta = _meta(folder)
    count = _check_samples(folder, meta, inputs)
    run = open_page(folder, results=RESULTS, collect=SHOWN, node=node, chromium=chromium,
                    timeout_s=timeout_s if timeout_s is not None else page_time_limit(folder, meta))  # fmt: skip
    _judge(run, meta, backends)
    results = run.results
    runs: Runs = {}
    for backend in PAGE_BACKENDS:
        entry = results["backends"].get(backend) or {}
        if "outputs" not in entry:
            continue
        label = f"{run.browser} web page, TF.js {results['tfjs']} {backend}"
        runs[label] = {
            name: np.asarray(out["values"], np.float32).reshape(out["shape"])[:count]
            for name, out in entry["outputs"].items()
        }
    return runs


def page_time_limit(folder: Path, meta: Mapping[str, Any]) -> float:
    """Seconds the page may take: TF.js's allowance per call for this model and input size
    (runtimes/tfjs_node.py), for one warm-up call and the timed passes, on each backend. WebGL
    in a headless Chromium without a GPU is software (SwiftShader): priced like cpu."""
    try:
        weights = weight_bytes(folder / MODEL_DIR)
    except TfjsRuntimeError:
        weights = 0  # no model.json: the page says so quickly
    values = sum(math.prod(i["shape"][1:]) for i in meta["inputs"])
    calls = 1 + meta["runs"] * meta["samples"]
    return time_limit(calls, values, weights, ["cpu", "wasm", "cpu"], None)


def _meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / SAMPLES_JSON).read_text())
    except FileNotFoundError:
        raise PageError(f"{folder} has no {SAMPLES_JSON}: not a tfbuild web bundle") from None
    except (OSError, ValueError) as error:
        raise PageError(f"{folder / SAMPLES_JSON} is not readable JSON ({error})") from None


def _check_samples(folder: Path, meta: Mapping[str, Any], inputs: Arrays) -> int:
    """The bundled samples must be the first rows of the test inputs, or holding the page's
    outputs to the reference's first rows would prove nothing. Returns how many rows compare."""
    import numpy as np

    feeds = match_inputs(inputs, [i["name"] for i in meta["inputs"]], f"web bundle {folder}")
    count = min([meta["samples"], *(len(x) for x in feeds.values())])
    try:
        data = (folder / SAMPLES_BIN).read_bytes()
    except OSError as error:
        raise PageError(f"cannot read {folder / SAMPLES_BIN}: {error.strerror or error}") from None
    for spec in meta["inputs"]:
        per_sample = math.prod(spec["shape"][1:])
        bundled = np.frombuffer(data, "<" + np.dtype(spec["dtype"]).str[1:], count * per_sample, spec["offset"])
        given = np.asarray(feeds[spec["name"]][:count], spec["dtype"]).reshape(-1)
        if not np.array_equal(bundled, given):
            raise PageError(f"{folder / SAMPLES_BIN}: input '{spec['name']}' is not the first {count} test samples, "
                            "so the page's outputs cannot be held to the reference's first rows")  # fmt: skip
    return count


def _judge(run: PageRun, meta: Mapping[str, Any], backends: Sequence[str]) -> None:
    results = run.results if isinstance(run.results, dict) else {}
    reasons: list[str] = []
    if not results:
        reasons.append(f"the page set no window.{RESULTS} (its scripts did not run)")
    elif run.timed_out:
        reasons.append(f"not done within {run.elapsed_ms / 1000:.3g} s (it said: {results.get('message') or results.get('status')})")
    elif results.get("error"):
        reasons.append(f"the page shows an error: {results['error']}")
    ran = results.get("backends") or {}
    for backend in backends:
        entry = ran.get(backend) or {}
        if results and not run.timed_out and "outputs" not in entry:
            reasons.append(f"backend {backend} did not run ({entry.get('error', 'not tried')})")
    reasons += run.problems()
    for backend, entry in ran.items():
        if "outputs" in entry:
            shown = sum(1 for cell in run.collected if cell.get("backend") == backend)
            wanted = meta["samples"] * len(meta["outputs"])
            if shown != wanted:
                reasons.append(f"backend {backend}: the page shows {shown} of {wanted} predictions")
    if reasons:
        more = f" (and {len(reasons) - MAX_REASONS} more)" if len(reasons) > MAX_REASONS else ""
        raise PageError(f"web page in {run.browser}: {'; '.join(reasons[:MAX_REASONS])}{more}")
