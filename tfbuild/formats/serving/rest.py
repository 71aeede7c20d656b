"""TF Serving's REST `:predict` bodies in the row ("instances") format, written and read back.

The conventions are those of tensorflow_serving/util/json_tensor.cc (2.19.0) and
https://www.tensorflow.org/tfx/serving/api_rest:

- request `{"signature_name": ..., "instances": [...]}`: with one named input, an instance is
  that input's value for one sample (a nested list); with several, an object {input: value}
  (the server also takes that object form for one input);
- response `{"predictions": [...]}`: with one output, a prediction is that output's value for
  one sample; with several, an object {output: value}; every output needs a batch dimension;
- float tensors are JSON numbers (and NaN, Infinity, -Infinity), integer tensors JSON
  integers (the server refuses 1.0 for an int32), bool tensors true/false. Floats are written
  in the shortest form that reads back to the same float32, as the server writes them.

`BundleInvalid` is raised with one line naming the file when a body breaks these rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ...signature import SIGNATURE
from .bundle import BundleInvalid

if TYPE_CHECKING:
    import numpy as np

# DataType names (tf.as_dtype(...).name) the server's JSON reader and writer handle
# (AddValueToTensor / AddSingleValueAndAdvance): anything else is refused over REST.
REST_DTYPES = frozenset(
    {"float32", "float64", "int8", "uint8", "int16", "int32", "uint32", "int64", "uint64", "bool", "string"}
)
# tfbuild writes bodies from numeric test data: strings are refused by the step, not guessed at.
WRITABLE_KINDS = "fiub"


def json_value(array: np.ndarray) -> Any:
    """One sample's array as nested JSON lists (a scalar as a number)."""
    import numpy as np

    if array.dtype == np.float32:
        # str() of a float32 is its shortest round-trip form: 0.1, not 0.10000000149011612.
        flat = np.array([float(str(v)) for v in array.ravel()], dtype=object)
        return flat.reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def body_text(key: str, rows: list[Any], head: Mapping[str, Any]) -> str:
    """`{head..., key: [rows]}` with one row a line: readable, diffable, deterministic."""
    lines = ",\n".join("  " + json.dumps(row, sort_keys=True) for row in rows)
    opening = json.dumps(dict(head))[:-1] + (", " if head else "")
    return f'{opening}"{key}": [\n{lines}\n]}}\n'


def rows_of(arrays: Mapping[str, np.ndarray]) -> list[Any]:
    """Row-format items: per sample, the lone array's value or {name: value}."""
    names = sorted(arrays)
    count = len(arrays[names[0]])
    if len(names) == 1:
        return [json_value(arrays[names[0]][i]) for i in range(count)]
    return [{name: json_value(arrays[name][i]) for name in names} for i in range(count)]


def request_text(inputs: Mapping[str, np.ndarray]) -> str:
    """The `:predict` body for `inputs` (signature input name -> array of its dtype)."""
    return body_text("instances", rows_of(inputs), {"signature_name": SIGNATURE})


def response_text(outputs: Mapping[str, np.ndarray]) -> str:
    """What the server answers: {"predictions": ...} in the row format."""
    return body_text("predictions", rows_of(outputs), {})


def read_rows(path: Path, key: str, dtypes: Mapping[str, Any], label: str) -> dict[str, np.ndarray]:
    """{tensor name: array} from a row-format body's `key` list, each of the signature's dtype
    in `dtypes` (name -> NumPy dtype); `label` names the file in errors."""
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleInvalid(f"{label}: not a readable JSON body ({error})") from None
    rows = body.get(key) if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise BundleInvalid(f"{label}: wants a non-empty '{key}' list (TF Serving's row format)")
    if key == "instances" and body.get("signature_name", SIGNATURE) != SIGNATURE:
        raise BundleInvalid(f"{label}: signature_name is {body['signature_name']!r}, the bundle serves '{SIGNATURE}'")
    names = sorted(dtypes)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            if sorted(row) != names:
                raise BundleInvalid(f"{label}: {key}[{i}] names {sorted(row)}, the signature has {names}")
            for name in names:
                columns[name].append(row[name])
        elif len(names) == 1:
            columns[names[0]].append(row)
        else:
            raise BundleInvalid(f"{label}: {key}[{i}] must be an object {{name: value}} for the signature's {names}")
    return {name: _array(values, dtypes[name], f"{label}: '{name}'") for name, values in columns.items()}


def _array(values: list[Any], dtype: Any, label: str) -> np.ndarray:
    import numpy as np

    try:
        loose = np.asarray(values)
    except ValueError:
        raise BundleInvalid(f"{label} holds rows of different shapes") from None
    wanted = np.dtype(dtype)
    if wanted.kind in "iub" and loose.dtype.kind != wanted.kind and not (wanted.kind == "u" and loose.dtype.kind == "i"):
        raise BundleInvalid(f"{label} is {wanted.name} and holds {loose.dtype.name} values (TF Serving refuses them)")
    if loose.dtype.kind not in "fiub":
        raise BundleInvalid(f"{label} holds {loose.dtype.name} values, not numbers")
    return loose.astype(wanted)
