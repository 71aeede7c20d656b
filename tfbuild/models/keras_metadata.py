"""A Keras SavedModel's `keras_metadata.pb`, read without TensorFlow.

tf_keras keeps the config of every layer and model of a SavedModel in this file, a
`SavedMetadata` protobuf (tf_keras/protobuf/saved_metadata.proto):

    message SavedMetadata { repeated SavedObject nodes = 1; }
    message SavedObject {
      int32 node_id = 2; string node_path = 3; string identifier = 4;
      string metadata = 5;            // the object's JSON: class_name, name, config...
      VersionDef version = 6;
    }

Its generated Python module lives under tensorflow/ and tf_keras/, whose imports run
TensorFlow's `__init__` (seconds, and planning must not import TensorFlow), so this module
decodes the protobuf wire format itself, for these fields only. Invariants: it reads at most
MAX_BYTES, never recurses (the two message levels are two loops), and any malformed input
is one ConfigError line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

NAME = "keras_metadata.pb"
# The metadata repeats each layer's config once for the layer and once in every model that
# holds it: a few MB for the largest tf_keras applications. Past this it is not a model's.
MAX_BYTES = 256 * 1024 * 1024
NODES = 1  # SavedMetadata.nodes
METADATA = 5  # SavedObject.metadata
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class _Malformed(ValueError):
    pass


def node_metadata(folder: Path, key: str) -> list[str]:
    """The `metadata` JSON text of every node of `folder`'s keras_metadata.pb, in order.
    `key` is the setting that named the folder, for the error line."""
    path = folder / NAME
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{key}: {path} is larger than {MAX_BYTES:,} bytes (a model's metadata is far smaller)")
    try:
        return [_metadata(node) for number, node in _fields(data) if number == NODES and isinstance(node, bytes)]
    except _Malformed as exc:
        raise ConfigError(f"{key}: {path} is not a Keras SavedModel's metadata ({exc})") from None


def _metadata(node: bytes) -> str:
    for number, value in _fields(node):
        if number == METADATA:
            if not isinstance(value, bytes):
                raise _Malformed("a metadata field that is not a string")
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("metadata that is not UTF-8") from None
    return ""  # proto3: an empty string is not written


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message's fields: an int for a number, bytes for a
    length-delimited field (a string or a nested message, decoded by the caller)."""
    at, end = 0, len(data)
    while at < end:
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed(f"field number 0 at byte {at}")
        if wire == VARINT:
            value, at = _varint(data, at)
            yield number, value
        elif wire == LENGTH:
            size, at = _varint(data, at)
            if size > end - at:
                raise _Malformed(f"a field of {size:,} bytes at byte {at}, past the end")
            yield number, data[at : at + size]
            at += size
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if size > end - at:
                raise _Malformed(f"truncated at byte {at}")
            yield number, int.from_bytes(data[at : at + size], "little")
            at += size
        else:  # groups (3, 4) are not in this message, and 6, 7 are not wire types
            raise _Malformed(f"wire type {wire} at byte {at}")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):  # a varint is at most 10 bytes
        if at >= len(data):
            raise _Malformed(f"truncated at byte {at}")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise _Malformed(f"a varint longer than 10 bytes at byte {at}")
