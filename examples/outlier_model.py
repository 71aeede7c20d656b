"""A model built to quantize badly: the README's int8 walkthrough and the tests use it.

A small MLP is trained on scikit-learn's digits (offline), then one hidden unit is scaled up
by `scale` and the next layer's weights from it down by the same factor. ReLU commutes with
a positive scale, so the float model computes exactly what it did; but int8 gives a whole
activation tensor one scale, and this one outlier channel now sets it: every other hidden
unit is left with a handful of levels. This is how activation outliers hurt real models.

    python examples/outlier_model.py outputs/outlier    # model.h5 and its train/validation/test .npz
    tfbuild recipe=outlier                                # recipes/outlier.yaml builds it
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf_keras (Keras 2), as tfbuild uses


PARTS = {"train": slice(0, 1257), "validation": slice(1257, 1437), "test": slice(1437, None)}


def make(folder: Path, scale: float = 300.0, epochs: int = 30, seed: int = 0) -> dict[str, float]:
    """Train on the train part, plant the outlier, save model.h5 and the three parts (so the
    build tests on samples the model never saw); returns the float test accuracy before and
    after the outlier (equal: it changes nothing in float)."""
    import numpy as np
    import tf_keras as keras
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")  # as tfbuild's data=digits gives them
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in PARTS.items():
        np.savez(folder / f"{part}.npz", x=x[rows], y=y[rows])
    train, test = PARTS["train"], PARTS["test"]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="inputs")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(keras.layers.Flatten(name="flatten")(inputs))
    probs = keras.layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    model = keras.Model(inputs, probs, name="outlier")
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train], y[train], epochs=epochs, batch_size=32, verbose=0)
    before = float(model.evaluate(x[test], y[test], verbose=0)[1])

    w1, b1 = model.get_layer("hidden").get_weights()
    w2, b2 = model.get_layer("probabilities").get_weights()
    busiest = int(np.argmax(np.maximum(x[train].reshape(-1, 64) @ w1 + b1, 0).mean(0)))
    w1[:, busiest] *= scale
    b1[busiest] *= scale
    w2[busiest] /= scale
    model.get_layer("hidden").set_weights([w1, b1])
    model.get_layer("probabilities").set_weights([w2, b2])
    after = float(model.evaluate(x[test], y[test], verbose=0)[1])
    model.save(folder / "model.h5")
    return {"accuracy_before": before, "accuracy_after": after}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/outlier_model.py FOLDER")
    figures = make(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/model.h5 and train/validation/test.npz: float test accuracy {figures['accuracy_after']:.1%} "
          f"(before the outlier: {figures['accuracy_before']:.1%})")
