"""How each artifact is executed, on the runtime its users run: TensorFlow for the SavedModel,
LiteRT for .tflite, TF.js in Node for TF.js graph models. Verification (and benchmarks) go
through these, never through the in-memory model that produced the artifact.

Each module imports TensorFlow and NumPy inside its functions only, so planning a build can
ask whether a runtime is usable without paying for them.
"""
