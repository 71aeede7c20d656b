"""`model.source=keras_app`: a `tf_keras.applications` network by name (`model.name=MobileNetV2`),
its `model.params` passed to the constructor, built with `weights=None` (no downloads).

Planning reads tf_keras' own source and never imports it (importing tf_keras imports
TensorFlow): the public names come from `tf_keras/applications/__init__.py`, each
constructor's keyword arguments from its `def` (following `**kwargs` into the function it is
passed on to, as `ResNet50(**kwargs) -> ResNet(classifier_activation=...)`), and the smallest
image it accepts from its `obtain_input_shape(..., min_size=N)` call. Building imports
tf_keras, at training time only.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..builder_source import Module, find_module, imported_modules, parse_source, signature, top_level
from ..errors import ConfigError, DataError, did_you_mean

KEY = "model.name"
CLASSIFICATION, REGRESSION = "classification", "regression"
# What tfbuild sets itself, and why a recipe may not.
SET_BY_TFBUILD = {
    "input_shape": "tfbuild sets it from the data (data.image_size, data.channels)",
    "input_tensor": "tfbuild makes the input from the data (data.image_size, data.channels)",
    "weights": "tfbuild builds with weights=None (no downloads); to start from a trained "
    "model, bring it with model=file",
    "classes": "tfbuild sets it from the data's labels",
    "include_top": "tfbuild sets it from the task (the network's classifier for classification, "
    "pooled features and a Dense layer for regression)",
    "classifier_activation": "tfbuild ends classification with a float32 softmax named 'probabilities'",
    "pooling": "tfbuild sets it from the task (average pooling before the regression head; "
    "the classifier pools as the network defines)",
}
EXAMPLES = ("MobileNetV2", "MobileNetV3Small", "ResNet50", "EfficientNetB0", "DenseNet121")
HOPS = 3  # how far **kwargs is followed into the functions it is passed on to


@dataclass(frozen=True)
class KerasApp:
    name: str
    file: str  # the source file of its constructor (tf_keras' version is keyed as a tool already)
    params: tuple[str, ...]  # what model.params may set
    any_param: bool  # its **kwargs go somewhere that cannot be read: params are not checked
    min_size: int | None  # the smallest height and width it accepts


def check_keras_app(name: str, params: Sequence[str]) -> KerasApp:
    """The application and what model.params may set; ConfigError naming the first problem."""
    app = keras_app_source(name)
    for key in params:
        if key in SET_BY_TFBUILD:
            raise ConfigError(f"model.params.{key}: not settable with model.source=keras_app: {SET_BY_TFBUILD[key]}")
        if key not in app.params and not app.any_param:
            raise ConfigError(f"model.params.{key}: not a parameter of {name} (allowed: "
                              f"{', '.join(app.params) or 'none'}){did_you_mean(key, app.params)}")  # fmt: skip
    return app


def check_input_shape(name: str, shape: Sequence[int | None]) -> None:
    """Planning's check of the image shape the data will give (None: not known yet)."""
    problem = _shape_problem(name, tuple(shape), keras_app_source(name).min_size)
    if problem:
        raise ConfigError(problem)


def _shape_problem(name: str, shape: tuple[int | None, ...], min_size: int | None) -> str | None:
    smallest = max(min_size or 32, 32)
    if len(shape) != 3:
        return (f"data.image_size: {name} needs image inputs (height, width, 3), but the samples have shape "
                f"{shape}; set data.image_size=[{smallest},{smallest}] (or larger) and data.channels=3")  # fmt: skip
    if shape[-1] not in (3, None):
        return f"data.channels: {name} needs 3 channels, but the samples have shape {shape}; set data.channels=3"
    if min_size and any(side is not None and side < min_size for side in shape[:2]):
        return (f"data.image_size: {name} needs images of at least {min_size}x{min_size}, but the samples "
                f"are {shape[0]}x{shape[1]}; set data.image_size=[{min_size},{min_size}] or larger")  # fmt: skip
    return None


@functools.cache
def keras_app_source(name: str) -> KerasApp:
    index = applications()
    if name not in index:
        raise ConfigError(f"{KEY}: '{name}' is not a tf_keras.applications network (e.g. {', '.join(EXAMPLES)}; "
                          f"{len(index)} in all){did_you_mean(name, index)}")  # fmt: skip
    module_name, attr = index[name]
    module = find_module(module_name, [str(tf_keras_root())])
    if module is None:
        raise ConfigError(f"{KEY}: cannot find {module_name} in tf_keras at {tf_keras_root()}")
    tree = parse_source(module.file, KEY)
    functions = {s.name: s for s in top_level(tree.body) if isinstance(s, ast.FunctionDef)}
    if attr not in functions:  # re-exported from elsewhere: nothing to read, tf_keras checks at build time
        return KerasApp(name, str(module.file), (), True, None)
    names, any_param = _keywords(functions, functions[attr], 0, frozenset(), HOPS)
    accepted = tuple(n for n in dict.fromkeys(names) if n not in SET_BY_TFBUILD)
    return KerasApp(name, str(module.file), accepted, any_param, _min_size(module, tree))


@functools.cache
def applications() -> dict[str, tuple[str, str]]:
    """Public application name -> (module that defines it, its name there), from the API file."""
    api = tf_keras_root() / "tf_keras" / "applications" / "__init__.py"
    index = {}
    for node in parse_source(api, KEY).body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name[:1].isupper():  # constructors; the lowercase names are submodules
                    index[alias.asname or alias.name] = (node.module, alias.name)
    return index


@functools.cache
def tf_keras_root() -> Path:
    """The folder tf_keras is installed in (its parent), found without importing it."""
    # Finding a top-level package's spec reads folders only; it executes nothing.
    spec = importlib.util.find_spec("tf_keras")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.source=keras_app needs the tf-keras package (pip install tf-keras)")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _keywords(
    functions: dict[str, ast.FunctionDef], function: ast.FunctionDef, by_position: int, bound: frozenset[str], hops: int
) -> tuple[list[str], bool]:
    """The keyword arguments `function` takes once its first `by_position` positional and the
    `bound` ones are given, and whether its **kwargs go somewhere unreadable."""
    params = signature(function.args, by_position)
    names = [n for n in params.names if n not in bound]
    if function.args.kwarg is None:
        return names, False
    call = _forwarding_call(function, function.args.kwarg.arg)
    if call is None:  # kept for backward compatibility only: tf_keras refuses what is left in it
        return names, False
    callee = functions.get(call.func.id) if isinstance(call.func, ast.Name) else None
    if callee is None or not hops or any(isinstance(a, ast.Starred) for a in call.args):
        return names, True
    given = frozenset(k.arg for k in call.keywords if k.arg)
    more, any_param = _keywords(functions, callee, len(call.args), given, hops - 1)
    return [*names, *more], any_param


def _forwarding_call(function: ast.FunctionDef, kwargs: str) -> ast.Call | None:
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and any(
            k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwargs for k in node.keywords
        ):
            return node
    return None


def _min_size(module: Module, tree: ast.Module) -> int | None:
    """The `min_size=N` its module passes to imagenet_utils.obtain_input_shape (the check
    tf_keras makes at build time); else that of a sibling module it builds with
    (`resnet_v2` calls `resnet.ResNet`). The smallest if there are several."""
    sizes = _min_sizes(tree)
    package = module.name.rpartition(".")[0]
    for name in [] if sizes else imported_modules(module, KEY):
        sibling = find_module(name, [str(tf_keras_root())]) if name.rpartition(".")[0] == package else None
        sizes += _min_sizes(parse_source(sibling.file, KEY)) if sibling else []
    return min(sizes, default=None)


def _min_sizes(tree: ast.Module) -> list[int]:
    sizes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "obtain_input_shape":
            sizes += [k.value.value for k in node.keywords if k.arg == "min_size" and isinstance(k.value, ast.Constant)]
    return [size for size in sizes if isinstance(size, int)]


def build_keras_app(
    name: str, input_shape: Any, num_classes: int | Mapping[str, int], task: str | Mapping[str, str] = CLASSIFICATION,
    **params: Any,
) -> Any:
    """The network for one image input and one output, from scratch (weights=None).
    Classification keeps the network's own classifier with a float32 softmax named
    "probabilities" (mixed precision computes it in float32); regression pools the features
    ("avg") into a float32 Dense named "values"."""
    import tf_keras as keras

    shape = tuple(_one("input", input_shape, "model.source=keras_app takes one image input"))
    units, task = _one("target", num_classes, _ONE_OUTPUT), _one("target", task, _ONE_OUTPUT)
    problem = _shape_problem(name, shape, keras_app_source(name).min_size)
    if problem:
        raise DataError(problem)
    constructor = getattr(keras.applications, name)
    inputs = keras.Input(shape=shape, name="inputs")
    common = {"input_tensor": inputs, "input_shape": shape, "weights": None, **params}
    try:
        if task == CLASSIFICATION:
            base = constructor(include_top=True, classes=int(units), classifier_activation=None, **common)
            outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(base.output)
        elif task == REGRESSION:
            base = constructor(include_top=False, pooling="avg", **common)
            outputs = keras.layers.Dense(int(units), dtype="float32", name="values")(base.output)
        else:
            raise DataError(f"task.name: '{task}' is not one of {CLASSIFICATION}, {REGRESSION}")
    except ValueError as exc:  # tf_keras' own checks (input size, alpha...): its first line
        raise DataError(f"{KEY}: {name} refused its arguments: {str(exc).strip().splitlines()[0]}") from None
    model = keras.Model(inputs, outputs, name=base.name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # The applications use 0.999, tuned for ImageNet's hundreds of thousands of steps: after
            # the few hundred steps of a build, the moving statistics are still mostly their
            # initial values and the saved model predicts at chance (MobileNetV2 on digits: 93%
            # training accuracy, 10% on the test split). 0.9 settles within tens of steps.
            layer.momentum = BATCH_NORM_MOMENTUM
    return model


BATCH_NORM_MOMENTUM = 0.9


_ONE_OUTPUT = "model.source=keras_app builds one output (use one data.label, or model=custom for several)"


def _one(what: str, value: Any, refusal: str) -> Any:
    """The single value of a per-name mapping (several inputs or targets), or the value."""
    if not isinstance(value, Mapping):
        return value
    if len(value) != 1:
        raise DataError(f"{refusal}; the data has {len(value)} {what}s: {', '.join(value)}")
    return next(iter(value.values()))
