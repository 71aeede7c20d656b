"""A user's builder (`model._target_`) through the installed `tfbuild`: its helper modules are
part of the training key, planning runs none of the user's code, and bad builders are one-line
config errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY, run_tfbuild
from tests.integration.test_cli import WITH_IMPORT_PROBE, assert_refused, run_dirs

MY_MODELS = """\
import tf_keras as keras
from helpers.layers import block


def build(input_shape, num_classes, width=4):
    from zoo.nets import head  # imported when called: still part of the key
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, head(block(keras.layers.Flatten()(inputs), width), num_classes))
"""
PROJECT = {
    "my_models.py": MY_MODELS,
    # Executing this package leaves a marker: planning must not.
    "helpers/__init__.py": "open('EXECUTED', 'w').write('helpers/__init__.py ran')\n",
    "helpers/layers.py": "import tf_keras as keras\n\n\ndef block(x, width):\n"
                         "    return keras.layers.Dense(width, activation='relu')(x)\n",
    "zoo/__init__.py": "",
    "zoo/nets.py": "from .util import softmax_head as head\n",
    "zoo/util.py": "import tf_keras as keras\n\n\ndef softmax_head(x, num_classes):\n"
                   "    return keras.layers.Dense(num_classes, activation='softmax')(x)\n",
    "unrelated.py": "VALUE = 1\n",
}  # fmt: skip
BUILD = ["model=custom", "model._target_=my_models.build", "+model.params.width=3", *TINY,
         "export.formats=saved_model", "verify.enabled=false", "benchmark.enabled=false"]  # fmt: skip


def train_row(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.split()[:1] == ["train"])


@pytest.mark.slow
def test_editing_a_helper_module_retrains_and_editing_another_file_does_not(tmp_path):
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    plan = run_tfbuild(*BUILD, "dry_run=true", cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert plan.returncode == 0, plan.stderr
    assert "TENSORFLOW_IMPORTED=False" in plan.stderr
    assert not (tmp_path / "EXECUTED").exists(), "a dry run ran the user's code"

    run_tfbuild(*BUILD, cwd=tmp_path, check=True)
    assert (tmp_path / "EXECUTED").exists(), "training imports the builder (so the marker test can fail)"
    files = json.loads((run_dirs(tmp_path)[0] / "build.json").read_text())
    train = next(s for s in files["steps"] if s["name"] == "train")
    assert train["status"] == "built"

    (tmp_path / "unrelated.py").write_text("VALUE = 2\n")
    assert "cached" in train_row(run_tfbuild(*BUILD, "dry_run=true", cwd=tmp_path, check=True).stdout)

    for helper in ("helpers/layers.py", "zoo/util.py"):
        (tmp_path / "EXECUTED").unlink(missing_ok=True)
        (tmp_path / helper).write_text((tmp_path / helper).read_text() + "\n# edited\n")
        row = train_row(run_tfbuild(*BUILD, "dry_run=true", cwd=tmp_path, check=True).stdout)
        assert "to build" in row and f"input changed (builder:{helper})" in row, row
        assert not (tmp_path / "EXECUTED").exists()
        (tmp_path / helper).write_text((tmp_path / helper).read_text().replace("\n# edited\n", ""))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model._target_=shutil.rmtree"], "model._target_: 'shutil' is a standard-library module, not a model builder"),
        (["model._target_=os.system"], "model._target_: 'os' is a standard-library module, not a model builder"),
        (["model._target_=tfbuild.cli.main"], "model._target_: 'tfbuild.cli' is tfbuild itself, not a model builder"),
        (["model._target_=my_models.nope"], "model._target_: module 'my_models' ({cwd}/my_models.py) defines no 'nope' "
                                            "(its functions: build)"),
        (["model._target_=my_models.biuld"], "model._target_: module 'my_models' ({cwd}/my_models.py) defines no "
                                             "'biuld' (did you mean 'build'?)"),
        (["model._target_=my_models.build", "+model.params.typo=1"],
         "model.params.typo: not a parameter of my_models.build (allowed: width)"),
        (["model._target_=zoo.nets.head", "+model.params.width=1"],
         "model.params.width: not a parameter of zoo.nets.head (allowed: none)"),
    ],
)  # fmt: skip
def test_bad_builders_are_one_line_errors_that_run_nothing(tmp_path, args, expected):
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "zoo" / "__init__.py").write_text("raise SystemExit('zoo/__init__.py ran')\n")
    result = run_tfbuild("recipe=digits", "model=custom", *args, cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert_refused(result, expected.format(cwd=tmp_path), tmp_path)
    assert not (tmp_path / "outputs" / "cache").exists()
    assert not (tmp_path / "EXECUTED").exists()
