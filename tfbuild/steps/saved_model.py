"""`saved_model`: the trained model as a SavedModel with an explicit serving signature.

The signature is `serving_default(inputs: float32[None, *input_shape]) -> {"probabilities":
float32[None, classes]}`, so TF Serving, TFLite and TF.js all see the same named tensors.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .base import StepContext

SIGNATURE = "serving_default"
INPUT_NAME = "inputs"
OUTPUT_NAME = "probabilities"


class SavedModelStep:
    kind = "saved_model"
    version = 1
    tools = ("tensorflow", "tf-keras")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        import tf_keras as keras

        scope = contextlib.nullcontext()
        if ctx.params.get("quantize_scope"):
            import tensorflow_model_optimization as tfmot

            scope = tfmot.quantization.keras.quantize_scope()
        with scope:
            model = keras.models.load_model(ctx.inputs["model"], compile=False)
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=INPUT_NAME)

        @tf.function(input_signature=[spec])
        def serve(inputs):
            return {OUTPUT_NAME: tf.cast(model(inputs, training=False), tf.float32)}

        tf.saved_model.save(model, str(ctx.outputs["saved_model"]), signatures={SIGNATURE: serve})
        output_shape = serve.get_concrete_function().structured_outputs[OUTPUT_NAME].shape
        return {
            "signature": SIGNATURE,
            "inputs": {INPUT_NAME: {"dtype": "float32", "shape": spec.shape.as_list()}},
            "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": output_shape.as_list()}},
        }
