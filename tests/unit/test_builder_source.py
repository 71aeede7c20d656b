"""Finding, checking and keying a user's builder by reading files only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tfbuild.builder_source import find_module, user_builder
from tfbuild.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: a builder module, a helpers package it imports, a package with
    relative imports imported inside the function, and files it does not use. Both packages'
    __init__.py misbehave when executed, so a test sees any execution."""
    files = {
        "my_models.py": (
            "import os\n"
            "import tf_keras as keras\n"
            "from helpers.layers import block\n\n"
            "def build(input_shape, num_classes, width=4, *, depth=1):\n"
            "    from zoo.nets import head\n"
            "    return head(block(keras.Input(input_shape), width), num_classes)\n\n"
            "def needs_depth(input_shape, num_classes, depth):\n"
            "    pass\n\n"
            "def flexible(shape, classes, **options):\n"
            "    pass\n\n"
            "from zoo.nets import head as reexported\n"
            "from shutil import rmtree as clean\n"
            "PARTIAL = build\n"
        ),
        "helpers/__init__.py": "open('MARKER', 'w').write('helpers ran')\n",
        "helpers/layers.py": "def block(x, width):\n    return x\n",
        "zoo/__init__.py": "raise RuntimeError('zoo ran')\n",
        "zoo/nets.py": "from .util import softmax_head as head\nfrom . import extra\n",
        "zoo/util.py": "def softmax_head(x, num_classes, temperature=1.0):\n    return x\n",
        "zoo/extra.py": "VALUE = 1\n",
        "zoo/unused.py": "VALUE = 2\n",
        "unrelated.py": "VALUE = 3\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def search_path(project: Path) -> list[str]:
    return [str(project), *sys.path]


def test_the_key_holds_the_builder_and_every_project_file_it_imports(project):
    source = user_builder("my_models.build", ["width"], search_path(project))
    assert source.files == {
        "builder": str(project / "my_models.py"),
        "builder:helpers/__init__.py": str(project / "helpers/__init__.py"),
        "builder:helpers/layers.py": str(project / "helpers/layers.py"),
        "builder:zoo/__init__.py": str(project / "zoo/__init__.py"),
        "builder:zoo/extra.py": str(project / "zoo/extra.py"),  # `from . import extra`
        "builder:zoo/nets.py": str(project / "zoo/nets.py"),  # imported inside the function
        "builder:zoo/util.py": str(project / "zoo/util.py"),  # `from .util import ...`
    }  # not os (standard library), tf_keras (installed), zoo/unused.py or unrelated.py
    assert source.distribution is None


def test_planning_runs_none_of_the_users_code(project):
    user_builder("my_models.build", [], search_path(project))
    user_builder("zoo.nets.head", [], search_path(project))
    assert not (project / "MARKER").exists()
    # By file, not by name: other tests in this process may have imported their own my_models.
    loaded = {str(getattr(module, "__file__", None) or "") for module in list(sys.modules.values())}
    assert not [file for file in loaded if file.startswith(str(project))]


def test_a_builder_in_a_package_keys_the_package_init(project):
    source = user_builder("zoo.util.softmax_head", ["temperature"], search_path(project))
    assert source.files == {"builder": str(project / "zoo/util.py"), "builder:zoo/__init__.py": str(project / "zoo/__init__.py")}


@pytest.mark.parametrize(
    "target, params, message",
    [
        ("shutil.rmtree", [], "model._target_: 'shutil' is a standard-library module, not a model builder"),
        ("os.system", [], "model._target_: 'os' is a standard-library module"),
        ("sys.exit", [], "model._target_: 'sys' is a standard-library module"),
        ("tfbuild.cli.main", [], "model._target_: 'tfbuild.cli' is tfbuild itself, not a model builder"),
        ("my_models.nope", [], "model._target_: module 'my_models' ({project}/my_models.py) defines no 'nope'"),
        ("my_models.buld", [], "model._target_: module 'my_models' ({project}/my_models.py) defines no 'buld' "
                               "(did you mean 'build'?)"),
        ("my_models.build", ["typo"], "model.params.typo: not a parameter of my_models.build (allowed: width, depth)"),
        ("my_models.build", ["widht"], "model.params.widht: not a parameter of my_models.build (allowed: width, "
                                       "depth) (did you mean 'width'?)"),
        ("my_models.needs_depth", [], "model._target_: my_models.needs_depth needs model.params.depth (it has no default)"),
        ("my_models.reexported", ["typo"], "model.params.typo: not a parameter of my_models.reexported (allowed: temperature)"),
        ("my_models.clean", [], "model._target_: 'my_models.clean' comes from 'shutil', which is a standard-library module"),
        ("nope.build", [], "model._target_: cannot import module 'nope' (not found on PYTHONPATH"),
        ("zoo.missing.build", [], "model._target_: cannot import module 'zoo.missing'"),
        ("my_models", [], "model._target_: 'my_models' is not of the form package.module.function"),
        ("my_models.build()", [], "model._target_: 'my_models.build()' is not of the form package.module.function"),
    ],
)  # fmt: skip
def test_bad_builders_are_config_errors(project, target, params, message):
    with pytest.raises(ConfigError) as info:
        user_builder(target, params, search_path(project))
    assert str(info.value).startswith(message.format(project=project))


def test_params_are_checked_against_the_source_only_where_it_can_be_read(project):
    assert user_builder("my_models.flexible", ["anything"], search_path(project))  # **options
    assert user_builder("my_models.PARTIAL", ["anything"], search_path(project))  # an assignment: not checkable


def test_a_builder_from_an_installed_package_is_keyed_by_its_version():
    from importlib.metadata import version

    source = user_builder("omegaconf.omegaconf.OmegaConf", [])
    assert source.distribution == f"omegaconf=={version('omegaconf')}"
    assert list(source.files) == ["builder"]


def test_a_namespace_package_is_not_a_module(tmp_path):
    (tmp_path / "space" / "inner").mkdir(parents=True)
    (tmp_path / "space" / "inner" / "mod.py").write_text("def build(a, b):\n    pass\n")
    assert find_module("space", [str(tmp_path)]) is None
    found = find_module("space.inner.mod", [str(tmp_path)])
    assert found is not None and found.file == tmp_path / "space" / "inner" / "mod.py" and found.package_files == ()


def test_training_refuses_a_module_other_than_the_planned_one(tmp_path, monkeypatch):
    from tfbuild.training.builders import resolve_builder

    for folder in ("planned", "imported"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "twin_models.py").write_text("def build(input_shape, num_classes):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "imported"))
    monkeypatch.delitem(sys.modules, "twin_models", raising=False)
    assert resolve_builder("twin_models.build", tmp_path / "imported" / "twin_models.py")
    with pytest.raises(RuntimeError, match="but the build was planned with .*planned/twin_models.py"):
        resolve_builder("twin_models.build", tmp_path / "planned" / "twin_models.py")
    monkeypatch.delitem(sys.modules, "twin_models")
