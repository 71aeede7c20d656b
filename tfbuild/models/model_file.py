"""`model.source=file`: a trained model you bring (`model.path`): `.keras`, `.h5`, or a
SavedModel folder.

Planning inspects it without TensorFlow: a `.keras` file is a zip with a `config.json`, an
`.h5` file carries its config in a `model_config` attribute (h5py, no TensorFlow), a
SavedModel folder is recognised by its `saved_model.pb` (its signature can be read only by
TensorFlow, so its inputs are left to run time; a Keras one keeps its layers' configs in
`keras_metadata.pb`, read by keras_metadata.py). From a Keras config it reads the named
inputs and outputs and the classes tf_keras does not define, so a missing `model.modules` is
a one-line error before any work.

Loading a model must not run code the file carries: a Lambda layer saved with a Python
function holds its marshalled bytecode, which tf_keras turns back into a function and calls
while it rebuilds the model. Planning finds such code in the config (`ModelFileInfo.code`)
and refuses the file unless `model.trust_code` is true; loading then also runs tf_keras in
safe mode, which refuses the same bytecode, as a second line of defence. A `.keras` zip is
bounded by its members' declared sizes before anything is extracted (tf_keras extracts the
whole archive to a temporary folder when it has assets, and Python's zipfile never
inflates a member past its declared size).

Loading (steps, TensorFlow imported) gives a tf_keras model; a SavedModel that is not a
Keras one (`tf.saved_model.save` of a `tf.Module`, a Keras 3 `model.export`, a JAX export)
is carried by its serving signature: `ServingFunction`, which the SavedModel step saves again
with tfbuild's signature (outputs cast to float32, names kept).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..builder_source import parse_source
from ..errors import ConfigError, DataError
from ..signature import SIGNATURE
from .keras_app import tf_keras_root
from .keras_metadata import node_metadata
from .modules import KEY as MODULES_KEY
from .modules import available_objects, import_modules, module_files

KEY = "model.path"
TRUST_KEY = "model.trust_code"
SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
SAVED_MODEL = "saved_model"
# A model's config.json: about 100 KB for MobileNetV2, a few MB for the largest applications.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
# Classes tf_keras writes into configs but does not export by name.
INTERNAL = frozenset({"Functional", "TFOpLambda", "SlicingOpLambda"})
BUILTIN_MODULES = ("keras", "tf_keras", "tensorflow", "builtins")
# A tf_keras Lambda config says how each of its callables was saved: "lambda" is marshalled
# bytecode (any Python function, `def` or `lambda`); "function" a name looked up in
# registered objects; "raw" a value. Key -> the callable it describes.
CODE_TYPES = {"function_type": "its function", "output_shape_type": "its output_shape", "mask_type": "its mask"}
# serialization_lib's class for a lambda given where a Keras object goes (an activation...).
LAMBDA_CLASS = "__lambda__"
# A .keras zip, as its central directory declares it. A model's weights compress about 1.1:1
# and its JSON about 10:1; only a run of zeros (a bomb) compresses 1000:1. The ratio is
# judged on members big enough to matter.
MAX_KERAS_BYTES = 2 * 1024**3  # the whole archive inflated, and so any member
MAX_MEMBERS = 10_000
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024  # the central directory Python reads whole on open
MAX_RATIO = 200
RATIO_FROM_BYTES = 16 * 1024 * 1024

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class ModelFileInfo:
    kind: str  # "keras", "h5" or "saved_model"
    path: str
    # name -> (per-sample shape, dtype); None where it is known only at run time (a SavedModel,
    # a subclassed model)
    inputs: dict[str, tuple[Shape, str]] | None
    outputs: dict[str, Shape | None] | None  # names, in order; shapes are not in a Keras config
    custom_objects: tuple[str, ...] = ()  # names tf_keras looks up that it does not define
    custom_modules: tuple[str, ...] = ()  # the modules a .keras file says they come from
    keras: bool = True  # False: a SavedModel that tf_keras cannot load, carried by its signature
    # Where the file holds Python bytecode that loading would run: "layer 'model/lambda' (its
    # function)", in the config's order; empty for a file without code.
    code: tuple[str, ...] = ()


def inspect_model_file(path: str | Path) -> ModelFileInfo:
    """What planning needs to know of `path`; ConfigError (one line) when it is not a model."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise ConfigError(f"{KEY}: {path} is a folder but not a SavedModel (no saved_model.pb in it)")
        keras = (path / "keras_metadata.pb").is_file()
        code = _saved_model_code(path) if keras else ()
        return ModelFileInfo(SAVED_MODEL, str(path), None, None, keras=keras, code=code)
    if not path.exists():
        raise ConfigError(f"{KEY}: {path} does not exist")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{KEY}: {path} is not a model tfbuild reads (a .keras or .h5 file, or a SavedModel folder)")
    if not path.is_file():  # a FIFO or a device would block or stream forever
        raise ConfigError(f"{KEY}: {path} is not a regular file")
    config, version = _keras_config(path) if kind == "keras" else _h5_config(path)
    if str(version or "").startswith("3."):
        raise ConfigError(f"{KEY}: {path} was saved by Keras {version}; tfbuild loads Keras 2 (tf_keras) models: "
                          "export it as a SavedModel (model.export(folder)) and use that folder")  # fmt: skip
    if not isinstance(config, dict):
        raise ConfigError(f"{KEY}: {path} holds no model config")
    try:
        inputs, outputs = _signature(config)
        custom = dict(_custom_objects(config))
    except RecursionError:  # parsed, but too deep to walk
        raise ConfigError(f"{KEY}: {path} has a config nested too deeply to be a model's") from None
    modules = tuple(dict.fromkeys(m for m in custom.values() if m))
    return ModelFileInfo(kind, str(path), inputs, outputs, tuple(custom), modules, code=tuple(serialized_code(config)))


def check_trusted(info: ModelFileInfo, trust_code: bool, error: type[Exception] = ConfigError) -> None:
    """Planning (ConfigError) and loading (DataError): a file that carries code loads only
    with model.trust_code: true."""
    if info.code and not trust_code:
        more = f" and {len(info.code) - 1} more" if len(info.code) > 1 else ""
        raise error(f"{KEY}: {info.path}: {info.code[0]}{more} is Python code saved in the file, which loading "
                    f"would run; refused (set {TRUST_KEY}: true only if you trust whoever wrote the file)")  # fmt: skip


def serialized_code(config: Any) -> Iterator[str]:
    """Where `config` holds bytecode that tf_keras turns into a function when it loads it:
    a Lambda's function, output_shape or mask saved as "lambda", or a `__lambda__` object.
    Each is named by its layer's path ("model/time_distributed/lambda"). A walk with a stack,
    not recursion: a config nested deep enough is still read to the bottom."""
    Trail = tuple[str, Any] | None  # (name, the enclosing trail): shared, so a deep walk stays linear

    def joined(path: Trail) -> str:
        names = []
        while path is not None:
            names.append(path[0])
            path = path[1]
        return "/".join(reversed(names)) or "?"

    stack: list[tuple[Any, Trail]] = [(config, None)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and (path is None or path[0] != name):
                path = (name, path)
            found = [what for key, what in CODE_TYPES.items() if value.get(key) == "lambda"]
            if value.get("class_name") == LAMBDA_CLASS:
                found.append("a lambda in its config")
            yield from (f"layer '{joined(path)}' ({what})" for what in found)
            stack.extend((item, path) for item in reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend((item, path) for item in reversed(value))


def _saved_model_code(path: Path) -> tuple[str, ...]:
    """The code in a Keras SavedModel: its keras_metadata.pb holds each layer's config."""
    code: list[str] = []
    for text in node_metadata(path, KEY):
        try:
            metadata = json.loads(text) if text else {}
        except RecursionError:
            raise ConfigError(f"{KEY}: {path}/keras_metadata.pb has a config nested too deeply to be a model's") from None
        except ValueError as exc:
            raise ConfigError(f"{KEY}: {path}/keras_metadata.pb has unreadable metadata ({exc})") from None
        # Each layer has a node of its own besides its place in the root model's config
        # (node 0): "layer 'inner/lam'" repeats "layer 'model/inner/lam'", said once.
        prefix = len("layer '")
        code.extend(c for c in serialized_code(metadata) if not any(k == c or k.endswith("/" + c[prefix:]) for k in code))
    return tuple(code)


def check_keras_archive(path: Path, archive: zipfile.ZipFile) -> int:
    """A .keras zip's members are few, stay inside the folder they are extracted to, and
    expand to at most MAX_KERAS_BYTES in all, at a ratio a model's files have. Returns the
    declared total: what extracting it may write, which Python's zipfile never exceeds."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ConfigError(f"{KEY}: {path} holds {len(members):,} files (a model has a few; the limit is {MAX_MEMBERS:,})")
    # Each member's data lies in the file: more compressed bytes than the file has is a lie.
    stored = sum(member.compress_size for member in members)
    if stored > path.stat().st_size:
        raise ConfigError(f"{KEY}: {path}: its members claim {stored:,} compressed bytes, more than the file's "
                          f"{path.stat().st_size:,} (a damaged or forged zip)")  # fmt: skip
    total = 0
    for member in members:
        name = member.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise ConfigError(f"{KEY}: {path}: member '{name}' would be extracted outside its folder")
        size = member.file_size
        if size > MAX_KERAS_BYTES:
            raise ConfigError(f"{KEY}: {path}: member '{name}' expands to {size:,} bytes (the limit is {MAX_KERAS_BYTES:,})")
        if size >= RATIO_FROM_BYTES and size > MAX_RATIO * max(member.compress_size, 1):
            raise ConfigError(f"{KEY}: {path}: member '{name}' expands {size // max(member.compress_size, 1):,} times "
                              f"(to {size:,} bytes): a zip bomb, not a model's file (the limit is {MAX_RATIO}:1)")  # fmt: skip
        total += size
        if total > MAX_KERAS_BYTES:
            raise ConfigError(f"{KEY}: {path}: its files expand to more than {MAX_KERAS_BYTES:,} bytes in all (the "
                              f"limit), reaching it at member '{name}'")  # fmt: skip
    return total


def _check_directory_size(path: Path) -> None:
    """Before zipfile opens `path`: the central directory, which it reads whole and turns
    into one object per member, is of a model's size. Read from the end-of-directory record
    (the last 22 bytes, before a comment of up to 64 KB)."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        end = file.tell()
        file.seek(max(0, end - 22 - 0xFFFF))
        tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return  # not a zip: zipfile says so
    (size,) = struct.unpack_from("<I", tail, at + 12)
    if size > MAX_DIRECTORY_BYTES:  # 0xFFFFFFFF: a zip64 directory, a model's never is
        raise ConfigError(f"{KEY}: {path}: its zip directory is {size:,} bytes (a model's is far smaller; the limit "
                          f"is {MAX_DIRECTORY_BYTES:,})")  # fmt: skip


def _keras_config(path: Path) -> tuple[Any, str | None]:
    try:
        _check_directory_size(path)
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name in ("config.json", "metadata.json"):
                # A zip entry expands to what its header says: a bomb is refused before it is read.
                if name in names and archive.getinfo(name).file_size > MAX_CONFIG_BYTES:
                    raise ConfigError(f"{KEY}: {path}: {name} expands to {archive.getinfo(name).file_size:,} bytes "
                                      f"(a model's config is far smaller; the limit is {MAX_CONFIG_BYTES:,})")
            check_keras_archive(path, archive)
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except OSError as exc:
        raise ConfigError(f"{KEY}: cannot read {path} ({exc.strerror or exc})") from None
    except RecursionError:
        raise ConfigError(f"{KEY}: {path} has a config.json nested too deeply to be a model's") from None
    except zipfile.BadZipFile:
        raise ConfigError(f"{KEY}: {path} is not a .keras file (not a zip archive)") from None
    except KeyError:
        raise ConfigError(f"{KEY}: {path} is not a .keras file (no config.json in it)") from None
    except (ValueError, zlib.error, NotImplementedError) as exc:  # bad JSON or text, or a compression zipfile lacks
        raise ConfigError(f"{KEY}: {path} has an unreadable config.json ({exc})") from None
    return config, metadata.get("keras_version") if isinstance(metadata, dict) else None


def _h5_config(path: Path) -> tuple[Any, str | None]:
    import h5py  # about 0.1 s (with NumPy); no TensorFlow

    try:
        with h5py.File(path, "r") as file:
            raw, version = file.attrs.get("model_config"), file.attrs.get("keras_version")
    except OSError as exc:
        raise ConfigError(f"{KEY}: {path} is not an HDF5 file ({str(exc).splitlines()[0]})") from None
    if raw is None:
        raise ConfigError(f"{KEY}: {path} holds weights only, no model (save the model with model.save, "
                          "not model.save_weights)")  # fmt: skip
    text = lambda value: value.decode() if isinstance(value, bytes) else value  # noqa: E731
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{KEY}: {path}: model_config is {len(raw):,} bytes (the limit is {MAX_CONFIG_BYTES:,})")
    try:
        return json.loads(text(raw)), text(version)
    except RecursionError:
        raise ConfigError(f"{KEY}: {path} has a model_config nested too deeply to be a model's") from None
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise ConfigError(f"{KEY}: {path} has an unreadable model_config ({exc})") from None


def _signature(config: dict) -> tuple[dict[str, tuple[Shape, str]] | None, dict[str, Shape | None] | None]:
    """Named inputs and outputs, as tf_keras names them (input and output layer names)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = [layer for layer in inner.get("layers") or [] if isinstance(layer, dict)]
    by_name = {_name(layer): layer for layer in layers}
    if "input_layers" in inner and "output_layers" in inner:  # a functional model
        inputs = {name: _input_spec(by_name.get(name)) for name in _layer_names(inner["input_layers"])}
        outputs = dict.fromkeys(_layer_names(inner["output_layers"]))
    elif config.get("class_name") == "Sequential" and layers:
        first, last = layers[0], layers[-1]
        # Without an InputLayer, Keras names the input after the first layer.
        name = _name(first) if first.get("class_name") == "InputLayer" else f"{_name(first)}_input"
        inputs, outputs = {name: _input_spec(first)}, {_name(last): None}
    else:  # subclassed: its signature exists once it is built
        return None, None
    return (None if None in inputs.values() else inputs), outputs  # type: ignore[return-value]


def _name(layer: dict) -> str:
    return str(layer.get("name") or (layer.get("config") or {}).get("name"))


def _layer_names(nodes: Any) -> list[str]:
    """[[layer, node, tensor], ...], a single [layer, node, tensor], or {name: ...}."""
    if isinstance(nodes, dict):
        return list(nodes)
    if nodes and isinstance(nodes[0], str):
        return [nodes[0]]
    return [node[0] for node in nodes]


def _input_spec(layer: dict | None) -> tuple[Shape, str] | None:
    config = (layer or {}).get("config") or {}
    shape = config.get("batch_input_shape") or config.get("batch_shape")
    if shape is None:
        return None
    dtype = config.get("dtype") or "float32"
    if isinstance(dtype, dict):  # a serialized dtype policy
        dtype = (dtype.get("config") or {}).get("name", "float32")
    return tuple(shape[1:]), str(dtype)


def _custom_objects(config: Any) -> Iterator[tuple[str, str | None]]:
    """(name tf_keras looks the class up by, the module the file says it is in) for every
    serialized class that tf_keras does not define: layers, initializers, losses..."""
    for node in _class_nodes(config):
        name, module, registered = node["class_name"], node.get("module"), node.get("registered_name")
        if isinstance(registered, str) and (">" in registered or isinstance(module, str)):
            # tf_keras looks a class up by its registered name ("package>Name" for
            # register_keras_serializable), and imports `module` for one it cannot find:
            # importing runs that module, so this is the name that must be provided.
            name = registered
        if name == "function" and isinstance(module, str) and isinstance(node.get("config"), str):
            name = node["config"]  # a function is looked up by its own name
        if ">" in name:
            custom = True
        elif isinstance(module, str):  # .keras files say where every class comes from
            custom = module.split(".")[0] not in BUILTIN_MODULES
        else:
            custom = name not in _builtin_names() and not name.startswith("__")
        if custom:
            yield name, module if isinstance(module, str) else None


def _class_nodes(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if isinstance(value.get("class_name"), str):
            yield value
        for item in value.values():
            yield from _class_nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _class_nodes(item)


@functools.cache
def _builtin_names() -> frozenset[str]:
    """Every name tf_keras' public API exports (its layers, initializers, losses...), read
    from its generated `__init__.py` files."""
    root = tf_keras_root() / "tf_keras"
    names = set(INTERNAL)
    for init in root.rglob("__init__.py"):
        if init.relative_to(root).parts[0] != "src":
            for node in parse_source(init, KEY).body:
                if isinstance(node, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in node.names)
    return frozenset(names)


def check_custom_objects(info: ModelFileInfo, modules: Sequence[str]) -> None:
    """Planning: every custom class the file uses is defined (or named) in model.modules."""
    if not info.custom_objects:
        return
    named = ", ".join(name.split(">")[-1] for name in info.custom_objects)
    hint = f" (module {', '.join(info.custom_modules)})" if info.custom_modules else ""
    if not modules:
        raise ConfigError(f"{KEY}: {info.path} uses custom classes {named}{hint}: list the module(s) that define "
                          f"them in {MODULES_KEY}")  # fmt: skip
    defined: set[str] = set()
    for file in module_files(modules).values():
        for node in ast.walk(parse_source(Path(file), MODULES_KEY)):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                defined.add(node.value)  # register_keras_serializable(name="...")
            elif isinstance(node, ast.Name):
                defined.add(node.id)
    missing = [name for name in info.custom_objects if name.split(">")[-1] not in defined]
    if missing:
        raise ConfigError(f"{MODULES_KEY}: none of {', '.join(modules)} defines {missing[0].split('>')[-1]}, which "
                          f"{info.path} uses{hint}")  # fmt: skip


def load_model(
    path: str | Path, modules: Sequence[str] = (), quantize_scope: bool = False, planned: dict[str, Any] | None = None,
    trust_code: bool = False,
) -> Any:  # fmt: skip
    """The model at `path` (call after tfenv.import_tensorflow): a tf_keras model, or a
    `ServingFunction` for a SavedModel tf_keras cannot load. `modules` are imported first and
    their Keras classes offered by name; `planned` is the step's files (role -> path).
    Without `trust_code`, a file with code is refused and tf_keras loads in safe mode."""
    import tf_keras as keras
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    info = inspect_model_file(path)
    check_trusted(info, trust_code, DataError)
    if info.kind == "keras":
        verify_keras_archive(Path(path))
    objects = import_modules(modules, planned)
    if not info.keras:
        return load_serving_function(path)
    quantizers = None
    if quantize_scope:  # a quantization-aware model's wrappers and quantizers
        import tensorflow_model_optimization as tfmot

        quantizers = tfmot.quantization.keras.quantize_scope()
    available = available_objects(objects) | {n for d in getattr(quantizers, "custom_objects", ()) for n in d}
    missing = [name for name in info.custom_objects if name not in available]
    if missing:
        named = missing[0].split(">")[-1] + (f" (module {', '.join(info.custom_modules)})" if info.custom_modules else "")
        if not modules:
            raise DataError(f"{KEY}: {path} uses the custom class {named}: list its module in {MODULES_KEY}")
        raise DataError(f"{KEY}: {path} uses the custom class {named}, which none of {MODULES_KEY} "
                        f"({', '.join(modules)}) defines or registers")  # fmt: skip
    with contextlib.ExitStack() as scopes:
        scopes.enter_context(keras.utils.custom_object_scope(objects))
        if quantizers is not None:
            scopes.enter_context(quantizers)
        # tf_keras passes safe_mode to a .keras load only; its .h5 and SavedModel loaders
        # read it from this scope (unset, they turn a Lambda's bytecode into a function).
        scopes.enter_context(SafeModeScope(not trust_code))
        try:
            if info.kind == "keras":
                return keras.models.load_model(str(path), compile=False, safe_mode=not trust_code)
            return keras.models.load_model(str(path), compile=False)
        except (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{KEY}: cannot load {path}: {str(exc).strip().splitlines()[0]}") from None


def verify_keras_archive(path: Path) -> None:
    """Before tf_keras opens a .keras file, which extracts all of it to a temporary folder
    when it has assets: every member inflates to exactly the size planning checked (zipfile
    stops at the declared size and then checks the CRC, so a header that lies is caught
    here, having inflated no more than it declared), and the folder has room for them."""
    with zipfile.ZipFile(path) as archive:
        total = check_keras_archive(path, archive)
        for member in archive.infolist():
            try:
                with archive.open(member) as data:
                    while data.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise DataError(f"{KEY}: {path}: member '{member.filename}' does not match its header ({exc})") from None
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if total > free:
        raise DataError(f"{KEY}: {path} expands to {total:,} bytes, but the temporary folder "
                        f"{tempfile.gettempdir()} has {free:,} free")  # fmt: skip


@dataclass
class ServingFunction:
    """A SavedModel's serving signature. `root` holds its variables: save it again with
    `tf.saved_model.save(s.root, out, signatures={"serving_default": s.function()})`."""

    root: Any
    signature: Any  # the loaded ConcreteFunction
    inputs: dict[str, Any]  # name -> tf.TensorSpec, in the signature's order
    outputs: list[str] = field(default_factory=list)

    def function(self, jit_compile: bool = False) -> Any:
        """A tf.function with the same named inputs, returning {output name: float32}."""
        import tensorflow as tf

        names = list(self.inputs)
        specs = [tf.TensorSpec(spec.shape, spec.dtype, name=name) for name, spec in self.inputs.items()]

        @tf.function(input_signature=specs, jit_compile=jit_compile)
        def serve(*tensors):
            outputs = self.signature(**dict(zip(names, tensors)))
            return {name: tf.cast(outputs[name], tf.float32) for name in self.outputs}

        return serve

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self.signature(**inputs)


def load_serving_function(path: str | Path) -> ServingFunction:
    """The `serving_default` signature (or the only one) of the SavedModel at `path`."""
    import tensorflow as tf

    try:
        root = tf.saved_model.load(str(path))
    except (ValueError, OSError, tf.errors.OpError) as exc:
        raise DataError(f"{KEY}: cannot load the SavedModel {path}: {str(exc).strip().splitlines()[0]}") from None
    signatures = dict(root.signatures)
    if SIGNATURE not in signatures and len(signatures) != 1:
        raise DataError(f"{KEY}: the SavedModel {path} has no {SIGNATURE} signature (it has: "
                        f"{', '.join(signatures) or 'none'}); save it with signatures={{'{SIGNATURE}': ...}}")  # fmt: skip
    signature = signatures.get(SIGNATURE) or next(iter(signatures.values()))
    _, inputs = signature.structured_input_signature
    return ServingFunction(root, signature, dict(inputs), sorted(signature.structured_outputs))
