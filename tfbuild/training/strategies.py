"""Training strategies and precision policies, with TensorFlow (imported by the caller).

Each target's strategy is made here and checked against what TensorFlow itself sees, so a
GPU that nvidia-smi lists but a CPU-only TensorFlow cannot use is reported, not silently
replaced by the CPU.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Mapping


# target.strategy -> the tf.distribute name users know (some are aliases of internal classes).
STRATEGY_NAMES = {
    "default": "default strategy",
    "one_device": "OneDeviceStrategy",
    "mirrored": "MirroredStrategy",
    "multi_worker": "MultiWorkerMirroredStrategy",
    "tpu": "TPUStrategy",
}


class TargetUnavailable(RuntimeError):
    """The target's hardware is not usable from TensorFlow; the message says what to do."""


def make_strategy(tf: Any, p: Mapping[str, Any]) -> Any:
    kind = p["strategy"]
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "one_device":
        _need_gpus(tf, 1)
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if kind == "mirrored":
        if p.get("cpu_devices"):
            return tf.distribute.MirroredStrategy(logical_cpus(tf, p["cpu_devices"]))
        gpus = _need_gpus(tf, p["gpus"])
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(gpus))])
    if kind == "multi_worker":
        # Collectives over gRPC between the processes TF_CONFIG names; RING works on CPUs.
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if kind == "tpu":
        tpu = p.get("tpu") or os.environ.get("TPU_NAME") or "local"
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as exc:  # noqa: BLE001 - any failure here means "no TPU for us"
            raise TargetUnavailable(f"target=tpu: cannot reach TPU '{tpu}' ({exc}); use target=cpu") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {kind}")


def logical_cpus(tf: Any, count: int) -> list[str]:
    """Split the CPU into `count` logical devices; only possible before TensorFlow's runtime
    starts, so a process that already used TensorFlow with another split is refused."""
    (cpu,) = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        existing = tf.config.list_logical_devices("CPU")
        if len(existing) != count:
            raise TargetUnavailable(
                f"target.cpu_devices={count}: TensorFlow already started in this process with "
                f"{len(existing)} CPU device(s); build this target in its own tfbuild run"
            ) from None
    return [f"/cpu:{i}" for i in range(count)]


def _need_gpus(tf: Any, count: int) -> list[Any]:
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < count:
        raise TargetUnavailable(
            f"TensorFlow sees {len(gpus)} GPU(s), the target needs {count}: is a CUDA build of "
            "TensorFlow installed (pip install 'tensorflow[and-cuda]')? Or use target=cpu"
        )
    return gpus[:count]


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Keras' global policy for the models built inside; restored after (it is process-wide,
    and the next step or sweep job must not inherit it)."""
    import tf_keras as keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """XLA has no deterministic kernels for some gradients (MaxPool's, for one), and
    TensorFlow refuses to run them while op determinism is on: XLA training runs with it off
    (and says so in the step's info). Restored after, for the steps that follow."""
    from tensorflow.python.framework import config as tf_config  # the public API can only enable it

    was = tf_config.is_op_determinism_enabled()
    if enabled:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()
