"""Composed config -> plan: which steps, and which params each step's key sees."""

import subprocess
import sys

import numpy as np
import pytest

from tfbuild.errors import ConfigError
from tfbuild.resolver import resolve


def plan_of(compose_cfg, *overrides):
    return resolve(compose_cfg(*overrides)).plan


def names(plan):
    return [s.name for s in plan.steps]


def test_default_recipe_plan(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits")
    exports = ["tflite[float]", "tflite[dynamic]", "tflite[fp16]", "tflite[int8]"]
    verifies = [f"verify[tflite/{q}]" for q in ("float", "dynamic", "fp16", "int8")]
    benchmarks = ["benchmark[saved_model]"] + [f"benchmark[tflite/{q}]" for q in ("float", "dynamic", "fp16", "int8")]
    assert names(plan)[:7] == ["data", "train", "saved_model", *exports]
    # The per-layer int8 report runs only if int8 verification fails.
    assert sorted(names(plan)[7:]) == sorted(["reference", *verifies, *benchmarks, "tflite_layers[int8]"])
    assert plan.step("tflite_layers[int8]").runs_if_failed == "verify[tflite/int8]"
    assert names(plan).index("tflite_layers[int8]") > names(plan).index("verify[tflite/int8]")
    assert plan.step("saved_model").outputs[0].publish == "saved_model"
    assert plan.step("tflite[int8]").outputs[0].publish == "tflite/model_int8.tflite"


def test_one_quantization_or_a_list(compose_cfg):
    assert names(plan_of(compose_cfg, "recipe=digits", "export.tflite.quantization=fp16"))[3] == "tflite[fp16]"
    plan = plan_of(compose_cfg, "recipe=digits", "export.tflite.quantization=[int16x8,float,int16x8]",
                   "verify.enabled=false", "benchmark.enabled=false")
    assert names(plan)[3:] == ["tflite[int16x8]", "tflite[float]"]


def test_each_step_sees_only_the_params_it_reads(compose_cfg):
    a = plan_of(compose_cfg, "recipe=digits")
    b = plan_of(compose_cfg, "recipe=digits", "train.epochs=9", "data.calibration_samples=7")
    changed = {s.name for s, t in zip(a.steps, b.steps) if s.params != t.params}
    assert changed == {"train", "tflite[int8]", "tflite_layers[int8]"}, "verification and the reference do not read them"
    assert "calibration_samples" not in a.step("tflite[float]").params
    assert "data" not in a.step("tflite[float]").inputs, "only calibrated variants read the data"
    assert a.step("tflite[int8]").inputs["data"] == "data/split"


def test_saved_model_is_built_but_not_published_when_only_tflite_is_asked(compose_cfg):
    plan = plan_of(compose_cfg, "target.formats=[]", "export.formats=tflite")
    assert plan.step("saved_model").outputs[0].publish is None
    assert plan_of(compose_cfg, "target=edge").step("saved_model").outputs[0].publish is None


def test_builder_source_is_an_input_of_training(compose_cfg):
    plan = plan_of(compose_cfg)
    assert plan.step("train").files["builder"].endswith("builders.py")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["recipe=digits", "data.calibration_samples=0"], "export.tflite.quantization=int8 needs calibration data"),
        (["train.epochs=0"], "train.epochs must be at least 1, got 0"),
        (["train.batch_size=-4"], "train.batch_size must be at least 1"),
        (["train.learning_rate=0"], "train.learning_rate must be greater than 0"),
        (["data.limit=3"], "data.limit must be at least 10"),
        (["data.test_fraction=1.5"], "data.test_fraction must be between 0 and 1"),
        (["data.validation_fraction=0.5", "data.test_fraction=0.45"], "data.validation_fraction + data.test_fraction must leave at least 10%"),
        (["export.formats=[tflite,onnx]"], "export.formats: 'onnx' is not one of saved_model, tflite, tfjs"),
        (["recipe=digits", "export.tflite.quantization=int4"], "export.tflite.quantization: 'int4' is not one of float, dynamic, fp16, int8, int16x8 (did you mean 'int8'?)"),
        (["recipe=digits", "export.tflite.quantization=[]"], "export.tflite.quantization is empty"),
        (["data=npz"], "data.path must be set"),
        (["data=npz", "data.path=/no/such.npz"], "data.path: no such file '/no/such.npz'"),
        (["data.name=mnist"], "data.name: 'mnist' is not one of digits, iris, wine, breast_cancer"),
        (["model.name=resnet"], "model.name: 'resnet' is not one of cnn, mlp, custom"),
        (["+model.params.filtrs=[8]"], "model.params.filtrs: not a parameter of model 'cnn' (allowed: filters, dense_units, dropout) (did you mean 'filters'?)"),
        (["model=custom", "model._target_=no_such_pkg.models.build"], "model._target_: cannot import module 'no_such_pkg.models'"),
        (["model=custom"], "model=custom needs model._target_=package.module.function"),
        (["model._target_=os.path.join"], "model._target_ is set but model=cnn: choose model=custom"),
        (["model=custom", "model._target_=build"], "model._target_: 'build' is not of the form package.module.function"),
        (["target=multi_gpu", "target.cpu_devices=0"], "target.cpu_devices must be at least 1"),
        (["target.cpu_devices=2"], "target.cpu_devices applies to strategy mirrored, not default (target=cpu (strategy default))"),
        (["target=multi_gpu", "target.strategy=multi_worker"], "target=multi_gpu (strategy multi_worker) needs target.workers=N (2 or more)"),
        (["target.workers=2"], "target.workers applies to strategy multi_worker, not default"),
        (["force=3"], "force must be true, false or a list"),
        (["export.formats=tfjs", "export.tfjs.quantization=[]"], "export.tfjs.quantization is empty"),
        (["export.formats=tfjs", "verify.tfjs_backends=webgl"], "verify.tfjs_backends: 'webgl' is not one of cpu, wasm"),
        (["verify.samples=0"], "verify.samples must be at least 1"),
        (["verify.tolerances.tflite.int8.min_top1_agreement=1.5"], "verify.tolerances.tflite.int8.min_top1_agreement must be between 0 and 1"),
        (["verify.tolerances.tfjs.none.max_abs_diff=-1"], "verify.tolerances.tfjs.none.max_abs_diff must be 0 or more"),
        (["export.formats=tfjs", "verify.node=/no/such/node"], "verify.node: Node.js not found"),
        (["optimize=prune", "optimize.sparsity=1"], "optimize.sparsity must be between 0 and 1"),
        (["optimize=cluster", "optimize.clusters=1"], "optimize.clusters must be at least 2"),
        (["optimize=qat", "optimize.epochs=0"], "optimize.epochs must be at least 1"),
        (["optimize=prune", "optimize.learning_rate=-1"], "optimize.learning_rate must be greater than 0"),
        (["optimize=qat", "export.formats=[tflite,tfjs]"], "optimize=qat cannot be exported to TF.js"),
        (["optimize=qat", "export.formats=tflite", "export.tflite.quantization=[int8,int16x8]"], "optimize=qat trains for int8 and cannot be converted to int16x8"),
        (["benchmark.min_runs=0"], "benchmark.min_runs must be at least 1"),
        (["benchmark.threads=0"], "benchmark.threads must be at least 1"),
        (["export.formats=tfjs", "benchmark.tfjs_backends=[gpu]"], "benchmark.tfjs_backends: 'gpu' is not one of cpu, wasm"),
        (["gates.min_accuracy=1.5"], "gates.min_accuracy must be between 0 and 1"),
        (["gates.tflite.int8.max_bytes=0"], "gates.tflite.int8.max_bytes must be at least 1, got 0"),
        (["gates.tfjs.max_p95_ms=2", "benchmark.enabled=false"], "gates.tfjs.max_p95_ms needs the benchmark's figures"),
        (["target=browser", "export.tfjs.quantization=int4"], "export.tfjs.quantization: 'int4' is not one of none, float16, uint8, uint16"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as info:
        resolve(compose_cfg(*overrides))
    assert str(info.value).startswith(message)


def test_every_export_is_verified_against_the_reloaded_saved_model(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits_all")
    assert plan.step("reference").inputs == {"saved_model": "saved_model", "data": "data/split"}
    verify = plan.step("verify[tfjs/uint8]")
    assert verify.inputs == {"artifact": "tfjs/uint8", "reference": "reference/outputs", "data": "data/split"}
    assert verify.params["backends"] == ["cpu", "wasm"], "digits_all verifies on both"
    assert verify.params["tolerance"] == {"max_abs_diff": None, "mean_abs_diff": None, "max_rel_diff": None,
                                          "min_cosine": None, "min_top1_agreement": 0.97}
    assert verify.files["npm_lock"].endswith("package-lock.json"), "a new TF.js re-verifies"
    assert plan.step("verify[tflite/float]").params["tolerance"]["max_abs_diff"] == 0.0001
    assert len([s for s in plan.steps if s.kind == "verify"]) == 9
    assert plan.step("tfjs[float16]").outputs[0].publish == "tfjs/float16"


def test_verification_off_is_explicit_and_plans_no_checks(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits_all", "verify.enabled=false", "benchmark.enabled=false",
                   "verify.node=/no/such/node")
    assert not [s for s in plan.steps if s.kind in ("verify", "reference", "benchmark")]


def test_every_artifact_is_benchmarked_on_its_runtime_settings(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits_all", "benchmark.threads=2", "benchmark.tfjs_backends=[cpu,wasm]")
    benchmarks = {s.name: s for s in plan.steps if s.kind == "benchmark"}
    assert len(benchmarks) == 1 + 5 + 4, "the SavedModel (the reference row) and every export"
    saved = benchmarks["benchmark[saved_model]"]
    assert saved.inputs == {"artifact": "saved_model", "data": "data/split"}
    assert saved.params["threads"] == 2 and saved.params["format"] == "saved_model"
    tfjs = benchmarks["benchmark[tfjs/uint8]"]
    assert tfjs.params["backends"] == ["cpu", "wasm"] and "threads" not in tfjs.params, "TF.js in Node has one thread"
    assert tfjs.files["npm_lock"].endswith("package-lock.json")
    a = plan_of(compose_cfg, "recipe=digits")
    b = plan_of(compose_cfg, "recipe=digits", "benchmark.batch_size=8", "gates.min_accuracy=0.5")
    changed = {s.name for s, t in zip(a.steps, b.steps) if s.params != t.params}
    assert changed == {s.name for s in a.steps if s.kind == "benchmark"}, "gates are judged, not built"


def test_optimize_sits_between_training_and_the_saved_model(compose_cfg):
    plain = plan_of(compose_cfg, "recipe=digits")
    assert "optimize" not in names(plain)
    plan = plan_of(compose_cfg, "recipe=digits", "optimize=prune", "optimize.sparsity=0.8")
    optimize = plan.step("optimize")
    assert optimize.inputs == {"model": "model/keras", "data": "data/split"}
    assert optimize.params["sparsity"] == 0.8 and "clusters" not in optimize.params
    assert plan.step("saved_model").inputs == {"model": "model/optimized"}
    assert plain.step("saved_model").params == plan.step("saved_model").params == {}
    qat = plan_of(compose_cfg, "recipe=digits_qat")
    assert qat.step("saved_model").params == {"quantize_scope": True}
    assert plan_of(compose_cfg, "optimize=cluster").step("optimize").params["clusters"] == 16


def test_each_optimize_method_brings_its_own_fine_tuning_defaults(compose_cfg):
    assert compose_cfg("optimize=prune").optimize.learning_rate == 0.001
    assert compose_cfg("optimize=qat").optimize.learning_rate == 0.0001
    assert compose_cfg("recipe=digits_pruned").optimize.sparsity == 0.75


@pytest.mark.parametrize(
    "target, message",
    [
        ("gpu", "target=gpu (strategy one_device) needs 1 GPU, found 0 (nvidia-smi not found): run it on a machine "
                "with them, or use target=cpu"),
        ("multi_gpu", "target=multi_gpu (strategy mirrored) needs 2 GPUs, found 0 (nvidia-smi not found): run it on a "
                      "machine with them, or use target=multi_gpu target.cpu_devices=2 to run MirroredStrategy over "
                      "logical CPU devices"),
        ("tpu", "target=tpu (strategy tpu) needs a reachable TPU, found none (no target.tpu, no TPU_NAME, no /dev/accel* "
                "devices): set target.tpu=NAME_OR_GRPC_ADDRESS or TPU_NAME, or use target=cpu"),
    ],
)
def test_missing_hardware_is_refused_before_any_work(compose_cfg, monkeypatch, target, message):
    monkeypatch.setattr("tfbuild.checks.gpu_count", lambda: (0, "nvidia-smi not found"))
    monkeypatch.setattr("tfbuild.checks.tpu_address", lambda configured: (None, "no target.tpu, no TPU_NAME, no /dev/accel* devices"))
    with pytest.raises(ConfigError) as info:
        resolve(compose_cfg(f"target={target}"))
    assert str(info.value).startswith(message)


def test_a_machine_with_the_gpus_passes_the_check(compose_cfg, monkeypatch):
    monkeypatch.setattr("tfbuild.checks.gpu_count", lambda: (2, "nvidia-smi -L"))
    train = resolve(compose_cfg("target=multi_gpu")).plan.step("train")
    assert train.params["strategy"] == "mirrored" and train.params["gpus"] == 2


@pytest.mark.parametrize(
    "target, strategy, precision, jit, formats, runtime",
    [
        ("cpu", "default", "float32", False, ["saved_model"], {}),
        ("gpu", "one_device", "mixed_float16", True, ["saved_model"], {}),
        ("multi_gpu", "mirrored", "mixed_float16", False, ["saved_model"], {}),
        ("tpu", "tpu", "mixed_bfloat16", True, ["saved_model"], {}),
        ("edge", "default", "float32", False, ["tflite"], {"threads": 4}),
        ("browser", "default", "float32", False, ["tfjs"], {"tfjs_backends": [], "browser_backends": ["webgl", "wasm"]}),
    ],
)
def test_each_profile_chooses_strategy_precision_xla_formats_and_runtime(
    compose_cfg, monkeypatch, target, strategy, precision, jit, formats, runtime
):
    monkeypatch.setattr("tfbuild.checks.gpu_count", lambda: (8, "nvidia-smi -L"))
    monkeypatch.setattr("tfbuild.checks.tpu_address", lambda configured: ("local", "test"))
    cfg = compose_cfg(f"target={target}")
    plan = resolve(cfg).plan
    train = plan.step("train")
    assert (train.params["strategy"], train.params["precision"], train.params["jit_compile"]) == (strategy, precision, jit)
    assert sorted({s.outputs[0].format for s in plan.steps if s.kind in ("tflite", "tfjs")} | {"saved_model"} & set(formats)) == sorted(formats)
    for key, value in runtime.items():
        assert cfg.benchmark[key] == value
    if target == "edge":
        assert [s.name for s in plan.steps if s.kind == "tflite"] == ["tflite[int8]", "tflite[fp16]"]
    if target == "browser":
        assert [s.name for s in plan.steps if s.kind == "tfjs"] == ["tfjs[uint8]", "tfjs[float16]"]


def test_recipes_override_what_a_profile_sets_and_precision_wins_over_the_target(compose_cfg, monkeypatch):
    monkeypatch.setattr("tfbuild.checks.gpu_count", lambda: (1, "nvidia-smi -L"))
    train = resolve(compose_cfg("target=gpu", "precision=float32", "target.jit_compile=false")).plan.step("train")
    assert (train.params["precision"], train.params["jit_compile"]) == ("float32", False)
    edge = compose_cfg("target=edge", "benchmark.threads=2", "export.tflite.quantization=int8")
    assert edge.benchmark.threads == 2 and edge.export.tflite.quantization == "int8"


def test_targets_that_train_alike_share_the_trained_model(compose_cfg):
    keys = {t: dict(resolve(compose_cfg(f"target={t}")).plan.step("train").params) for t in ("cpu", "edge", "browser")}
    assert keys["cpu"] == keys["edge"] == keys["browser"]
    mixed = resolve(compose_cfg("precision=mixed_bfloat16")).plan.step("train").params
    assert mixed["precision"] == "mixed_bfloat16", "the policy is part of the training key"


def test_npz_file_is_an_external_input(compose_cfg, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((20, 3), np.float32), y=np.arange(20) % 2)
    plan = plan_of(compose_cfg, "data=npz", f"data.path={path}")
    assert plan.step("data").files == {"source": str(path)}
    assert "name" not in plan.step("data").params


def test_planning_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from tests.conftest import RECIPES\n"
        "from hydra import compose, initialize_config_dir\n"
        "from tfbuild.recipes import CONF_DIR\n"
        "from tfbuild.resolver import resolve\n"
        "import tfbuild.steps, tfbuild.runner, tfbuild.console\n"
        "with initialize_config_dir(config_dir=str(CONF_DIR), version_base='1.3'):\n"
        "    resolve(compose(config_name='config', overrides=['recipe=digits']))\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'numpy', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- which formats and variants are built: command line > recipe > target > defaults ---

def exports(compose_cfg, *overrides):
    """The TFLite and TF.js artifacts users get (a web bundle's own TF.js model is not one)."""
    steps = plan_of(compose_cfg, *overrides).steps
    return [s.name for s in steps if s.kind in ("tflite", "tfjs") and s.outputs[0].publish is not None]


def test_a_recipes_formats_and_the_targets_combine(compose_cfg):
    assert exports(compose_cfg, "recipe=digits", "target=browser") == [
        "tflite[float]", "tflite[dynamic]", "tflite[fp16]", "tflite[int8]", "tfjs[uint8]", "tfjs[float16]",
    ], "the recipe's TFLite and the browser's TF.js"
    plan = plan_of(compose_cfg, "recipe=digits", "target=browser")
    assert plan.step("saved_model").outputs[0].publish == "saved_model", "the recipe asks for it"


def test_targets_choose_their_formats_and_variants(compose_cfg):
    assert exports(compose_cfg) == [], "target=cpu: a SavedModel"
    assert exports(compose_cfg, "target=edge") == ["tflite[int8]", "tflite[fp16]"]
    assert exports(compose_cfg, "target=browser") == ["tfjs[uint8]", "tfjs[float16]"]
    assert exports(compose_cfg, "recipe=digits_edge") == ["tflite[int8]", "tflite[fp16]"]
    assert exports(compose_cfg, "recipe=digits_browser") == ["tfjs[uint8]", "tfjs[float16]"]
    assert exports(compose_cfg, "export.formats=tflite") == ["tflite[float]", "tflite[int8]"], "the default variants"


def test_a_variant_setting_replaces_the_targets_so_a_sweep_builds_one_each(compose_cfg):
    assert exports(compose_cfg, "recipe=digits_edge", "export.tflite.quantization=float") == ["tflite[float]"]
    assert exports(compose_cfg, "recipe=digits_browser", "export.tfjs.quantization=none") == ["tfjs[none]"]
    assert exports(compose_cfg, "target=edge", "target.tflite_quantization=dynamic") == ["tflite[dynamic]"]


def test_settings_of_a_format_that_is_not_built_are_refused(compose_cfg):
    from tfbuild.schema_checks import Origin

    cases = [
        ((), "export.tflite.quantization=int8", "export.tflite.quantization=int8 is set, but tflite is not built "
         "(formats: saved_model, from target=cpu and export.formats): add export.formats=[saved_model,tflite]"),
        (("target=edge",), "export.tfjs.quantization=[uint8,none]",
         "export.tfjs.quantization=[uint8,none] is set, but tfjs is not built (formats: tflite,"),
        (("recipe=digits_browser",), "gates.tflite.int8.max_bytes=50000", "gates.tflite.int8.max_bytes=50000 is set, but tflite"),
        (("recipe=digits",), "verify.tolerances.tfjs.uint8.min_top1_agreement=0.9", "verify.tolerances.tfjs.uint8"),
        (("recipe=digits",), "benchmark.tfjs_backends=[cpu]", "benchmark.tfjs_backends=[cpu] is set, but tfjs"),
        (("recipe=digits",), "target.tfjs_quantization=uint8", "target.tfjs_quantization=uint8 is set, but tfjs"),
    ]
    for others, setting, expected in cases:
        with pytest.raises(ConfigError) as info:
            resolve(compose_cfg(*others, setting), Origin(command_line=(*others, setting)))
        assert str(info.value).startswith(expected), setting
    # conf/config.yaml sets every variant's tolerance: only what was typed is checked.
    resolve(compose_cfg("recipe=digits"), Origin(command_line=("recipe=digits",)))


def test_nothing_to_build_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match="nothing to build: export.formats and target.formats"):
        resolve(compose_cfg("target.formats=[]"))


def test_force_names_steps_or_kinds_of_this_plan(compose_cfg):
    assert resolve(compose_cfg("recipe=digits", "force=[train,'tflite[int8]',verify]")).choices.force == (
        "train", "tflite[int8]", "verify")
    with pytest.raises(ConfigError, match=r"force: 'tfjs' is not a step or kind of this plan"):
        resolve(compose_cfg("recipe=digits", "force=tfjs"))


def test_a_recipes_variants_for_a_format_it_does_not_build_are_refused(compose_cfg):
    from pathlib import Path

    from omegaconf import OmegaConf

    from tfbuild.schema_checks import Origin

    recipe = OmegaConf.create({"export": {"tflite": {"quantization": ["int8"]}}})
    origin = Origin(command_line=("target=browser",), recipe_file=Path("r.yaml"), recipe=recipe)
    cfg = compose_cfg("target=browser", "export.tflite.quantization=[int8]")
    resolve(cfg, origin)  # the command line chose the target: dropping TFLite is on purpose
    with pytest.raises(ConfigError, match=r"^r.yaml: export.tflite.quantization=\[int8\] is set, but tflite is not built"):
        resolve(cfg, Origin(recipe_file=Path("r.yaml"), recipe=recipe))
    # A recipe that chooses the formats itself, narrowed on the command line: not an error.
    narrowed = ("recipe=digits", "target=multi_gpu", "target.cpu_devices=2", "export.formats=saved_model")
    resolve(compose_cfg(*narrowed), Origin(command_line=narrowed))


# -- int8: the per-layer report and the repair ---------------------------------------------


def test_int8_settings_reach_the_int8_steps_only(compose_cfg):
    plain = plan_of(compose_cfg, "recipe=digits")
    named = plan_of(compose_cfg, "recipe=digits", "export.tflite.int8.float_layers=[dense]")
    changed = {s.name for s in named.steps} - {s.name for s in plain.steps}
    assert changed == {"tflite_repair[int8]"}, "what the float ops cost and buy is measured"
    assert named.step("tflite[int8]").params["float_layers"] == ["dense"]
    assert named.step("tflite_layers[int8]").runs_if_failed is None, "asked for: always built"
    assert all(plain.step(s.name).params == s.params for s in named.steps
               if s.name in {p.name for p in plain.steps} and s.name not in ("tflite[int8]", "tflite_layers[int8]"))


def test_a_repair_feeds_its_chosen_set_to_the_int8_conversion(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits", "export.tflite.int8.max_metric_drop=0.01")
    int8 = plan.step("tflite[int8]")
    assert int8.inputs["repair"] == "tflite/int8/repair" and "float_layers" not in int8.params
    assert plan.step("tflite_repair[int8]").inputs["layers"] == "tflite/int8/layers"
    order = names(plan)
    assert order.index("tflite_layers[int8]") < order.index("tflite_repair[int8]") < order.index("tflite[int8]")


def test_the_int8_report_can_be_off_always_or_on_failure(compose_cfg):
    assert "tflite_layers[int8]" not in names(plan_of(compose_cfg, "recipe=digits", "export.tflite.int8.debug=false"))
    assert "tflite_layers[int8]" not in names(plan_of(compose_cfg, "recipe=digits", "verify.enabled=false"))
    on = plan_of(compose_cfg, "recipe=digits", "verify.enabled=false", "export.tflite.int8.debug=true")
    assert on.step("tflite_layers[int8]").runs_if_failed is None
    assert on.step("tflite_layers[int8]").outputs[0].publish == "tflite/int8/layers.csv"


def test_int8_settings_are_inert_while_int8_is_not_built(compose_cfg):
    plan = plan_of(compose_cfg, "recipe=digits", "export.tflite.quantization=[float]", "export.tflite.int8.max_metric_drop=0.01")
    assert not [n for n in names(plan) if "int8" in n], "a sweep over quantizations may set them for every job"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["export.tflite.int8.max_metric_drop=-0.5"], "export.tflite.int8.max_metric_drop must be a number of 0 or more"),
        (["export.tflite.int8.max_metric_drop=inf"], "export.tflite.int8.max_metric_drop must be a finite number"),
        (["export.tflite.int8.debug=false", "export.tflite.int8.max_metric_drop=0.01"], "export.tflite.int8.debug=false turns off"),
        (["export.tflite.int8.float_layers=['conv(']"], "export.tflite.int8.float_layers: 'conv(' is not a regular expression"),
        (["export.tflite.int8.float_layers=['']"], "export.tflite.int8.float_layers: an empty name picks nothing"),
    ],
)
def test_bad_int8_settings_are_refused_naming_the_key(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as info:
        plan_of(compose_cfg, "recipe=digits", *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
