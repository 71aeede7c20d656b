"""model.source=keras_app at planning: tf_keras.applications constructors and their keyword
arguments read from tf_keras' source, with no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tfbuild.errors import ConfigError
from tfbuild.models import keras_app
from tfbuild.models.keras_app import check_input_shape, check_keras_app


def test_parameters_are_read_from_the_constructor_and_what_its_kwargs_reach():
    assert check_keras_app("MobileNetV2", ["alpha"]).params == ("alpha",)
    # ResNet50's **kwargs reach ResNet(), whose only free keyword is classifier_activation,
    # which tfbuild sets: nothing is left for the recipe.
    assert check_keras_app("ResNet50", []).params == ()
    # EfficientNetB0 passes width, depth, size and dropout by position and model_name by
    # keyword to EfficientNet(); the rest of its keywords reach it through **kwargs.
    efficientnet = check_keras_app("EfficientNetB0", ["drop_connect_rate", "activation"])
    assert efficientnet.params == ("drop_connect_rate", "depth_divisor", "activation", "blocks_args")
    assert check_keras_app("MobileNetV3Small", ["minimalistic", "dropout_rate"]).any_param is False


def test_the_key_file_is_the_constructors_own_source():
    app = check_keras_app("MobileNetV2", [])
    assert Path(app.file).name == "mobilenet_v2.py" and Path(app.file).parent.name == "applications"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("MobileNetv2", [], "model.name: 'MobileNetv2' is not a tf_keras.applications network (e.g. MobileNetV2, "
                            "MobileNetV3Small, ResNet50, EfficientNetB0, DenseNet121; 71 in all) "
                            "(did you mean 'MobileNetV2'?)"),
        ("resnet", [], "model.name: 'resnet' is not a tf_keras.applications network (e.g. MobileNetV2, "
                       "MobileNetV3Small, ResNet50, EfficientNetB0, DenseNet121; 71 in all)"),
        ("MobileNetV2", ["alpah"], "model.params.alpah: not a parameter of MobileNetV2 (allowed: alpha) "
                                   "(did you mean 'alpha'?)"),
        ("ResNet50", ["alpha"], "model.params.alpha: not a parameter of ResNet50 (allowed: none)"),
        # A keyword EfficientNetB0 already passes to EfficientNet itself would be passed twice.
        ("EfficientNetB0", ["model_name"], "model.params.model_name: not a parameter of EfficientNetB0 (allowed: "
                                           "drop_connect_rate, depth_divisor, activation, blocks_args)"),
        # MobileNetV2's **kwargs are for backward compatibility only; tf_keras refuses others.
        ("MobileNetV2", ["layers"], "model.params.layers: not a parameter of MobileNetV2 (allowed: alpha)"),
        ("MobileNetV2", ["weights"], "model.params.weights: not settable with model.source=keras_app: tfbuild "
                                     "builds with weights=None (no downloads); to start from a trained model, "
                                     "bring it with model=file"),
        ("ResNet50", ["classifier_activation"], "model.params.classifier_activation: not settable with "
                                                "model.source=keras_app: tfbuild ends classification with a "
                                                "float32 softmax named 'probabilities'"),
    ],
)  # fmt: skip
def test_planning_refuses(name, params, message):
    with pytest.raises(ConfigError) as refused:
        check_keras_app(name, params)
    assert str(refused.value) == message


@pytest.mark.parametrize("param", ["input_shape", "input_tensor", "weights", "classes", "include_top",
                                   "classifier_activation", "pooling"])  # fmt: skip
def test_what_tfbuild_sets_is_refused_with_its_reason(param):
    with pytest.raises(ConfigError, match=rf"^model\.params\.{param}: not settable with model.source=keras_app: tfbuild "):
        check_keras_app("MobileNetV2", [param])


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("MobileNetV2", (8, 8, 3), "data.image_size: MobileNetV2 needs images of at least 32x32, but the samples "
                                   "are 8x8; set data.image_size=[32,32] or larger"),
        ("InceptionV3", (64, 64, 3), "data.image_size: InceptionV3 needs images of at least 75x75, but the samples "
                                     "are 64x64; set data.image_size=[75,75] or larger"),
        # resnet_v2 builds with resnet.ResNet: the sibling module's check applies.
        ("ResNet50V2", (16, 64, 3), "data.image_size: ResNet50V2 needs images of at least 32x32, but the samples "
                                    "are 16x64; set data.image_size=[32,32] or larger"),
        ("MobileNetV2", (32, 32, 1), "data.channels: MobileNetV2 needs 3 channels, but the samples have shape "
                                     "(32, 32, 1); set data.channels=3"),
        ("MobileNetV2", (64,), "data.image_size: MobileNetV2 needs image inputs (height, width, 3), but the samples "
                               "have shape (64,); set data.image_size=[32,32] (or larger) and data.channels=3"),
        ("Xception", (8, 8), "data.image_size: Xception needs image inputs (height, width, 3), but the samples have "
                             "shape (8, 8); set data.image_size=[71,71] (or larger) and data.channels=3"),
    ],
)  # fmt: skip
def test_input_shapes_it_cannot_take(name, shape, message):
    with pytest.raises(ConfigError) as refused:
        check_input_shape(name, shape)
    assert str(refused.value) == message


@pytest.mark.parametrize(("name", "shape"), [("MobileNetV2", (32, 32, 3)), ("MobileNetV2", (None, None, 3)),
                                             ("MobileNetV3Small", (8, 8, 3)), ("Xception", (71, 90, None))])  # fmt: skip
def test_input_shapes_it_takes(name, shape):
    check_input_shape(name, shape)


@pytest.fixture
def fake_tf_keras(tmp_path, monkeypatch):
    """A tf_keras tree whose constructors pass **kwargs on in ways the real one does not."""
    files = {
        "tf_keras/__init__.py": "raise RuntimeError('tf_keras ran')\n",
        "tf_keras/applications/__init__.py": (
            "from tf_keras.src.applications.nets import Deep, Opaque, Reexported, Starred\n"
            "from tf_keras.applications import nets\n"
        ),
        "tf_keras/src/__init__.py": "",
        "tf_keras/src/applications/__init__.py": "",
        "tf_keras/src/applications/nets.py": (
            "from .other import Reexported\n"
            "def Deep(width=1, **kwargs):\n    return _middle(width, depth=2, **kwargs)\n"
            "def _middle(width, depth, scale=1.0, **kwargs):\n    return _base(width, **kwargs)\n"
            "def _base(width, bias=True):\n    obtain_input_shape(None, min_size=16)\n"
            "def Opaque(**kwargs):\n    return other.build(**kwargs)\n"
            "def Starred(*args, **kwargs):\n    return _base(*args, **kwargs)\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(keras_app, "tf_keras_root", lambda: tmp_path)
    for cached in (keras_app.applications, keras_app.keras_app_source):
        cached.cache_clear()
    yield tmp_path
    for cached in (keras_app.applications, keras_app.keras_app_source):
        cached.cache_clear()


def test_kwargs_are_followed_through_several_functions(fake_tf_keras):
    app = check_keras_app("Deep", ["width", "scale", "bias"])
    assert (app.params, app.any_param, app.min_size) == (("width", "scale", "bias"), False, 16)
    with pytest.raises(ConfigError, match=r"^model\.params\.depth: not a parameter of Deep \(allowed: width, scale, bias\)"):
        check_keras_app("Deep", ["depth"])


@pytest.mark.parametrize("name", ["Opaque", "Starred", "Reexported"])
def test_kwargs_that_go_where_planning_cannot_read_are_not_checked(fake_tf_keras, name):
    assert check_keras_app(name, ["anything"]).any_param


def test_planning_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from tfbuild.models.keras_app import check_keras_app, check_input_shape\n"
        "check_keras_app('MobileNetV2', ['alpha']); check_keras_app('EfficientNetB0', [])\n"
        "check_input_shape('MobileNetV2', (32, 32, 3))\n"
        "print([m for m in ('tensorflow', 'tf_keras', 'keras', 'numpy') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
