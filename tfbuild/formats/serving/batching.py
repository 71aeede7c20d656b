"""TF Serving's `BatchingParameters` message, built here because tensorflow-serving-api does
not ship it, and the server's own rules for it.

The server reads `--batching_parameters_file` as this message in protobuf text format. Its
definition is vendored from tensorflow/serving 2.19.0,
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto`, message
`BatchingParameters`
(https://github.com/tensorflow/serving/blob/2.19.0/tensorflow_serving/servables/tensorflow/session_bundle_config.proto):
the field names, numbers and types below are that file's, so a file this descriptor parses is
a file the server parses. It lives in a private descriptor pool, so a later wheel that ships
the real module cannot clash with it. Imports protobuf inside functions only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

# (name, field number, type) exactly as in session_bundle_config.proto (2.19.0). Wrapper types
# (google/protobuf/wrappers.proto) tell "unset: the server's default" from a value.
FIELDS: tuple[tuple[str, int, str], ...] = (
    ("max_batch_size", 1, "Int64Value"),
    ("batch_timeout_micros", 2, "Int64Value"),
    ("max_enqueued_batches", 3, "Int64Value"),
    ("num_batch_threads", 4, "Int64Value"),
    ("thread_pool_name", 5, "StringValue"),
    ("allowed_batch_sizes", 6, "repeated int64"),
    ("pad_variable_length_inputs", 7, "bool"),
    ("enable_large_batch_splitting", 8, "BoolValue"),
    ("max_execution_batch_size", 9, "Int64Value"),
)
FILE_NAME = "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
MESSAGE = "tensorflow.serving.BatchingParameters"


@lru_cache(maxsize=1)
def batching_parameters_class() -> Any:
    """The generated message class of tensorflow.serving.BatchingParameters."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME, package="tensorflow.serving", syntax="proto3", dependency=[wrappers_pb2.DESCRIPTOR.name]
    )
    message = proto.message_type.add(name="BatchingParameters")
    for name, number, kind in FIELDS:
        spec = message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL)
        if kind == "repeated int64":
            spec.label, spec.type = field.LABEL_REPEATED, field.TYPE_INT64
        elif kind == "bool":
            spec.type = field.TYPE_BOOL
        else:
            spec.type, spec.type_name = field.TYPE_MESSAGE, f".google.protobuf.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(MESSAGE))


def batching_message(settings: Mapping[str, Any]) -> Any:
    """A BatchingParameters of `settings` (field name -> value; None and absent fields are left
    to the server's defaults)."""
    message = batching_parameters_class()()
    for name, _, kind in FIELDS:
        value = settings.get(name)
        if value is None:
            continue
        if kind == "repeated int64":
            getattr(message, name).extend(int(v) for v in value)
        elif kind == "bool":
            setattr(message, name, bool(value))
        else:
            getattr(message, name).value = value
    return message


def batching_text(settings: Mapping[str, Any]) -> str:
    """`settings` as the text-format file the server reads."""
    from google.protobuf import text_format

    return text_format.MessageToString(batching_message(settings))


def parse_batching(text: str) -> Any:
    """The message in `text`; raises google.protobuf.text_format.ParseError."""
    from google.protobuf import text_format

    return text_format.Parse(text, batching_parameters_class()())


def batching_problem(message: Any) -> str | None:
    """What the server would refuse in a parsed BatchingParameters, else None. The rules are
    bundle_factory_util.cc's and batching_session.cc's (2.19.0), plus positive sizes."""
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches", "max_execution_batch_size"):
        if message.HasField(name) and getattr(message, name).value < 1:
            return f"{name} must be >= 1, got {getattr(message, name).value}"
    if message.HasField("batch_timeout_micros") and message.batch_timeout_micros.value < 0:
        return f"batch_timeout_micros must be >= 0, got {message.batch_timeout_micros.value}"
    sizes = list(message.allowed_batch_sizes)
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
            return f"allowed_batch_sizes must be positive and increasing, got {sizes}"
        if not message.HasField("max_batch_size") or sizes[-1] != message.max_batch_size.value:
            wanted = message.max_batch_size.value if message.HasField("max_batch_size") else "unset"
            return f"allowed_batch_sizes must end with max_batch_size ({wanted}), got {sizes}"
    return None
