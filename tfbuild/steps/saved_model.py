"""`saved_model`: the model as a SavedModel with an explicit serving signature.

`serving_default` takes the Keras model's inputs by their names and returns its outputs by
their names, as float32 (e.g. `inputs: float32[None, 8, 8, 1] -> {"probabilities":
float32[None, 10]}`), so TF Serving, TFLite and TF.js all see the same named tensors. A model
the user brings as a plain SavedModel (not Keras) keeps its own `serving_default`.

The published SavedModel computes as the model was trained (mixed precision keeps its
float16/bfloat16 layers, with a float32 head); with `jit_compile` its serving function is
XLA-compiled, and a second signature, `serving_default_no_xla`, serves without XLA (so the
benchmark can show what XLA buys). TFLite and TF.js cannot convert either (no float16
kernels, no bfloat16, no XLA calls), so for such targets a `portable` SavedModel is also
built: the same weights in float32, no XLA. Exports convert from it, verification uses it as
the reference, and the published SavedModel is verified against it.
"""

from __future__ import annotations

from typing import Any

from ..savedmodel_bytes import make_reproducible
from ..signature import NO_XLA_SIGNATURE, SIGNATURE
from .base import StepContext


class SavedModelStep:
    kind = "saved_model"
    version = 4  # 4: inputs and outputs named as the model names them
    tools = ("tensorflow", "tf-keras")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..models.model_file import ServingFunction, load_model
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        import tf_keras as keras

        p = ctx.params
        path = ctx.inputs["model"] if "model" in ctx.inputs else ctx.files["model"]
        # A model the train step saved holds what the user's builder made (code that ran to
        # make it); a file the user brings runs its code only if model.trust_code says so.
        trust = "model" in ctx.inputs or bool(p.get("trust_code"))
        model = load_model(path, p.get("modules", []), bool(p.get("quantize_scope")), ctx.files, trust_code=trust)
        out = ctx.outputs["saved_model"]
        jit = bool(p.get("jit_compile"))
        if isinstance(model, ServingFunction):  # a plain SavedModel: its own signature, re-saved
            serve = model.function(jit)
            tf.saved_model.save(model.root, str(out), signatures={SIGNATURE: serve})
            make_reproducible(out)
            return _signature_info(serve.get_concrete_function(), [SIGNATURE], [], xla=jit)
        if p.get("portable"):
            model = float32_copy(keras, model)
        serve = serving_function(tf, model, jit)
        signatures = {SIGNATURE: serve}
        if jit:
            signatures[NO_XLA_SIGNATURE] = serving_function(tf, model, False)
        tf.saved_model.save(model, str(out), signatures=signatures)
        # Same model, same bytes, whatever this process traced before.
        make_reproducible(out)
        return _signature_info(serve.get_concrete_function(), sorted(signatures), _compute_dtypes(model), xla=jit)


def serving_function(tf: Any, model: Any, jit_compile: bool) -> Any:
    """model(inputs by name) -> {output name: float32}, traced for any batch size."""
    names = list(model.input_names)
    specs = [
        tf.TensorSpec([None, *t.shape[1:]], t.dtype if t.dtype.is_integer else tf.float32, name=name)
        for t, name in zip(model.inputs, names)
    ]
    output_names = list(model.output_names)

    @tf.function(input_signature=specs, jit_compile=jit_compile)
    def serve(*inputs):
        result = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(result, dict):
            return {name: tf.cast(value, tf.float32) for name, value in result.items()}
        values = result if isinstance(result, (list, tuple)) else [result]
        return {name: tf.cast(value, tf.float32) for name, value in zip(output_names, values)}

    return serve


def _signature_info(concrete: Any, signatures: list[str], compute_dtypes: list[str], *, xla: bool) -> dict[str, Any]:
    inputs = concrete.structured_input_signature[1] or {
        spec.name: spec for spec in concrete.structured_input_signature[0]
    }
    outputs = concrete.structured_outputs

    def described(spec: Any) -> dict[str, Any]:
        return {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}

    return {
        "signatures": signatures,
        "compute_dtypes": compute_dtypes,
        "xla": xla,
        "signature": SIGNATURE,
        "inputs": {name: described(spec) for name, spec in inputs.items()},
        "outputs": {name: described(spec) for name, spec in outputs.items()},
        "summary": f"{len(inputs)} input{'s' if len(inputs) > 1 else ''} -> {', '.join(outputs)}",
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
