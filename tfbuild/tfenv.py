"""Importing TensorFlow the one way tfbuild wants it: Keras 2, quiet, deterministic.

Only steps that run call this; planning and cache hits never do.
"""

from __future__ import annotations

import os


def import_tensorflow():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf_keras for tfmot and tensorflowjs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING lines
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    # Same inputs, same weights, same bytes: byte-identical artifacts across runs on CPU.
    tf.config.experimental.enable_op_determinism()
    # Determinism refuses unseeded random ops, and building a model to load weights into
    # runs its initializers: a step that did not train in this process still needs a seed.
    # Steps that train seed again with their own (train.seed).
    tf.random.set_seed(0)
    return tf


def seed_everything(seed: int) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow generators
