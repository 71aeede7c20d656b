"""The format registry: every kind of artifact tfbuild builds, one module each.

The resolver, the verify and benchmark steps, the step registry, the config schema, gates,
the run folder and the CLI read `FORMATS`; none of them names a format. Adding a format is a
module that builds a `Format` (base.py) and one line here.

Order matters where people see it: formats are planned, listed and reported in this order.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from .base import Format
from .saved_model import SAVED_MODEL
from .serving import SERVING
from .tfjs import TFJS
from .tflite import TFLITE
from .web import WEB

FORMATS: dict[str, Format] = {f.name: f for f in (SAVED_MODEL, TFLITE, TFJS, WEB, SERVING)}


def shared_runtime(params: Mapping[str, Any]) -> str | None:
    """The runtime a verify or benchmark step with these params keeps in its process for the
    next ones (Format.shared_runtime of params["format"]), or None."""
    shared = FORMATS[params["format"]].shared_runtime
    return shared(params) if shared is not None else None


def variant_formats() -> list[Format]:
    return [f for f in FORMATS.values() if f.variants]


@contextlib.contextmanager
def registered(fmt: Format) -> Iterator[Format]:
    """A format added for the duration of a `with` block (tests; a plug-in tried out). The
    config schema is built from the registry: call `schema.register_configs()` inside."""
    if fmt.name in FORMATS:
        raise ValueError(f"a format named {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    try:
        yield fmt
    finally:
        del FORMATS[fmt.name]
