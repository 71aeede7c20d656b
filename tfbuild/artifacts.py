"""Plan-wide names of the artifacts the engine's steps hand each other (the edges of the plan).
Formats name their own (formats/base.py `Format.artifact`)."""

DATA = "data/split"
KERAS_MODEL = "model/keras"
OPTIMIZED_MODEL = "model/optimized"
SAVED_MODEL = "saved_model"  # the artifact every export converts from (or its portable twin)
PORTABLE = "saved_model/portable"  # a float32, XLA-free twin of a mixed-precision or XLA one
REFERENCE = "reference/outputs"  # the SavedModel's outputs on the test inputs
