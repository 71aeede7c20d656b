"""The default recipe's TensorFlow work as a plain script, with no build system: the baseline
that `build_speed.py` and `sweep_speed.py` hold tfbuild against.

Same data file, split, model, training, SavedModel signature, TFLite conversions,
verification (each .tflite run on LiteRT against the reloaded SavedModel) and benchmarks
(the same timing protocol: 50 warm-up calls, then at least 50 calls and 0.2 s, at batch 1
and at batch 32, for the SavedModel and each .tflite) as `tfbuild recipe=digits`; no
caching, no hashing, no records.

    python benchmarks/plain_digits.py OUT_DIR [float,dynamic,fp16,int8]
"""

import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
VARIANTS = sys.argv[2].split(",") if len(sys.argv) > 2 else ["float", "dynamic", "fp16", "int8"]

sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
table = np.loadtxt(sklearn_dir / "datasets" / "data" / "digits.csv.gz", delimiter=",")
x = (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
y = table[:, -1].astype(np.int64)
order = np.random.RandomState(0).permutation(len(x))
n_test, n_val = round(len(x) * 0.2), round(len(x) * 0.1)
test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]

tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 1), name="inputs")
h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
h = keras.layers.MaxPooling2D(2)(h)
h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
h = keras.layers.Flatten()(h)
h = keras.layers.Dense(64, activation="relu")(h)
h = keras.layers.Dropout(0.1)(h)
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", dtype="float32")(h))
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=5, batch_size=32, verbose=0)
print("test accuracy", model.evaluate(x[test], y[test], verbose=0)[1])


@tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="inputs")])
def serve(inputs):
    return {"probabilities": model(inputs, training=False)}


tf.saved_model.save(model, str(out / "saved_model"), signatures={"serving_default": serve})


def representative():
    for sample in x[train][:100]:
        yield [sample[None]]


for variant in VARIANTS:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"))
    if variant != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    (out / f"model_{variant}.tflite").write_bytes(converter.convert())


# Verification, as a careful script would do it: the reloaded SavedModel is the reference.
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

serving = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
reference = serving(inputs=tf.constant(x[test]))["probabilities"].numpy()
for variant in VARIANTS:
    interpreter = Interpreter(model_path=str(out / f"model_{variant}.tflite"))
    interpreter.resize_tensor_input(0, list(x[test].shape))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = x[test]
    if inp["quantization"][0]:
        scale, zero = inp["quantization"]
        batch = np.clip(np.round(batch / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], batch)
    interpreter.invoke()
    result = interpreter.get_tensor(outp["index"]).astype(np.float32)
    if outp["quantization"][0]:
        scale, zero = outp["quantization"]
        result = (result - zero) * scale
    agreement = np.mean(result.argmax(1) == reference.argmax(1))
    print(f"{variant}: top-1 agreement {agreement:.3f}, max abs diff {np.abs(result - reference).max():.2e}")


# Benchmarks: latency at batch 1 and throughput at batch 32, SavedModel and each .tflite.
def timed(call):
    for _ in range(50):
        call()
    times, started = [], time.perf_counter()
    while len(times) < 50 or time.perf_counter() - started < 0.2:
        before = time.perf_counter()
        call()
        times.append(time.perf_counter() - before)
    return np.percentile(times, 50) * 1000


graph = tf.Graph()
with graph.as_default():
    session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1))
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(out / "saved_model"))
signature = meta.signature_def["serving_default"]
serve = session.make_callable(signature.outputs["probabilities"].name, feed_list=[signature.inputs["inputs"].name])
accuracy = np.mean(serve(x[test]).argmax(1) == y[test])
p50 = timed(lambda: serve(x[test][:1]))
timed(lambda: serve(np.resize(x[test], (32, 8, 8, 1))))
print(f"saved_model: p50 {p50:.4f} ms, accuracy {accuracy:.4f}")
for variant in VARIANTS:
    interpreter = Interpreter(model_path=str(out / f"model_{variant}.tflite"), num_threads=1)
    for batch in (x[test][:1], np.resize(x[test], (32, 8, 8, 1))):
        interpreter.resize_tensor_input(0, list(batch.shape))
        interpreter.allocate_tensors()
        inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        if inp["quantization"][0]:
            scale, zero = inp["quantization"]
            batch = np.clip(np.round(batch / scale + zero), -128, 127).astype(np.int8)

        def invoke():
            interpreter.set_tensor(inp["index"], batch)
            interpreter.invoke()
            interpreter.get_tensor(outp["index"])

        p50 = timed(invoke)
    print(f"{variant}: p50 at batch 32 {p50:.4f} ms")
