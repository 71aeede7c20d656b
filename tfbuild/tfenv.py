"""Importing TensorFlow the one way tfbuild wants it: Keras 2, quiet, deterministic, with the
threads and oneDNN setting a build asks for.

Only steps that run call this; planning and cache hits never do.

Threads and oneDNN change the bytes training makes (how a sum is split over threads, which
kernels run), and both are fixed when TensorFlow starts in a process: oneDNN when it is
imported, the thread pools when its runtime starts. So a build sets them in the environment
before any TensorFlow import (`set_for_plan`: the main process, and the worker processes,
which inherit it), from the steps' params (train.threads, train.onednn), whatever the user's
environment said; a step that depends on them checks, with `import_tensorflow(numerics)`,
that the process it runs in got them, and fails on one line if not, rather than making bytes
its key does not describe.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Mapping, NamedTuple

from .errors import TfbuildError

# The variables TensorFlow reads when it starts (tensorflow/core/util/util.cc,
# common_runtime/process_util.cc): tfbuild owns them while it builds.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
INTRA_ENV = "TF_NUM_INTRAOP_THREADS"
INTER_ENV = "TF_NUM_INTEROP_THREADS"
NUMERICS_ENV = (ONEDNN_ENV, INTRA_ENV, INTER_ENV)


class Numerics(NamedTuple):  # a NamedTuple: a fifth of a dataclass's import time, on the no-op path
    """The machine-dependent settings a step's bytes depend on, fixed by config: intra- and
    inter-op threads (one number: inter-op threads run independent ops side by side, and
    op determinism makes their order irrelevant, so one knob is enough) and oneDNN."""

    threads: int
    onednn: bool

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> "Numerics | None":
        """The settings in a step's params (train.threads and train.onednn); None without."""
        if "threads" not in params or "onednn" not in params:
            return None
        return cls(int(params["threads"]), bool(params["onednn"]))

    def environment(self) -> dict[str, str]:
        threads = str(self.threads)
        return {ONEDNN_ENV: "1" if self.onednn else "0", INTRA_ENV: threads, INTER_ENV: threads}

    def __str__(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''}, oneDNN {'on' if self.onednn else 'off'}"


# train.threads and train.onednn's defaults (schema.py reads them here). Two threads: a count
# every machine can run (a 1-core one time-slices them at little cost, and the small models
# tfbuild trains gain little beyond two), fixed, so every machine makes the same bytes; a
# bigger machine may ask for more, under another key. oneDNN off: its kernels are chosen per
# CPU and blocked by thread count at run time, Eigen's are compiled into the wheel.
DEFAULT = Numerics(threads=2, onednn=False)

# What TensorFlow in this process started with (None until tfenv imported it).
_process: Numerics | None = None
_onednn_asked = False  # whether the environment asked for oneDNN when it started


def set_for_plan(params: Iterable[Mapping[str, Any]]) -> None:
    """Before a build runs: the environment its steps' numerics ask for, set for this process
    and the workers it starts. The first step that names settings decides (a plan's come from
    one config, so they agree; a step that disagrees fails its own check)."""
    for p in params:
        numerics = Numerics.of(p)
        if numerics is not None:
            os.environ.update(numerics.environment())
            return


def environment_numerics() -> dict[str, str | None]:
    """The numerics variables as this process's environment has them now (a worker pool
    started with other values must be replaced)."""
    return {name: os.environ.get(name) for name in NUMERICS_ENV}


def started_otherwise() -> bool:
    """Whether TensorFlow already runs in this process with other threads or oneDNN than the
    environment asks for now (a sweep's next job sets other train.threads): its steps must
    then run in a fresh process."""
    threads = _int(os.environ.get(INTRA_ENV))
    if _process is None or not threads:
        return False
    return _process != Numerics(threads, os.environ.get(ONEDNN_ENV) == "1")


def import_tensorflow(numerics: Numerics | None = None):
    """TensorFlow, set up. With `numerics` (a step whose bytes depend on them): set before the
    import if this process has not imported TensorFlow yet, and checked against what it runs
    with otherwise (TfbuildError when they differ)."""
    if "tensorflow" not in sys.modules and (numerics is not None or INTRA_ENV not in os.environ):
        # A step's own settings; else a build's (set_for_plan), else the defaults: TensorFlow
        # never starts here with the machine's core count or the user's oneDNN setting.
        os.environ.update((numerics or DEFAULT).environment())
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf_keras for tfmot and tensorflowjs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING lines
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import tensorflow as tf

    global _process
    if _process is None:
        _process = _started(tf)
    tf.get_logger().setLevel("ERROR")
    # Same inputs, same weights, same bytes: byte-identical artifacts across runs on CPU.
    tf.config.experimental.enable_op_determinism()
    # Determinism refuses unseeded random ops, and building a model to load weights into
    # runs its initializers: a step that did not train in this process still needs a seed.
    # Steps that train seed again with their own (train.seed).
    tf.random.set_seed(0)
    if numerics is not None:
        _check(tf, numerics)
    return tf


def _started(tf: Any) -> Numerics:
    """The settings TensorFlow runs with in this process, made explicit where they still can
    be: the thread counts from the environment, set before the runtime starts (0 threads: the
    machine's CPU count, as TensorFlow's default)."""
    global _onednn_asked
    _onednn_asked = os.environ.get(ONEDNN_ENV) == "1"
    threads = _int(os.environ.get(INTRA_ENV))
    inter = _int(os.environ.get(INTER_ENV))
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the runtime started before tfbuild's import: it read the environment then
        pass
    return Numerics(tf.config.threading.get_intra_op_parallelism_threads() or threads, _onednn_enabled())


def _check(tf: Any, wanted: Numerics) -> None:
    global _process
    assert _process is not None
    if _process.threads != wanted.threads:
        try:  # the runtime may not have started yet: then the count can still be set
            tf.config.threading.set_intra_op_parallelism_threads(wanted.threads)
            tf.config.threading.set_inter_op_parallelism_threads(wanted.threads)
            _process = Numerics(wanted.threads, _process.onednn)
        except RuntimeError:
            pass
    if wanted.onednn and not _process.onednn and _onednn_asked:
        raise TfbuildError("train.onednn=true: this TensorFlow has no oneDNN kernels (TF_ENABLE_ONEDNN_OPTS=1 "
                           "turned nothing on); set train.onednn=false")  # fmt: skip
    if _process != wanted:
        running = "the machine's CPU count of threads" if not _process.threads else f"{_process.threads} threads"
        raise TfbuildError(
            f"train.threads={wanted.threads}, train.onednn={str(wanted.onednn).lower()}: TensorFlow already runs in "
            f"this process with {running} and oneDNN {'on' if _process.onednn else 'off'}, which would make other "
            "bytes than the key says; build it in its own tfbuild run (a sweep over these keys: one run per value)"
        )


def _onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN kernels are on in this process (decided at its import)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def seed_everything(seed: int) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow generators
