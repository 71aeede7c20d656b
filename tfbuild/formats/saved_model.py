"""The SavedModel format: what TF Serving and TensorFlow users load, and what every other
format converts from. The resolver always plans its step (steps/saved_model.py); this module
holds what it is verified and timed on: TensorFlow itself.

It is verified only when it differs from what the exports convert (mixed precision or XLA):
then the served SavedModel is held to its float32, XLA-free twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..signature import NO_XLA_SIGNATURE, SIGNATURE
from .base import Arrays, Format, Runs, Scorer

if TYPE_CHECKING:  # types only: planning passes a DictConfig; the no-op shortcut imports no OmegaConf
    from omegaconf import DictConfig


def verify(path: Path, inputs: Arrays, params: Any) -> Runs:
    from ..runtimes.savedmodel import run_saved_model

    return {"TensorFlow SavedModel": run_saved_model(path, inputs)}


def benchmark(path: Path, inputs: Arrays, score: Scorer, params: Any, protocol: Any) -> dict[str, Any]:
    """TensorFlow in a session, on the graph TF Serving runs (its ops in the calling thread)."""
    from ..runtimes.feeds import first_sample, tiled
    from ..runtimes.savedmodel import SavedModelSession
    from ..runtimes.timing import figures, time_rounds
    from ..tfenv import import_tensorflow

    tf = import_tensorflow()
    # With XLA, the served signature is compiled; its uncompiled twin shows what XLA buys.
    signatures = {"XLA": SIGNATURE, "no XLA": NO_XLA_SIGNATURE} if params.get("xla") else {"": SIGNATURE}
    rows = {}
    for label, signature in signatures.items():
        # Ops in the calling thread: a hand-off to a pool thread per call is the scheduler's noise.
        session = SavedModelSession(path, params["threads"], signature, caller_thread=True)
        try:
            outputs = session.predict(inputs)
            one, batch = first_sample(inputs), tiled(inputs, params["batch_size"])
            latency, batches = time_rounds(lambda: session.predict(one), lambda: session.predict(batch), protocol)
        finally:
            session.close()
        runtime = f"TensorFlow {tf.__version__}" + (f" ({label})" if label else "")
        samples = len(next(iter(outputs.values())))
        rows[runtime] = figures(runtime, params["threads"], latency, batches, params["batch_size"], score(outputs), samples)
    return rows


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    if purpose == "verify":
        return {}, {}
    params: dict[str, Any] = {"threads": cfg.benchmark.threads}
    if cfg.target.jit_compile:
        params["xla"] = True  # timed with and without XLA
    return params, {}


SAVED_MODEL = Format(
    name="saved_model",
    title="SavedModel",
    summary="a TensorFlow SavedModel with a named serving_default signature (TF Serving, TensorFlow)",
    steps=(),  # steps/saved_model.py: planned whatever the formats (everything converts from it)
    # The served SavedModel against its float32, XLA-free twin (mixed precision or XLA only).
    tolerances={"": {"max_abs_diff": 0.05, "min_top1_agreement": 0.98}},
    verify=verify,
    benchmark=benchmark,
    runtime_params=runtime_params,
    tools=("tensorflow",),
)
