"""`saved_model`: the trained model as a SavedModel with an explicit serving signature.

The signature is `serving_default(inputs: float32[None, *input_shape]) -> {"probabilities":
float32[None, classes]}`, so TF Serving, TFLite and TF.js all see the same named tensors.

The published SavedModel computes as the model was trained (mixed precision keeps its
float16/bfloat16 layers, with a float32 head); with `jit_compile` its serving function is
XLA-compiled, and a second signature, `serving_default_no_xla`, serves without XLA (so the
benchmark can show what XLA buys). TFLite and TF.js cannot convert either (no float16
kernels, no bfloat16, no XLA calls), so for such targets a `portable` SavedModel is also
built: the same weights in float32, no XLA. Exports convert from it, verification uses it as
the reference, and the published SavedModel is verified against it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..savedmodel_bytes import make_reproducible
from .base import StepContext

SIGNATURE = "serving_default"
NO_XLA_SIGNATURE = "serving_default_no_xla"
INPUT_NAME = "inputs"
OUTPUT_NAME = "probabilities"


class SavedModelStep:
    kind = "saved_model"
    version = 3  # 3: function and capture numbers renumbered (savedmodel_bytes)
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
        if ctx.params.get("portable"):
            model = float32_copy(keras, model)
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=INPUT_NAME)

        def serving_function(jit_compile: bool) -> Any:
            @tf.function(input_signature=[spec], jit_compile=jit_compile)
            def serve(inputs):
                return {OUTPUT_NAME: tf.cast(model(inputs, training=False), tf.float32)}

            return serve

        jit = bool(ctx.params.get("jit_compile"))
        serve = serving_function(jit)
        signatures = {SIGNATURE: serve}
        if jit:
            signatures[NO_XLA_SIGNATURE] = serving_function(False)
        tf.saved_model.save(model, str(ctx.outputs["saved_model"]), signatures=signatures)
        # Same model, same bytes, whatever this process traced before.
        make_reproducible(ctx.outputs["saved_model"])
        output_shape = serve.get_concrete_function().structured_outputs[OUTPUT_NAME].shape
        return {
            "signatures": sorted(signatures),
            "compute_dtypes": _compute_dtypes(model),
            "xla": jit,
            "signature": SIGNATURE,
            "inputs": {INPUT_NAME: {"dtype": "float32", "shape": spec.shape.as_list()}},
            "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": output_shape.as_list()}},
        }


def float32_copy(keras: Any, model: Any) -> Any:
    """The same network and weights with every layer computing in float32 (mixed-precision
    variables are float32 already, so the weights carry over as they are)."""

    def as_float32(layer: Any) -> Any:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=as_float32)
    copy.set_weights(model.get_weights())
    return copy


def _compute_dtypes(model: Any) -> list[str]:
    return sorted({layer.compute_dtype for layer in model.layers if layer.weights})
