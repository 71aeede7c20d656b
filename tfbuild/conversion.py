"""Why a converter refused a model, in one line naming the ops.

TFLite's converter buries the cause ("'tf.Digamma' op is neither a custom op nor a flex op")
under MLIR locations and a dump of the whole function; tensorflowjs's says "Unsupported Ops in
the model before optimization" and the op names on the next line. A model that a format
cannot hold fails that format's variant only, with the ops named, so the user knows what to
replace (or which format to drop).
"""

from __future__ import annotations

import re

from .errors import TfbuildError

_TFLITE_OP = re.compile(r"'(tf\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op")
_TFJS_OPS = re.compile(r"Unsupported Ops in the model[^\n]*\n\s*([^\n]+)")


class UnsupportedOps(TfbuildError):
    """The model uses ops the target format has no kernel for: bad input for that format."""


def tflite_unsupported_ops(error: Exception) -> UnsupportedOps | None:
    """The one-line error for a TFLite ConverterError caused by ops without a kernel; None
    when the conversion failed for another reason (the caller re-raises it)."""
    # ConverterError carries structured errors with the op's name; the message is the fallback.
    ops = {e.operator.name for e in getattr(error, "errors", None) or () if e.operator.name.startswith("tf.")}
    ops |= set(_TFLITE_OP.findall(str(error)))
    if not ops:
        return None
    names = ", ".join(f"'{op}'" for op in sorted(ops))
    return UnsupportedOps(
        f"TFLite cannot convert op{'s' if len(ops) > 1 else ''} {names} (no TFLite builtin kernel, "
        f"and TensorFlow ops are not enabled in .tflite exports): drop tflite from export.formats "
        f"or replace the op in the model"
    )


def tfjs_unsupported_ops(error: Exception) -> UnsupportedOps | None:
    match = _TFJS_OPS.search(str(error))
    if match is None:
        return None
    ops = sorted(op.strip() for op in match.group(1).split(",") if op.strip())
    names = ", ".join(f"'{op}'" for op in ops)
    return UnsupportedOps(
        f"TF.js cannot convert op{'s' if len(ops) > 1 else ''} {names} (no TF.js kernel): drop tfjs "
        f"from export.formats or replace the op in the model"
    )
