"""The config surface through Hydra's compose API: groups, recipes, schema errors."""

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tfbuild.hydra_errors import one_line_error
from tfbuild.schema import ExportFormat, PrecisionPolicy, TargetName, TfbuildConfig

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
    assert {f.value for f in ExportFormat} == {"saved_model", "tflite", "tfjs"}
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
        (["train.epocs=3"], "train.epocs: no such key in train (keys: epochs, batch_size, learning_rate, seed) (did you mean 'epochs'?)"),
        (["recipe=digitz"], "recipe=digitz: no recipe named 'digitz'"),
        (["recipe=../secrets"], "recipe=../secrets: recipe names are paths inside recipes/ and may not contain '..'"),
        (["precision=fp8"], "precision=fp8: not one of float32, mixed_bfloat16, mixed_float16"),
        (["target.name=phone"], "target.name: Invalid value 'phone', expected one of [cpu, gpu, multi_gpu, tpu, edge, browser]"),
        (["train.epochs=abc"], "train.epochs: Value 'abc' of type 'str' could not be converted to Integer"),
        (["data.source=csv"], "data.source: Invalid value 'csv', expected one of [sklearn, npz]"),
        (["cach.dir=/tmp"], "cach: no such key in the config"),
    ],
)
def test_compose_errors_are_one_line_naming_the_key(compose_cfg, overrides, expected):
    line = error_line(compose_cfg, *overrides)
    assert line.startswith(expected)
    assert "\n" not in line


def test_broken_recipe_names_the_file_and_line(tmp_path):
    from tfbuild.hydra_errors import one_line_error
    from tfbuild.recipes import discover
    from hydra.errors import MissingConfigException

    (tmp_path / "bad.yaml").write_text("train:\n  epochs: [1\n")
    index = discover([tmp_path])
    assert "bad" in index.broken and "bad" not in index.files
    line = one_line_error(MissingConfigException("x", missing_cfg_file="recipe/bad"), index)
    assert line.startswith(f"recipe=bad: cannot parse {tmp_path / 'bad.yaml'}")
    assert "line 3" in line


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
