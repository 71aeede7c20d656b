"""export.serving: its settings checked with the key named, and the one step it plans."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tfbuild.errors import ConfigError
from tfbuild.formats.base import DATA, SAVED_MODEL, PlanContext
from tfbuild.formats.serving import SERVING, ServingExport, export_settings


def cfg(**serving):
    return OmegaConf.create({"export": {"serving": serving}})


def context(name: str = "digits", **serving) -> PlanContext:
    return PlanContext(cfg=cfg(**serving), source=SAVED_MODEL, variants={"serving": ()}, name=name)


def test_defaults_and_the_planned_step():
    assert export_settings(OmegaConf.create({"export": {}})) == ServingExport()
    SERVING.check(cfg(), (), ("serving",))
    (step,) = SERVING.plan(context(), None)
    assert (step.name, step.kind, dict(step.inputs)) == ("serving", "serving", {"saved_model": SAVED_MODEL, "data": DATA})
    assert dict(step.params) == {"model_name": "digits", "version": 1, "warmup_samples": 10, "samples": 3,
                                 "models_dir": "/models", "batching": None}  # fmt: skip
    (out,) = step.outputs
    assert (out.artifact, out.publish, out.format, out.variant) == ("serving", "serving", "serving", None)


def test_named_model_and_batching_reach_the_step():
    batching = {"max_batch_size": 16, "allowed_batch_sizes": [4, 16], "pad_variable_length_inputs": None}
    SERVING.check(cfg(model_name="my-model.v2", batching=batching), (), ("serving",))
    (step,) = SERVING.plan(context(model_name="my-model.v2", version=3, batching=batching), None)
    # Unset batching fields are left out: the server keeps its defaults for them.
    assert step.params["model_name"] == "my-model.v2" and step.params["version"] == 3
    assert step.params["batching"] == {"max_batch_size": 16, "allowed_batch_sizes": [4, 16]}
    (step,) = SERVING.plan(context(batching={}), None)
    assert step.params["batching"] == {}  # an empty mapping still turns batching on


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model_name": "a/b"}, "export.serving.model_name: 'a/b' is not a folder name TF Serving can serve: use letters, digits"),
        ({"model_name": ".."}, "export.serving.model_name: '..' is not a folder name"),
        ({"model_name": ""}, "export.serving.model_name: '' is not a folder name"),
        ({"version": 0}, "export.serving.version must be an integer from 1 to"),
        ({"version": True}, "export.serving.version must be an integer"),
        ({"warmup_samples": 1001}, "export.serving.warmup_samples must be an integer from 0 to 1000"),
        ({"warmup_samples": -1}, "export.serving.warmup_samples must be an integer from 0 to 1000"),
        ({"samples": 0}, "export.serving.samples must be an integer from 1"),
        ({"models_dir": "models"}, "export.serving.models_dir must be an absolute path or a URI"),
        ({"models_dir": "/"}, "export.serving.models_dir must be an absolute path or a URI other than '/'"),
        ({"modle_name": "x"}, "export.serving.modle_name is not a setting (settings: model_name, version"),
        ({"batching": {"max_batch": 8}}, "export.serving.batching.max_batch is not a setting"),
        ({"batching": 8}, "export.serving.batching must be null or a mapping"),
        ({"batching": {"max_batch_size": 0}}, "export.serving.batching.max_batch_size must be >= 1, got 0"),
        ({"batching": {"batch_timeout_micros": -5}}, "export.serving.batching.batch_timeout_micros must be >= 0"),
        ({"batching": {"max_batch_size": 8, "allowed_batch_sizes": [8, 4]}}, "export.serving.batching.allowed_batch_sizes must be positive and increasing"),
        ({"batching": {"max_batch_size": 8, "allowed_batch_sizes": [2, 4]}}, "export.serving.batching.allowed_batch_sizes must end with max_batch_size (8), got [2, 4]"),
        ({"batching": {"allowed_batch_sizes": [2, 4]}}, "export.serving.batching.allowed_batch_sizes must end with max_batch_size (unset)"),
        ({"batching": {"num_batch_threads": "four"}}, "export.serving.batching.num_batch_threads has the wrong type"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_with_the_key(settings, message):
    with pytest.raises(ConfigError) as failure:
        SERVING.check(cfg(**settings), (), ("serving",))
    assert str(failure.value).startswith(message), str(failure.value)
    assert "\n" not in str(failure.value)


def test_a_recipe_name_that_is_no_folder_name_needs_model_name():
    with pytest.raises(ConfigError, match=r"its default, the recipe's name 'my recipe', .* set export.serving.model_name"):
        SERVING.plan(context(name="my recipe"), None)
    (step,) = SERVING.plan(context(name="my recipe", model_name="ok"), None)
    assert step.params["model_name"] == "ok"


def test_importing_the_format_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, tfbuild.formats.serving; print('tensorflow' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
