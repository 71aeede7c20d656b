"""Runtimes outside Python that exported models are checked in (TF.js under Node).

Each runtime module is cheap to import: no TensorFlow, and numpy only inside functions, so
build planning can ask whether a runtime is usable without paying for it.
"""
