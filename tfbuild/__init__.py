"""tfbuild: a declarative, cached build system for TensorFlow model exports."""

import os

# Keras 2 everywhere: tfmot and tensorflowjs work only with tf_keras, and `tf.keras` must mean
# the same Keras for every module. This has to be set before TensorFlow is first imported,
# and costs nothing here (TensorFlow itself is imported only inside steps that run).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# tensorflowjs imports tensorflow_decision_forests, whose welcome banner tries IPython when
# stdout is not a terminal (builds send it to build.log) and fails without it.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

__version__ = "0.1.0"
