"""Model files that carry code, saved by real tf_keras and brought to the real `tfbuild`:
a Lambda whose function writes a marker file, in a `.keras`, an `.h5` and a Keras
SavedModel, at the top level, inside a Sequential, inside a TimeDistributed wrapper, or as
only its output_shape. Without model.trust_code each is refused while planning (exit 2, one
line) and the marker is never written; with it the model loads and the code runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_tfbuild

pytestmark = pytest.mark.slow  # the models are saved by real TensorFlow, once a session

# Plain tf_keras, as a user (or an attacker) saves a model. Each Lambda appends to its own
# marker when called: tf_keras calls it while it rebuilds the model from the file.
SAVE = '''\
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, os.getcwd())
import tensorflow as tf
import tf_keras as keras
from my_fns import double


def writes(marker):
    return eval(f"lambda t: (open({os.path.abspath(marker)!r}, 'a').write('ran'), t)[1]")


def save(name, make, formats=("keras", "h5", "sm")):
    x = keras.Input((3, 4), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="out")(keras.layers.Flatten()(make()(x))))
    for fmt in formats:
        model.save(f"{name}_sm" if fmt == "sm" else f"{name}.{fmt}")


save("top", lambda: keras.layers.Lambda(writes("marker_top"), name="code"))
save("seq", lambda: keras.Sequential([keras.layers.Dense(4), keras.layers.Lambda(writes("marker_seq"), name="code")],
                                     name="inner"))
save("wrap", lambda: keras.layers.TimeDistributed(keras.layers.Lambda(writes("marker_wrap"), name="code"), name="td"))
# The function is saved by name (a tf.function is not bytecode); only output_shape is code.
save("shape", lambda: keras.layers.Lambda(tf.function(double), output_shape=writes("marker_shape"), name="code"))
save("trusted", lambda: keras.layers.Lambda(writes("marker_trusted"), name="code"), formats=("h5",))
save("byname", lambda: keras.layers.Lambda(tf.function(double), name="code"), formats=("h5", "keras"))

import keras as keras3  # Keras 3, as `pip install keras` gives it
x = keras3.Input((4,))
keras3.Model(x, keras3.layers.Lambda(writes("marker_keras3"))(x)).save("keras3.keras")
for marker in os.listdir("."):
    if marker.startswith("marker_"):
        os.remove(marker)  # saving ran each Lambda; the tests start without markers
'''

MY_FNS = '''\
import tf_keras as keras


def double(t):
    return t * 2


keras.saving.get_custom_objects()["double"] = double  # found by name when a model is loaded
'''

PLACES = {"top": "layer 'model/code' (its function)", "seq": "layer 'model_1/inner/code' (its function)",
          "wrap": "layer 'model_2/td/code' (its function)", "shape": "layer 'model_3/code' (its output_shape)"}  # fmt: skip
CONTAINERS = {"keras": "{}.keras", "h5": "{}.h5", "saved_model": "{}_sm"}
WHY = ("is Python code saved in the file, which loading would run; refused (set model.trust_code: true only if you "
       "trust whoever wrote the file)")
QUICK = ["data=none", "export.formats=[saved_model]", "benchmark.enabled=false"]


@pytest.fixture(scope="session")
def code_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("code_models")
    (folder / "my_fns.py").write_text(MY_FNS)
    subprocess.run([sys.executable, "-c", SAVE], cwd=folder, check=True, capture_output=True, timeout=600)
    assert not list(folder.glob("marker_*"))
    return folder


def refused(folder: Path, path: str, *args: str) -> str:
    result = run_tfbuild("model=file", f"model.path={path}", *QUICK, *args, cwd=folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("place", PLACES)
def test_a_file_with_code_is_refused_while_planning_and_its_code_never_runs(code_models, compose_cfg, container, place):
    """Every container and hiding place, planned in this process (what the command plans)."""
    from tfbuild.errors import ConfigError
    from tfbuild.resolver import resolve

    path = code_models / CONTAINERS[container].format(place)
    with pytest.raises(ConfigError) as error:
        resolve(compose_cfg("model=file", f"model.path={path}", *QUICK))
    assert str(error.value) == f"model.path: {path}: {PLACES[place]} {WHY}"
    assert not (code_models / f"marker_{place}").exists(), "the file's code ran"


@pytest.mark.parametrize("container", CONTAINERS)
def test_the_command_refuses_it_in_one_line_exit_2(code_models, container):
    path = CONTAINERS[container].format("wrap")
    assert refused(code_models, path) == f"tfbuild: error: model.path: {path}: {PLACES['wrap']} {WHY}"
    assert not (code_models / "marker_wrap").exists(), "the file's code ran"
    assert not list(code_models.glob("outputs/**/build.json"))


def test_trust_code_loads_the_file_runs_its_code_and_is_keyed_and_shown(code_models, tmp_path):
    run = tmp_path / "run"
    result = run_tfbuild("model=file", "model.path=trusted.h5", "model.trust_code=true", *QUICK,
                         f"hydra.run.dir={run}", cwd=code_models)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"model.trust_code is true: loading {code_models / 'trusted.h5'} runs the Python code it carries" in (
        " ".join(result.stdout.split()))  # fmt: skip
    assert (code_models / "marker_trusted").exists(), "trusted, the Lambda was rebuilt and called"
    build = json.loads((run / "build.json").read_text())
    assert build["config"]["model"]["trust_code"] is True
    # The same file and cache without trust: refused while planning, never served from the cache.
    (code_models / "marker_trusted").unlink()
    line = refused(code_models, "trusted.h5")
    assert "layer 'model_4/code' (its function)" in line and not (code_models / "marker_trusted").exists()


def test_trust_is_in_the_key_of_every_step_that_loads_the_file(code_models, compose_cfg):
    from tfbuild.resolver import resolve

    def loading_params(trust: bool) -> dict:
        cfg = compose_cfg("model=file", f"model.path={code_models / 'byname.h5'}",
                          *QUICK, f"model.trust_code={trust}", "target.jit_compile=true")  # fmt: skip
        return {s.name: s.params for s in resolve(cfg).plan.steps if "model" in s.files}

    untrusted, trusted = loading_params(False), loading_params(True)
    assert sorted(trusted) == ["saved_model", "saved_model[portable]"]
    assert all("trust_code" not in p for p in untrusted.values()), "an untrusted file's keys are as they were"
    assert all(trusted[name] == {**untrusted[name], "trust_code": True} for name in trusted)


@pytest.mark.parametrize("path", ["byname.h5", "byname.keras"])
def test_a_lambda_that_names_a_registered_function_loads_in_safe_mode(code_models, tmp_path, path):
    result = run_tfbuild("model=file", f"model.path={path}", "model.modules=[my_fns]", *QUICK,
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=code_models)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "model.trust_code is true" not in " ".join(result.stdout.split())


def test_a_keras_3_file_is_refused_as_keras_3_before_its_code(code_models):
    line = refused(code_models, "keras3.keras")
    assert "was saved by Keras 3." in line and "export it as a SavedModel" in line, line
    assert not (code_models / "marker_keras3").exists()


# The step's loader with the planning check taken out: tf_keras itself must still refuse.
SECOND_LINE = '''\
import json, os, sys
sys.path.insert(0, os.getcwd())
from tfbuild.tfenv import import_tensorflow
import_tensorflow()
from tfbuild.errors import DataError
from tfbuild.models import model_file

model_file.check_trusted = lambda *args, **kwargs: None
outcome = {}
for path in ("top.keras", "top.h5", "seq.h5", "top_sm", "wrap_sm"):
    try:
        model = model_file.load_model(path)
        outcome[path] = "loaded " + ",".join(type(layer).__name__ for layer in model.layers)
    except DataError as exc:
        outcome[path] = str(exc)
print("OUTCOME=" + json.dumps(outcome))
'''


def test_without_trust_tf_keras_loads_in_safe_mode_as_a_second_line(code_models):
    """.keras and .h5: tf_keras refuses the bytecode; a Keras SavedModel: tf_keras falls back
    to the traced functions saved beside the config, and the Lambda's Python never runs."""
    result = subprocess.run([sys.executable, "-c", SECOND_LINE], cwd=code_models, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.split("OUTCOME=")[1])
    for path in ("top.keras", "top.h5", "seq.h5"):
        assert outcome[path].startswith(f"model.path: cannot load {path}: Requested the deserialization of a "), outcome
    assert outcome["top_sm"].startswith("loaded ") and outcome["wrap_sm"].startswith("loaded "), outcome
    assert not list(code_models.glob("marker_*")), "the file's code ran"
