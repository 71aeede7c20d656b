"""The config surface through Hydra's compose API: groups, recipes, schema errors."""

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tfbuild.hydra_errors import one_line_error
from tfbuild.formats import FORMATS
from tfbuild.schema import PrecisionPolicy, TargetName, TfbuildConfig

from tests.conftest import RECIPES


def error_line(compose_cfg, *overrides):
    with pytest.raises((HydraException, OmegaConfBaseException)) as info:
        compose_cfg(*overrides)
    return one_line_error(info.value, RECIPES)


def test_defaults_without_a_recipe(compose_cfg):
    cfg = compose_cfg()
    assert cfg.model.name == "cnn"
    assert cfg.target.name == TargetName.cpu
    assert cfg.precision.policy is None, "no precision chosen: the target's applies"
    assert cfg.target.precision == PrecisionPolicy.float32
    assert list(cfg.target.formats) == ["saved_model"], "the cpu profile's formats"
    assert list(cfg.export.formats) == [], "the recipe's and command line's formats, added to the target's"
    assert cfg.export.tflite.quantization is None, "null: the target's variants"
    assert cfg.cache.dir == "outputs/cache"
    assert cfg.dry_run is False


def test_recipe_overrides_groups_and_values(compose_cfg):
    cfg = compose_cfg("recipe=digits_mlp")
    assert cfg.model.name == "mlp"
    assert cfg.train.epochs == 10
    assert "int16x8" in cfg.export.tflite.quantization


def test_command_line_wins_over_the_recipe(compose_cfg):
    cfg = compose_cfg("recipe=digits", "train.epochs=2", "export.tflite.quantization=dynamic")
    assert cfg.train.epochs == 2
    assert cfg.export.tflite.quantization == "dynamic"


def test_every_public_key_exists(compose_cfg):
    cfg = compose_cfg("recipe=digits")
    for key in ("model", "data", "target", "precision", "train.epochs", "train.batch_size", "train.seed",
                "export.formats", "export.tflite.quantization", "export.tfjs.quantization",
                "data.calibration_samples", "cache.dir", "dry_run"):
        assert key.split(".")[0] in cfg
    assert {t.value for t in TargetName} == {"cpu", "gpu", "multi_gpu", "tpu", "edge", "browser"}
    assert {"saved_model", "tflite", "tfjs"} <= set(FORMATS)
    assert TfbuildConfig().force is False


def test_every_group_option_composes(compose_cfg):
    for override in ["model=mlp", "model=custom", "data=npz", "precision=mixed_float16", "precision=mixed_bfloat16",
                     *[f"target={t.value}" for t in TargetName]]:
        compose_cfg(override)


def test_every_recipe_composes(compose_cfg):
    assert {"digits", "digits_mlp"} <= set(RECIPES.files)
    for name in RECIPES.files:
        compose_cfg(f"recipe={name}")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["train.epocs=3"], "train.epocs: no such key in train (keys: epochs, batch_size, learning_rate, seed, optimizer, weight_decay, schedule, early_stopping_patience, class_weight, loss, threads, onednn) (did you mean 'epochs'?)"),
        (["recipe=digitz"], "recipe=digitz: no recipe named 'digitz'"),
        (["recipe=../secrets"], "recipe=../secrets: recipe names are paths inside recipes/ and may not contain '..'"),
        (["precision=fp8"], "precision=fp8: not one of float32, mixed_bfloat16, mixed_float16"),
        (["target.name=phone"], "target.name: Invalid value 'phone', expected one of [cpu, gpu, multi_gpu, tpu, edge, browser]"),
        (["train.epochs=abc"], "train.epochs: Value 'abc' of type 'str' could not be converted to Integer"),
        (["data.source=parquet"], "data.source: Invalid value 'parquet', expected one of [sklearn, npz, csv, images, tfrecord, none]"),
        (["cach.dir=/tmp"], "cach: no such key in the config"),
    ],
)
def test_compose_errors_are_one_line_naming_the_key(compose_cfg, overrides, expected):
    line = error_line(compose_cfg, *overrides)
    assert line.startswith(expected)
    assert "\n" not in line


def test_recipes_in_subfolders_are_named_by_path(tmp_path):
    from tfbuild.recipes import discover

    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "v1.yaml").write_text("# @package _global_\ntrain:\n  epochs: 2\n")
    assert "release/v1" in discover([tmp_path]).files


def test_subfolder_recipe_composes_through_hydra(tmp_path, compose_cfg):
    from tfbuild.recipes import discover, register_recipes

    (tmp_path / "pinned_test").mkdir()
    (tmp_path / "pinned_test" / "v1.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: mlp\ntrain:\n  epochs: 2\n"
    )
    register_recipes(discover([tmp_path]))
    cfg = compose_cfg("recipe=pinned_test/v1")
    assert (cfg.model.name, cfg.train.epochs) == ("mlp", 2)


def test_recipes_where_tfbuild_runs_come_before_the_projects(tmp_path):
    from tfbuild.recipes import PROJECT_ROOT, discover, recipe_dirs

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "digits.yaml").write_text("# @package _global_\ntrain:\n  epochs: 1\n")
    dirs = recipe_dirs(tmp_path)
    assert dirs == [tmp_path / "recipes", PROJECT_ROOT / "recipes"]
    index = discover(dirs)
    assert index.files["digits"] == tmp_path / "recipes" / "digits.yaml"
    assert "digits_mlp" in index.files


# --- the whole config walked against the schema (schema_checks.py) ---

def config_error(compose_cfg, *overrides, origin=None):
    from tfbuild.errors import ConfigError
    from tfbuild.resolver import resolve
    from tfbuild.schema_checks import Origin

    with pytest.raises(ConfigError) as info:
        resolve(compose_cfg(*overrides), origin or Origin(command_line=tuple(overrides)))
    return str(info.value)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["+train.epocs=3"], "train.epocs: no such key in train (keys: epochs, batch_size, learning_rate, seed, optimizer, weight_decay, schedule, early_stopping_patience, class_weight, loss, threads, onednn) (did you mean 'epochs'?)"),
        (["++nonsense=1"], "nonsense: no such key in the config (keys: model, task, data, target"),
        (["++train.epochs_typo=2"], "train.epochs_typo: no such key in train"),
        (["+verify.tolerances.tflite.int4.max_abs_diff=1"], "verify.tolerances.tflite.int4: no such key in verify.tolerances.tflite"),
        (["+gates.tflite.int8.max_kb=3"], "gates.tflite.int8.max_kb: no such key in gates.tflite.int8 (keys: min_accuracy,"),
        (["train.learning_rate=nan"], "train.learning_rate must be a finite number, got nan"),
        (["verify.tolerances.tflite.float.max_abs_diff=nan"], "verify.tolerances.tflite.float.max_abs_diff must be a finite number"),
        (["gates.max_p95_ms=inf"], "gates.max_p95_ms must be a finite number, got inf"),
        (["gates.min_accuracy=-inf"], "gates.min_accuracy must be a finite number, got -inf"),
        (["++model.params.dropout=nan"], "model.params.dropout must be a finite number, got nan"),
        (["train.epochs=99999999999999999999"], "train.epochs must be at most 100000, got 99999999999999999999"),
        (["++model.params.dense_units=99999999999999999999"], "model.params.dense_units must be at most 9223372036854775807"),
        (["data.seed=-1"], "data.seed must be at least 0, got -1"),
        (["data.seed=4294967296"], "data.seed must be at most 4294967295"),
        (["benchmark.min_seconds=1e308"], "benchmark.min_seconds must be at most 3600"),
        (["gates.tflite.int8.max_bytes=1125899906842625"], "gates.tflite.int8.max_bytes must be at most 1125899906842624"),
        (["target=multi_gpu", "target.cpu_devices=100000"], "target.cpu_devices must be at most 256"),
        (["dry_run=1"], "dry_run=1: dry_run takes true or false, got 1"),
        (["verify.enabled=yes"], "verify.enabled=yes: verify.enabled takes true or false, got 'yes'"),
        (["force=[trian]"], "force: 'trian' is not a step or kind of this plan (steps: data, train, saved_model, "
                            "benchmark[saved_model]; kinds: data, train, saved_model, benchmark) (did you mean 'train'?)"),
        (["train.epochs=${nonexistent.key}"], "train.epochs: cannot resolve '${nonexistent.key}' (Interpolation key 'nonexistent.key' not found)"),
        (["train.epochs=${train.seed}", "train.seed=${train.epochs}"], "train.epochs: cannot resolve '${train.seed}' (Recursive interpolation detected)"),
    ],
)
def test_what_gets_past_composition_is_refused_naming_the_key(compose_cfg, overrides, expected):
    assert config_error(compose_cfg, *overrides).startswith(expected)


def test_free_form_maps_may_grow_and_booleans_take_true_or_false(compose_cfg):
    from tfbuild.resolver import resolve
    from tfbuild.schema_checks import Origin

    overrides = ("++model.params.dropout=0.25", "dry_run=true", "verify.enabled=False", "force=[train]")
    resolved = resolve(compose_cfg(*overrides), Origin(command_line=overrides))
    assert resolved.plan.step("train").params["model_params"]["dropout"] == 0.25
    assert resolved.choices.force == ("train",)


def test_an_interpolation_error_names_the_recipe_file_that_wrote_it(compose_cfg):
    from pathlib import Path

    from omegaconf import OmegaConf

    from tfbuild.schema_checks import Origin

    recipe = OmegaConf.create({"train": {"epochs": "${oc.env:TFBUILD_UNSET_VARIABLE}"}})
    origin = Origin(recipe_file=Path("recipes/r.yaml"), recipe=recipe)
    line = config_error(compose_cfg, "train.epochs=${oc.env:TFBUILD_UNSET_VARIABLE}", origin=origin)
    assert line.startswith("recipes/r.yaml: train.epochs: cannot resolve '${oc.env:TFBUILD_UNSET_VARIABLE}'")


def test_every_bound_names_integer_keys_of_the_schema():
    """A renamed key must not leave its bound behind (the bound would silently stop applying)."""
    import dataclasses
    import fnmatch

    from tfbuild.schema import TfbuildConfig
    from tfbuild.schema_checks import FLOAT_MAX, INT_BOUNDS, schema_type_at

    def keys(schema, prefix=""):
        for f in dataclasses.fields(schema):
            declared = schema_type_at(f"{prefix}{f.name}")
            if dataclasses.is_dataclass(declared):
                yield from keys(declared, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", declared

    schema_keys = list(keys(TfbuildConfig))
    for table, kind in ((INT_BOUNDS, int), (FLOAT_MAX, float)):
        for pattern in table:
            matched = [k for k, t in schema_keys if fnmatch.fnmatchcase(k, pattern)]
            assert matched and all(t is kind for k, t in schema_keys if k in matched), pattern


def test_cache_location_refusals(tmp_path):
    from tfbuild.checks import check_cache_location
    from tfbuild.errors import ConfigError

    run_dir, conf = tmp_path / "outputs" / "runs" / "r" / "1", tmp_path / "conf"
    (tmp_path / "old_run" / ".hydra").mkdir(parents=True)
    cases = {
        "": "cache.dir is empty",
        "   ": "cache.dir is empty",
        str(tmp_path / ("d" * 200) / ("e" * 200)): "cache.dir: the path is",
        str(tmp_path / ("f" * 256)): "cache.dir: the folder name",
        str(run_dir / "cache"): f"cache.dir: '{run_dir / 'cache'}' is inside the run folder {run_dir}",
        str(tmp_path / "old_run" / "c"): f"cache.dir: '{tmp_path / 'old_run' / 'c'}' is inside the run folder {tmp_path / 'old_run'}",
        str(conf): f"cache.dir: '{conf}' is inside {conf}, the project's own files",
        str(conf / "x" / ".."): f"cache.dir: '{conf / 'x' / '..'}' is inside {conf}",
    }
    for path, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            check_cache_location(path, run_dir, [conf])
        assert str(info.value).startswith(expected), path
    assert check_cache_location(str(tmp_path / "outputs" / "cache"), run_dir, [conf]) == tmp_path / "outputs" / "cache"
    assert check_cache_location(str(tmp_path / "confs"), run_dir, [conf]) == tmp_path / "confs", "a prefix is not a parent"


def test_a_recipe_files_boolean_must_be_true_or_false(compose_cfg):
    from pathlib import Path

    from omegaconf import OmegaConf

    from tfbuild.schema_checks import Origin

    origin = Origin(recipe_file=Path("r.yaml"), recipe=OmegaConf.create({"benchmark": {"enabled": "on"}}))
    line = config_error(compose_cfg, "benchmark.enabled=true", origin=origin)
    assert line == "r.yaml: benchmark.enabled=on: benchmark.enabled takes true or false, got 'on'"
