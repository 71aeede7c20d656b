"""model.source=file and model.modules at planning (no TensorFlow): inspecting .keras, .h5
and SavedModel inputs, keying model.modules, and the generated split for data.source=none."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tfbuild.datasets.generated import write_generated_split
from tfbuild.errors import ConfigError, DataError
from tfbuild.models.model_file import check_custom_objects, inspect_model_file
from tfbuild.models.modules import module_files, module_sources


def layer(class_name: str, name: str, module: str | None = "keras.layers", registered: str | None = None, **config):
    entry = {"class_name": class_name, "config": {"name": name, **config}, "name": name}
    if module is not None:  # .keras files name every class's module; .h5 files do not
        entry.update(module=module, registered_name=registered)
    return entry


def functional(keras_file: bool) -> dict:
    """A two-input, two-output model with an unregistered custom layer (my_layers.Scale), a
    registered one (my_pkg>Offset) and built-in layers and initializers, as tf_keras writes it."""
    module = "keras.layers" if keras_file else None
    custom = "my_layers" if keras_file else None
    initializer = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}}
    layers = [
        layer("InputLayer", "features", module, batch_input_shape=[None, 6], dtype="float32"),
        layer("InputLayer", "image", module, batch_input_shape=[None, 4, 4, 1], dtype="float32"),
        layer("Scale", "scale", custom, "Scale", factor=3.0),
        layer("Offset" if keras_file else "my_pkg>Offset", "offset", custom, "my_pkg>Offset"),
        layer("Dense", "label", module, units=3, kernel_initializer=initializer),
        layer("Dense", "value", module, units=1),
    ]
    return {
        "module": "tf_keras.src.engine.functional" if keras_file else None,
        "class_name": "Functional",
        "config": {"name": "model", "layers": layers, "input_layers": [["features", 0, 0], ["image", 0, 0]],
                   "output_layers": [["label", 0, 0], ["value", 0, 0]]},
    }  # fmt: skip


def write_keras(path: Path, config: dict, version: str = "2.19.0") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": version}))
        archive.writestr("config.json", json.dumps(config))
    return path


def write_h5(path: Path, config: dict | None, version: str = "2.19.0") -> Path:
    import h5py

    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = version
        if config is not None:
            file.attrs["model_config"] = json.dumps(config)
    return path


def saved_model(folder: Path, keras: bool) -> Path:
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    if keras:
        (folder / "keras_metadata.pb").write_bytes(b"")
    return folder


INPUTS = {"features": ((6,), "float32"), "image": ((4, 4, 1), "float32")}


def test_a_keras_file_names_its_inputs_outputs_and_custom_classes(tmp_path):
    info = inspect_model_file(write_keras(tmp_path / "m.keras", functional(keras_file=True)))
    assert (info.kind, info.inputs, info.outputs, info.keras) == ("keras", INPUTS, {"label": None, "value": None}, True)
    assert (info.custom_objects, info.custom_modules) == (("Scale", "my_pkg>Offset"), ("my_layers",))


def test_an_h5_file_names_them_too_telling_built_ins_from_tf_keras_own_api(tmp_path):
    info = inspect_model_file(write_h5(tmp_path / "m.h5", functional(keras_file=False)))
    assert (info.kind, info.inputs, info.outputs) == ("h5", INPUTS, {"label": None, "value": None})
    assert (info.custom_objects, info.custom_modules) == (("Scale", "my_pkg>Offset"), ())


def test_a_sequential_model_without_an_input_layer_names_its_input_after_the_first_layer(tmp_path):
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        layer("Dense", "dense", None, units=4, batch_input_shape=[None, 8], dtype="float16"),
        layer("Dense", "probabilities", None, units=2)]}}  # fmt: skip
    info = inspect_model_file(write_h5(tmp_path / "seq.hdf5", config))
    assert (info.inputs, info.outputs, info.custom_objects) == ({"dense_input": ((8,), "float16")}, {"probabilities": None}, ())


def test_a_subclassed_model_has_no_signature_before_it_is_built(tmp_path):
    config = {"module": "my_models", "class_name": "Net", "registered_name": "Net", "config": {}}
    info = inspect_model_file(write_keras(tmp_path / "net.keras", config))
    assert (info.inputs, info.outputs, info.custom_objects, info.custom_modules) == (None, None, ("Net",), ("my_models",))


@pytest.mark.parametrize("keras", [True, False])
def test_a_saved_model_folder_leaves_its_signature_to_run_time(tmp_path, keras):
    info = inspect_model_file(saved_model(tmp_path / "sm", keras))
    assert (info.kind, info.inputs, info.outputs, info.keras) == ("saved_model", None, None, keras)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "gone.keras", "model.path: {p}/gone.keras does not exist"),
        (lambda p: write_keras(p / "m.onnx", {}), "model.path: {p}/m.onnx is not a model tfbuild reads (a .keras or .h5 "
                                                  "file, or a SavedModel folder)"),
        (lambda p: (p / "export").mkdir() or p / "export", "model.path: {p}/export is a folder but not a SavedModel "
                                                            "(no saved_model.pb in it)"),
        (lambda p: (p / "m.keras").write_text("not a zip") and p / "m.keras", "model.path: {p}/m.keras is not a .keras "
                                                                              "file (not a zip archive)"),
        (lambda p: zipfile.ZipFile(p / "m.keras", "w").close() or p / "m.keras", "model.path: {p}/m.keras is not a "
                                                                                 ".keras file (no config.json in it)"),
        (lambda p: (p / "m.h5").write_text("not hdf5") and p / "m.h5", "model.path: {p}/m.h5 is not an HDF5 file "
                                                                        "(Unable to synchronously open file (file "
                                                                        "signature not found))"),
        (lambda p: write_h5(p / "w.h5", None), "model.path: {p}/w.h5 holds weights only, no model (save the model "
                                               "with model.save, not model.save_weights)"),
        (lambda p: write_keras(p / "k3.keras", functional(True), "3.5.0"), "model.path: {p}/k3.keras was saved by Keras "
                                                                           "3.5.0; tfbuild loads Keras 2 (tf_keras) "
                                                                           "models: export it as a SavedModel "
                                                                           "(model.export(folder)) and use that folder"),
    ],
)  # fmt: skip
def test_what_is_not_a_model_is_refused_in_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as refused:
        inspect_model_file(path)
    assert str(refused.value) == message.format(p=tmp_path)


def test_a_bad_config_json_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(ConfigError, match=r"^model\.path: .*m\.keras has an unreadable config\.json \("):
        inspect_model_file(tmp_path / "m.keras")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The user's modules: one defines the custom layers and imports a helper package whose
    __init__ must not run at planning; another registers an object by a name of its own."""
    files = {
        "my_layers.py": "import tf_keras as keras\nfrom helpers import blocks\n\n"
                        "class Scale(keras.layers.Layer):\n    pass\n\n"
                        "@keras.saving.register_keras_serializable(package='my_pkg')\nclass Offset(keras.layers.Layer):\n"
                        "    pass\n",
        "helpers/__init__.py": "raise RuntimeError('helpers ran')\n",
        "helpers/blocks.py": "import json\nimport my_layers\n",
        "registered.py": "import tf_keras as keras\n\nkeras.saving.get_custom_objects()['Scale'] = object\n",
        "other.py": "from helpers import blocks\n",
        "broken.py": "def oops(:\n",
    }  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def search(project: Path) -> list[str]:
    return [str(project), *sys.path]


def test_model_modules_are_keyed_with_the_project_files_they_import(project):
    files = module_files(["my_layers", "other"], search(project))
    assert files == {
        "modules:my_layers": str(project / "my_layers.py"),
        "modules:my_layers:helpers/__init__.py": str(project / "helpers/__init__.py"),
        "modules:my_layers:helpers/blocks.py": str(project / "helpers/blocks.py"),
        "modules:other": str(project / "other.py"),  # its helpers are keyed once, above
    }  # and helpers/__init__.py, which raises when run, was only read


def test_a_module_of_an_installed_package_is_keyed_by_its_distribution():
    sources = module_sources(["omegaconf.omegaconf"])
    assert list(sources.files) == ["modules:omegaconf.omegaconf"]
    assert sources.distributions["omegaconf.omegaconf"].startswith("omegaconf==")


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (["json"], "model.modules: 'json' is a standard-library module; list your own modules (custom layers, losses, "
                   "registered objects)"),
        (["tfbuild.models"], "model.modules: 'tfbuild.models' is tfbuild itself; list your own modules (custom "
                             "layers, losses, registered objects)"),
        (["my-layers"], "model.modules: 'my-layers' is not a module name (e.g. my_layers or my_project.layers)"),
        (["my_layer"], "model.modules: cannot import module 'my_layer' (not found on PYTHONPATH or in the folder you "
                       "run tfbuild from)"),
        (["broken"], "model.modules: cannot parse {p}/broken.py: invalid syntax (broken.py, line 1)"),
    ],
)  # fmt: skip
def test_model_modules_refuses(project, modules, message):
    with pytest.raises(ConfigError) as refused:
        module_files(modules, search(project))
    assert str(refused.value) == message.format(p=project)


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ([], "model.path: {m} uses custom classes Scale, Offset (module my_layers): list the module(s) that define "
             "them in model.modules"),
        (["registered"], "model.modules: none of registered defines Offset, which {m} uses (module my_layers)"),
    ],
)  # fmt: skip
def test_custom_classes_need_modules_that_define_them(project, monkeypatch, modules, message):
    monkeypatch.syspath_prepend(str(project))
    info = inspect_model_file(write_keras(project / "m.keras", functional(keras_file=True)))
    with pytest.raises(ConfigError) as refused:
        check_custom_objects(info, modules)
    assert str(refused.value) == message.format(m=project / "m.keras")


@pytest.mark.parametrize("modules", [["my_layers"], ["other"]])  # other imports my_layers through helpers
def test_custom_classes_found_in_the_modules_files(project, monkeypatch, modules):
    monkeypatch.syspath_prepend(str(project))
    check_custom_objects(inspect_model_file(write_h5(project / "m.h5", functional(keras_file=False))), modules)


def test_generated_inputs_are_seeded_and_typed(tmp_path):
    specs = {"x": ((4, 3), "float32"), "ids": ((5,), "int64"), "mask": ((2,), "bool")}
    split = write_generated_split(tmp_path / "a", specs, 300, seed=7)
    again = write_generated_split(tmp_path / "b", {"x": specs["x"]}, 300, seed=7)
    assert split.generated and split.target_names == [] and split.input_names == ["x", "ids", "mask"]
    assert {part: split.count(part) for part in ("train", "validation", "test")} == dict.fromkeys(
        ("train", "validation", "test"), 300)  # fmt: skip
    inputs = split.inputs("test")
    assert (inputs["x"].dtype.name, inputs["ids"].dtype.name, inputs["mask"].dtype.name) == ("float32", "int64", "bool")
    assert 0 <= inputs["x"].min() and inputs["x"].max() < 1 and set(inputs["ids"].ravel().tolist()) == {0, 1}
    assert (split.inputs("train")["x"] == inputs["x"]).all(), "every part holds the same samples"
    assert (again.inputs("test")["x"] == inputs["x"]).all(), "an input's values do not depend on the others"
    assert (tmp_path / "a/test/x0.npy").read_bytes() == (tmp_path / "b/test/x0.npy").read_bytes()
    assert write_generated_split(tmp_path / "c", specs, 300, seed=8).inputs("test")["x"][0, 0, 0] != inputs["x"][0, 0, 0]


@pytest.mark.parametrize(
    ("specs", "samples", "message"),
    [
        ({"x": ((None, 3), "float32")}, 8, "data.source=none: the model's input 'x' has shape (None, 3), with sizes "
                                           "known only from data; give data to verify on (data.source and data.path)"),
        ({"text": ((1,), "string")}, 8, "data.source=none: cannot generate the model's input 'text' of dtype string "
                                        "(numbers and booleans only); give data to verify on"),
        ({"x": ((3,), "float32")}, 0, "data.generated_samples: 0 is not a positive number of samples"),
    ],
)  # fmt: skip
def test_generated_inputs_refuse(tmp_path, specs, samples, message):
    with pytest.raises(DataError) as refused:
        write_generated_split(tmp_path / "g", specs, samples, seed=0)
    assert str(refused.value) == message


def test_planning_imports_no_tensorflow(project, tmp_path):
    """.keras files, SavedModel folders and modules are read with the standard library only;
    .h5 files need h5py (and so NumPy), never TensorFlow."""
    keras_file = write_keras(tmp_path / "m.keras", functional(keras_file=True))
    h5_file = write_h5(tmp_path / "m.h5", functional(keras_file=False))
    folder = saved_model(tmp_path / "sm", keras=False)
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(project)!r})\n"
        "from tfbuild.models.model_file import check_custom_objects, inspect_model_file\n"
        "from tfbuild.models.modules import module_files\n"
        "heavy = lambda: [m for m in ('tensorflow', 'tf_keras', 'keras', 'numpy', 'h5py') if m in sys.modules]\n"
        f"inspect_model_file({str(folder)!r}); module_files(['my_layers'])\n"
        f"check_custom_objects(inspect_model_file({str(keras_file)!r}), ['my_layers'])\n"
        "print(heavy())\n"
        f"check_custom_objects(inspect_model_file({str(h5_file)!r}), ['my_layers'])\n"
        "print(heavy())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["[]", "['numpy', 'h5py']"]


def test_hostile_model_files_are_refused_in_one_line_before_they_are_read_whole(tmp_path):
    import os
    import zipfile

    from tfbuild.errors import ConfigError
    from tfbuild.models.model_file import inspect_model_file

    os.mkfifo(tmp_path / "fifo.keras")  # opening it would block
    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b"[" + b" " * (70 * 1024 * 1024))  # 70 MB of spaces: a few KB zipped
    with zipfile.ZipFile(tmp_path / "deep.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "[" * 100_000 + "]" * 100_000)
    with zipfile.ZipFile(tmp_path / "walk.keras", "w") as archive:  # parses, but too deep to walk
        archive.writestr("config.json", '{"a":' * 900 + "1" + "}" * 900)
    expected = {
        "fifo.keras": "is not a regular file",
        "bomb.keras": "config.json expands to 73,400,321 bytes",
        "deep.keras": "nested too deeply",
        "walk.keras": "",
    }
    for name, text in expected.items():
        try:
            inspect_model_file(tmp_path / name)
        except ConfigError as error:
            assert str(error).startswith(f"model.path: {tmp_path / name}") and text in str(error), str(error)
        else:
            assert name == "walk.keras", f"{name} was accepted"
