"""The pinned stack imports together (../shared/STACK.md lists how it breaks)."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_pinned_packages_import_together():
    code = (
        "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
        "import tensorflow as tf, tf_keras, tensorflowjs, tensorflow_model_optimization\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "assert tf.__version__.startswith('2.19'), tf.__version__\n"
        "assert tf.keras.layers.Dense is tf_keras.layers.Dense, 'tf.keras is not Keras 2'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
