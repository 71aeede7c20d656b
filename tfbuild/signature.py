"""The serving signature every artifact shares, and how a model's named tensors meet data's.

The SavedModel's `serving_default` takes the Keras model's inputs by their names and returns
its outputs by their names; TFLite's signature runner and TF.js's graph model keep those
names, so every runtime is called with {input name: array} and answers {output name: array}.
"""

from __future__ import annotations

from typing import Sequence

from .errors import DataError

SIGNATURE = "serving_default"
# With target.jit_compile, a second signature serves without XLA (the benchmark shows both).
NO_XLA_SIGNATURE = "serving_default_no_xla"


def pair_names(model_names: Sequence[str], data_names: Sequence[str], what: str) -> dict[str, str]:
    """model tensor name -> data name: one and one pair whatever their names, several by name.
    `what` is "inputs" or "outputs" (data targets), for the error."""
    if len(model_names) == 1 and len(data_names) == 1:
        return {model_names[0]: data_names[0]}
    missing = [n for n in model_names if n not in data_names]
    extra = [n for n in data_names if n not in model_names]
    if missing or extra:
        source = "data.features" if what == "inputs" else "data.label"
        raise DataError(
            f"the model's {what} ({', '.join(model_names)}) do not match the data's ({', '.join(data_names)}): "
            + "; ".join(filter(None, [
                f"no data for {', '.join(missing)}" if missing else "",
                f"the model has no {what[:-1]} named {', '.join(extra)}" if extra else "",
            ]))
            + f"; name them alike (the model's layer names, or {source})"
        )
    return {n: n for n in model_names}
