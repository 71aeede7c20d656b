"""`recipe=digits_mobilenet`'s TensorFlow work as a plain script, with no build system: the
baseline that `realistic_model.py` holds tfbuild against.

Same data (scikit-learn's digits, /16, resized bilinearly to 32x32 and repeated to 3
channels), same split sizes (seeded permutation: 20% test, 10% validation), same network
(tf_keras' MobileNetV2, alpha 0.35, weights=None, 10 classes, BatchNormalization momentum 0.9
as tfbuild's keras_app builder sets it), same training (15 epochs, batch 32, Adam, cosine
decay from 0.002 to 0 over all steps, deterministic ops), a SavedModel with a named
`serving_default`, TFLite float and full int8 (calibrated on 100 training samples) and TF.js
(float32 weights). No verification, no benchmarks, no caching, no records.

Prints one line `PHASES {json}`: seconds spent in each phase, for the cost comparison.

    python benchmarks/plain_mobilenet.py OUT_DIR [--epochs 15]
"""

import argparse
import importlib.util
import json
import math
import os
import time
from pathlib import Path

started = time.perf_counter()
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--epochs", type=int, default=15)
args = parser.parse_args()
out: Path = args.out
out.mkdir(parents=True, exist_ok=True)
phases: dict[str, float] = {"import": time.perf_counter() - started}


def phase(name: str, since: float) -> float:
    now = time.perf_counter()
    phases[name] = round(now - since, 3)
    return now


t = time.perf_counter()
sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
table = np.loadtxt(sklearn_dir / "datasets" / "data" / "digits.csv.gz", delimiter=",")
x = (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
x = np.repeat(tf.image.resize(x, (32, 32), method="bilinear").numpy(), 3, axis=-1)
y = table[:, -1].astype(np.int64)
order = np.random.RandomState(0).permutation(len(x))
n_test, n_val = round(len(x) * 0.2), round(len(x) * 0.1)
test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
t = phase("data", t)

tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10)
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9  # as tfbuild's keras_app builder: usable statistics after a short training
BATCH, EPOCHS = 32, args.epochs
schedule = keras.optimizers.schedules.CosineDecay(0.002, decay_steps=math.ceil(len(train) / BATCH) * EPOCHS, alpha=0.0)
model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=EPOCHS, batch_size=BATCH, verbose=0)
print("test accuracy", model.evaluate(x[test], y[test], batch_size=256, verbose=0)[1])
t = phase("train", t)


@tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="inputs")])
def serve(inputs):
    return {"probabilities": model(inputs, training=False)}


tf.saved_model.save(model, str(out / "saved_model"), signatures={"serving_default": serve})
t = phase("saved_model", t)


def representative():
    for sample in x[train][:100]:
        yield {"inputs": sample[None]}


for variant in ("float", "int8"):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"), signature_keys=["serving_default"])
    if variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    (out / f"model_{variant}.tflite").write_bytes(converter.convert())
    t = phase(f"tflite[{variant}]", t)

from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model  # noqa: E402

convert_tf_saved_model(str(out / "saved_model"), str(out / "tfjs"), signature_def="serving_default",
                       saved_model_tags="serve", quantization_dtype_map=None)  # fmt: skip
phase("tfjs[none]", t)
phases["total"] = round(time.perf_counter() - started, 3)
print("PHASES " + json.dumps(phases))
