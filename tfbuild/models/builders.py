"""Small classifiers for the bundled datasets; tf_keras is imported when a model is built."""

from __future__ import annotations

from typing import Sequence


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (16, 32),
    dense_units: int = 64,
    dropout: float = 0.1,
):
    """3x3 conv blocks (conv + ReLU, 2x2 pooling between), a dense layer and a softmax head."""
    import tf_keras as keras

    if len(input_shape) not in (2, 3):
        raise ValueError(
            f"model cnn needs image-shaped samples (height, width[, channels]), got shape "
            f"{tuple(input_shape)}; use model=mlp for flat features"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs if len(input_shape) == 3 else keras.layers.Reshape((*input_shape, 1))(inputs)
    for i, channels in enumerate(filters):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    # Flatten, not global pooling: on 8x8 inputs where a stroke is matters (93.6% vs 59% test
    # accuracy on digits after 5 epochs).
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    # The head computes in float32 whatever the precision policy, so exports return float32.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden_units: Sequence[int] = (64, 32),
    dropout: float = 0.0,
):
    """Flatten, then dense ReLU layers, then a softmax head."""
    import tf_keras as keras

    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")
