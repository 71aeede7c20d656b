"""A SavedModel's bytes as a function of the model alone, not of the process that saved it.

TensorFlow numbers what it traces with a process-wide counter (`ops.uid()`, a C++ atomic with
no reset): function names (`__inference_serve_2323`), the placeholders that capture variables
(`conv0_2405`, whose `_user_specified_name` is "2405"). A model saved in a process that trained
(or built anything) before gets other numbers than in a fresh process, and, as the function
library is stored sorted by name, other bytes throughout `saved_model.pb`.

These numbers are private to the file: loaders look functions up by name only inside it
(Python's loader even renames them all on load), and a function's argument names are local to
it. So after saving, every such number is replaced by its rank among them (1, 2, ...: the
relative order is the saving code's own, the same in any process), everywhere it names
something, and the fingerprint is computed again for the new bytes. `fingerprint.pb` also
carries a random uuid; it is replaced by one derived from its content.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

SAVED_MODEL_PB = "saved_model.pb"
FINGERPRINT_PB = "fingerprint.pb"

# `<readable part>_<uid>`: how TensorFlow names traced functions and captured variables.
_NUMBERED = re.compile(r"^(?P<base>.+)_(?P<uid>\d+)$")
_USER_NAME = "_user_specified_name"


class NotRenumberable(RuntimeError):
    """The SavedModel's names cannot be renumbered without a clash (never seen; checked)."""


def make_reproducible(folder: Path) -> None:
    """Rewrite the SavedModel in `folder` so that equal models have equal bytes."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = folder / SAVED_MODEL_PB
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        renumber(meta_graph)
    path.write_bytes(saved_model.SerializeToString(deterministic=True))
    _write_fingerprint(folder)


def renumber(meta_graph: Any) -> None:
    """Replace the process's uids in one MetaGraphDef by their ranks, in place."""
    library = meta_graph.graph_def.library
    functions = {f.signature.name: _NUMBERED.match(f.signature.name) for f in library.function}
    uids = {int(m["uid"]) for m in functions.values() if m}
    for function in library.function:
        uids |= set(_captured_uids(function).values())
    rank = {uid: str(i) for i, uid in enumerate(sorted(uids), start=1)}
    renamed = {name: f"{m['base']}_{rank[int(m['uid'])]}" for name, m in functions.items() if m}
    if len(set(renamed.values()) | (functions.keys() - renamed.keys())) != len(functions):
        raise NotRenumberable("two functions would share a name")  # cannot happen: ranks are unique
    for function in library.function:
        _renumber_captures(function, rank)
    _rename_everywhere(meta_graph, renamed)
    # The library is stored sorted by name: sort it again, by the new names.
    _sort_repeated(library.function, lambda f: f.signature.name)
    _sort_repeated(library.gradient, lambda g: (g.function_name, g.gradient_func))


def _captured_uids(function: Any) -> dict[int, int]:
    """argument index -> uid, for the arguments that capture a variable: TensorFlow names those
    by the uid alone (`_user_specified_name: "2405"`)."""
    uids: dict[int, int] = {}
    for index, attrs in function.arg_attr.items():
        user_name = attrs.attr[_USER_NAME].s if _USER_NAME in attrs.attr else b""
        if user_name.isdigit():
            uids[index] = int(user_name)
    return uids


def _renumber_captures(function: Any, rank: dict[int, str]) -> None:
    """A captured argument's `_user_specified_name` becomes its rank, and its name too when
    the name ends in the uid (`conv0_2405`); references inside the function follow."""
    args = function.signature.input_arg
    renamed: dict[str, str] = {}
    for index, uid in _captured_uids(function).items():
        function.arg_attr[index].attr[_USER_NAME].s = rank[uid].encode()
        match = _NUMBERED.match(args[index].name)
        if match and int(match["uid"]) == uid:
            renamed[args[index].name] = f"{match['base']}_{rank[uid]}"
    if not renamed:
        return
    taken = [a.name for a in args if a.name not in renamed] + [n.name for n in function.node_def]
    if len(set(taken) | set(renamed.values())) != len(taken) + len(renamed):
        raise NotRenumberable(f"an argument of {function.signature.name} would share a name")
    for arg in args:
        arg.name = renamed.get(arg.name, arg.name)
    for node in function.node_def:
        node.input[:] = [_reference(ref, renamed) for ref in node.input]
    for mapping in (function.ret, function.control_ret):
        for key in list(mapping):
            mapping[key] = _reference(mapping[key], renamed)


def _reference(ref: str, renamed: dict[str, str]) -> str:
    """An input reference inside a function: `arg`, `^arg` (control), or `node:output:i`."""
    control = ref.startswith("^")
    name, colon, rest = ref.lstrip("^").partition(":")
    return ("^" if control else "") + renamed.get(name, name) + colon + rest


def _rename_everywhere(message: Any, renamed: dict[str, str]) -> None:
    """Replace every string field, list element and map key that is exactly an old function
    name: node attributes (`f`, function lists, gradient names as bytes), the object graph
    (concrete function lists, map keys, bare functions), the library. Tensor contents (user
    data) are never touched."""
    from google.protobuf.descriptor import FieldDescriptor

    if message.DESCRIPTOR.name == "TensorProto":
        return
    for field, value in message.ListFields():
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                _rename_in_map(value, field.message_type, renamed)
            else:
                for item in value if repeated else [value]:
                    _rename_everywhere(item, renamed)
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            if repeated:
                value[:] = [_renamed(item, renamed) for item in value]
            else:
                setattr(message, field.name, _renamed(value, renamed))


def _rename_in_map(mapping: Any, entry: Any, renamed: dict[str, str]) -> None:
    from google.protobuf.descriptor import FieldDescriptor

    text = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)
    text_keys = entry.fields_by_name["key"].type in text
    message_values = entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
    text_values = entry.fields_by_name["value"].type in text
    for key in list(mapping):
        if message_values:
            _rename_everywhere(mapping[key], renamed)
        elif text_values:
            mapping[key] = _renamed(mapping[key], renamed)
        new_key = _renamed(key, renamed) if text_keys else key
        if new_key == key:
            continue
        if message_values:
            mapping[new_key].CopyFrom(mapping[key])
        else:
            mapping[new_key] = mapping[key]
        del mapping[key]


def _renamed(value: str | bytes, renamed: dict[str, str]) -> str | bytes:
    if isinstance(value, bytes):
        new = renamed.get(value.decode("utf-8", "replace"))
        return value if new is None else new.encode()
    return renamed.get(value, value)


def _sort_repeated(items: Any, key: Any) -> None:
    ordered: Iterable[Any] = sorted(items, key=key)
    copies = []
    for item in ordered:
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del items[:]
    items.extend(copies)


def _write_fingerprint(folder: Path) -> None:
    """TensorFlow's own fingerprint of the rewritten file, with a content-derived uuid."""
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    path = folder / FINGERPRINT_PB
    if not path.exists():  # fingerprinting is off in this TensorFlow
        return
    fingerprinting_utils.write_fingerprint(str(folder))
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.uuid = ""
    content = fingerprint.SerializeToString(deterministic=True)
    fingerprint.uuid = str(int(hashlib.sha256(content).hexdigest()[:16], 16))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))
