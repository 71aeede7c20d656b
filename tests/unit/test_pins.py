"""Pin checks that need no build: where a pin may be written, the version's text, and every
way a lock can be damaged or edited by hand (on a pin written by `write_pin` for a real
plan, with made-up artifact digests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra.types import RunMode
from omegaconf import OmegaConf

from tfbuild.cache import cache_key
from tfbuild.digests import tree_digest, tree_files
from tfbuild.errors import ConfigError
from tfbuild.pin_checks import Pin, check_pinned, read_pin
from tfbuild.recipes import RecipeIndex
from tfbuild.pins import MAX_VERSION, NewPin, check_new_pin, pin_path, seal_of, section_digests, typed_version, write_pin
from tfbuild.resolver import resolve
from tfbuild.runner import step_material
from tfbuild.steps import REGISTRY

from tests.conftest import hold_in_process

NAME = "recipes/pinned/digits-1.0.yaml"
CHOICES = {"model": "cnn", "data": "digits", "target": "cpu", "optimize": "none"}


@pytest.mark.parametrize(
    "overrides, version, recipe, message",
    [
        (["pin=1.0"], "1.0", None, "pin: a pin is made from a recipe; add recipe=NAME"),
        (["pin=1.0"], "1.0", "pinned/digits-0.9", "pin: recipe=pinned/digits-0.9 is a pin already"),
        (["pin=../1.0"], "../1.0", "digits", "pin: '../1.0' is not a version"),
        (["pin=1.0"], "1.0\n", "digits", r"pin: '1.0\n' is not a version"),
        (["pin=''"], "", "digits", "pin: '' is not a version"),
        (["pin=1.0"], "1" * 300, "digits", f"pin: a version has at most {MAX_VERSION} characters (this one has 300)"),
        (["pin=1.0"], "1.0", "d" * 250, "pin: the pin's file name dddd"),
        (["pin=1.0", "dry_run=true"], "1.0", "digits", "pin: a pin records what a build made; drop dry_run=true"),
    ],
)
def test_a_pin_that_may_not_be_written_is_refused_first(compose_cfg, tmp_path, overrides, version, recipe, message):
    with pytest.raises(ConfigError) as info:
        check_new_pin(compose_cfg(*overrides), version, recipe, tmp_path / "recipes")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_pins_go_under_recipes_pinned_and_overwrite_needs_asking(compose_cfg, tmp_path):
    path = pin_path(tmp_path / "recipes", "team/digits", "1.4.0")
    assert path == tmp_path / "recipes" / "pinned" / "team_digits-1.4.0.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("lock: {}\n")
    with pytest.raises(ConfigError, match="exists; pins are not replaced unless you add pin_overwrite=true"):
        check_new_pin(compose_cfg("pin=1.4.0"), "1.4.0", "team/digits", tmp_path / "recipes")
    new_pin = check_new_pin(compose_cfg("pin=1.4.0", "pin_overwrite=true"), "1.4.0", "team/digits", tmp_path / "recipes")
    assert new_pin == NewPin(path, "1.4.0")


def hydra(*task: str, multirun: bool = False) -> SimpleNamespace:
    return SimpleNamespace(overrides=SimpleNamespace(task=list(task)), mode=RunMode.MULTIRUN if multirun else RunMode.RUN)


@pytest.mark.parametrize(
    "task, multirun, version",
    [
        (["recipe=digits", "pin=1.10"], False, "1.10"),  # Hydra parses the float 1.1
        (["+pin=1.0"], False, "1.0"),
        (["pin=1e3"], False, "1e3"),  # the float 1000.0
        (["pin=007"], False, "007"),  # the int 7
        (["pin='1.10'"], False, "1.10"),
        (["pin=1.0.0-rc.1"], False, "1.0.0-rc.1"),
        (["pin='1.10'"], True, "1.10"),  # quoted, a sweep keeps the text
        (["pin="], False, ""),  # then refused by check_new_pin
    ],
)
def test_the_version_keeps_the_text_the_user_typed(task, multirun, version):
    assert typed_version(hydra(*task, multirun=multirun)) == version


@pytest.mark.parametrize(
    "task, multirun, message",
    [
        (["pin=1.10"], True, "pin: in a sweep (-m) an unquoted version reads as a number (here 1.1) and loses its text"),
        (["pin=true"], False, "pin: 'true' is not a version"),
        (["pin=[1,2]"], False, "pin: '[1,2]' is not a version"),
        (["recipe=digits"], False, "pin: give the version on the command line (pin=VERSION), not in a recipe or conf/"),
    ],
)
def test_a_version_whose_text_is_lost_is_refused(task, multirun, message):
    with pytest.raises(ConfigError) as info:
        typed_version(hydra(*task, multirun=multirun))
    assert str(info.value).startswith(message)


def plain_digest(path: Path) -> str:
    return tree_digest(tree_files(path))


def write(cfg, folder: Path, new_pin: NewPin | None = None) -> tuple:
    """(plan, path): `cfg` pinned by write_pin, with made-up artifact digests."""
    plan = resolve(cfg).plan
    materials = {s.name: step_material(s, REGISTRY[s.kind], {}, plain_digest) for s in plan.steps}
    record = {
        "steps": [{"name": s.name, "key": cache_key(materials[s.name])} for s in plan.steps],
        "artifacts": [{"name": o.artifact, "sha256": "ab" * 32, "bytes": 1}
                      for s in plan.steps for o in s.outputs if o.publish],  # fmt: skip
    }
    path = folder / NAME
    write_pin(new_pin or NewPin(path, "1.0"), cfg, CHOICES, record, materials, "digits")
    return plan, path


@pytest.fixture()
def pin(compose_cfg, tmp_path, monkeypatch):
    """(cfg, plan, path): recipe=digits pinned, as a pinned build composes it."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("recipe=digits", "export.tflite.quantization=[float]")
    return (cfg, *write(cfg, tmp_path))


def load(path: Path, cfg) -> tuple:
    """The config a pinned build of `path` composes: its lock is the file's."""
    lock = yaml.safe_load(path.read_text()).get("lock")
    cfg = cfg.copy()
    cfg.lock = lock
    return cfg


def index(path: Path) -> RecipeIndex:
    return RecipeIndex(files={"pinned/digits-1.0": path})


def check(cfg, plan, path: Path, file_digest=plain_digest) -> list[str]:
    pinned = read_pin(cfg, "pinned/digits-1.0", index(path))
    assert isinstance(pinned, Pin)
    return check_pinned(cfg, pinned, plan, file_digest)


def test_a_written_pin_passes_and_its_seal_covers_the_whole_file(pin):
    cfg, plan, path = pin
    assert check(load(path, cfg), plan, path) == []
    document = yaml.safe_load(path.read_text())
    assert set(document) == {"defaults", "lock", *document["lock"]["sections"]}
    assert document["lock"]["seal"] == seal_of(document)
    assert set(document["lock"]["files"]) == {"train"}, "the builder's source is the only external file"
    assert document["lock"]["data"]["step_key"] == cache_key(document["lock"]["data"]["material"])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def reseal(path: Path, change) -> None:
    """Edit the document and recompute its seal, as only a deliberate forger would."""
    document = yaml.safe_load(path.read_text())
    change(document)
    document["lock"]["seal"] = seal_of(document)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(document)))


SEAL = "the lock was edited (lock.seal does not match the pin); a pin is not edited"
HUGE = "x" * 100_000


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("lock:", "unlocked:", "a pinned recipe needs its lock (it was removed or damaged); re-pin with pin=VERSION"),
        ("  seal: ", "  unseal: ", "this pin has no seal (pins made before tfbuild sealed them cannot be checked); "
                                   "re-pin it: tfbuild recipe=digits pin='1.0' pin_overwrite=true"),
        ("    tflite/float:\n      sha256: " + "ab" * 32 + "\n      bytes: 1\n", "",
         "the lock does not match this build's plan (tflite/float would be built but is not in the lock)"),
        ("  artifacts:\n", "  artifacts:\n    tfjs/none:\n      sha256: " + "ab" * 32 + "\n      bytes: 1\n",
         "the lock does not match this build's plan (tfjs/none is in the lock but would not be built)"),
        ("    reference: ", "    xreference: ", "the lock does not match this build's plan (step reference is not in lock.steps)"),
        ("lock:", "cache:\n  dir: x\nlock:", "'cache' is not part of a pin (a pin holds defaults, the pinned values and lock)"),
        ("lock:", "force: true\nlock:", "'force' is not part of a pin"),
        ("lock:", "dry_run: true\nlock:", "'dry_run' is not part of a pin"),
        ("lock:", "hydra:\n  run:\n    dir: x\nlock:", "'hydra' is not part of a pin"),
        ("lock:", f"{'x' * 1000}: {HUGE}\nlock:", "'xxxxxxx"),
        ("verify:\n  enabled: true", "verify:\n  enabled: false", "verify changed since it was pinned (its lock digest differs)"),
        ("\nverify:", "\nxverify:", "'xverify' is not part of a pin"),
        ("  epochs: 5", f"  epochs: {HUGE}", "train changed since it was pinned"),
        ("  epochs: 5", "  epochs: 5\n  1: 2", "the pin holds values a pin cannot (hand-edited?)"),
        ("override /target: cpu", "override /target: edge", "the defaults list changed since it was pinned"),
        ("  seal: ", "  seal: 0", "the lock is damaged (lock.seal is not a 64-hex digest)"),
        ("  tools:\n", "  tools: 3\n  xtools:\n", "the lock is damaged (lock.tools is missing or not a mapping)"),
        ("    numpy: ", "    numpy: [1]\n    xnumpy: ", "the lock is damaged (lock.tools holds a version that is not text)"),
        ("    train: ", "    train: 12 #", "the lock is damaged (lock.sections.'train' is not a 64-hex digest)"),
        ("    tflite/float:\n      sha256: " + "ab" * 32, "    tflite/float:\n      sha256: " + "0" * 64,
         "the lock is damaged (lock.artifacts.'tflite/float' needs a 64-hex sha256 and bytes)"),
        ("  recipe: digits", "  recipe: other", SEAL),
        ("  seal: ", "  seal: " + "ab" * 32 + " #", SEAL),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else None,
)
def test_an_edited_pin_is_refused_naming_what_changed(pin, old, new, message):
    cfg, plan, path = pin
    edit(path, old, new)
    with pytest.raises(ConfigError) as info:
        check(load(path, cfg), plan, path)
    assert str(info.value).startswith(f"{NAME}: {message}")
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_a_value_and_its_digest_edited_together_are_caught_by_the_seal(pin):
    cfg, plan, path = pin
    document = yaml.safe_load(path.read_text())
    document["train"]["epochs"] = 6
    document["lock"]["sections"]["train"] = section_digests({"train": document["train"]})["train"]
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(document)))
    composed = load(path, cfg)
    composed.train.epochs = 6  # as Hydra composes the edited file
    with pytest.raises(ConfigError, match="lock.seal does not match the pin"):
        check(composed, plan, path)


def test_a_lock_from_the_command_line_or_on_a_plain_recipe_is_refused(pin):
    cfg, plan, path = pin
    overridden = load(path, cfg)
    overridden.lock.tools.numpy = "1.0.0"
    with pytest.raises(ConfigError, match=f"^{NAME}: the lock was overridden"):
        check(overridden, plan, path)
    with pytest.raises(ConfigError, match="^lock: written by pin= into recipes/pinned/ and read only from there"):
        read_pin(overridden, "digits", RecipeIndex())


def test_a_changed_input_file_is_named_before_any_work(pin):
    cfg, plan, path = pin
    builder = plan.step("train").files["builder"]
    changed = lambda p: "cd" * 32 if str(p) == builder else plain_digest(p)  # noqa: E731
    with pytest.raises(ConfigError) as info:
        check(load(path, cfg), plan, path, changed)
    locked = plain_digest(Path(builder))
    assert str(info.value) == (
        f"{NAME}: train's input builder ({builder}) changed since the pin (sha256 cdcdcdcdcdcd..., "
        f"locked {locked[:12]}...): the release cannot be reproduced from it"
    )


def test_a_data_split_that_would_differ_is_named_before_any_work(pin):
    cfg, plan, path = pin

    def older_scikit_learn(document: dict) -> None:  # as if pinned with another scikit-learn
        data = document["lock"]["data"]
        data["material"]["tools"]["scikit-learn"] = "0.1"
        data["step_key"] = cache_key(data["material"])

    reseal(path, older_scikit_learn)
    with pytest.raises(ConfigError) as info:
        check(load(path, cfg), plan, path)
    assert str(info.value).startswith(
        f"{NAME}: the data step would not make the locked split (tool version changed (scikit-learn: 0.1 -> "
    )


def test_tool_drift_is_refused_unless_allowed_and_then_reported(pin):
    cfg, plan, path = pin
    reseal(path, lambda d: d["lock"]["tools"].update({"numpy": "1.0.0"}))
    with pytest.raises(ConfigError, match=r"installed tools differ from the lock \(numpy 1.0.0 -> "):
        check(load(path, cfg), plan, path)
    allowed = load(path, cfg)
    allowed.allow_tool_drift = True
    assert [d.split(" -> ")[0] for d in check(allowed, plan, path)] == ["numpy 1.0.0"]


def test_a_new_tfjs_is_tool_drift_reported_once_or_refused(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("recipe=digits", "export.formats=[saved_model,tfjs]", "export.tfjs.quantization=[none,uint8]")
    plan, path = write(cfg, tmp_path)
    npm_lock = plan.step("verify[tfjs/uint8]").files["npm_lock"]
    other_tfjs = lambda p: "cd" * 32 if str(p) == npm_lock else plain_digest(p)  # noqa: E731
    with pytest.raises(ConfigError) as info:
        check(load(path, cfg), plan, path, other_tfjs)
    assert str(info.value).startswith(f"{NAME}: verify[tfjs/none]'s input npm_lock ({npm_lock}) changed since the pin")
    assert str(info.value).endswith("; or add allow_tool_drift=true to build anyway and report the differences")
    allowed = load(path, cfg)
    allowed.allow_tool_drift = True
    assert check(allowed, plan, path, other_tfjs) == [
        f"verify[tfjs/none]'s input npm_lock ({npm_lock}) {plain_digest(Path(npm_lock))[:12]} -> cdcdcdcdcdcd"
    ], "one line for the file, though four steps read it"


def test_section_digests_change_with_any_value():
    a = section_digests({"train": {"epochs": 5}, "model": {"name": "cnn"}})
    b = section_digests({"train": {"epochs": 6}, "model": {"name": "cnn"}})
    assert a["model"] == b["model"] and a["train"] != b["train"]


# -- one writer per pin --------------------------------------------------------------------

HOLD_PIN = ("import sys; from pathlib import Path; from omegaconf import OmegaConf; from tfbuild.pins import check_new_pin; "
            "new_pin = check_new_pin(OmegaConf.create({'dry_run': False, 'pin_overwrite': sys.argv[2] == 'True'}), '1.0', "
            "'digits', Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()")  # fmt: skip


def hold_pin(recipes: Path, overwrite: bool = False) -> subprocess.Popen:
    """A real second process that is making pin digits-1.0 (it holds the pin's lock as a pin= build
    does, from its config check to its end), until its stdin closes."""
    return hold_in_process(HOLD_PIN, str(recipes), str(overwrite))


@pytest.mark.parametrize("first, second", [((), ()), ((), ("pin_overwrite=true",)), (("True",), ("pin_overwrite=true",))])
def test_a_pin_has_one_writer_the_second_is_refused(compose_cfg, tmp_path, first, second):
    recipes = tmp_path / "recipes"
    holder = hold_pin(recipes, overwrite=bool(first))
    try:
        with pytest.raises(ConfigError) as info:
            check_new_pin(compose_cfg("pin=1.0", *second), "1.0", "digits", recipes)
    finally:
        holder.communicate("", timeout=60)
    assert str(info.value) == (f"pin: another tfbuild (pid {holder.pid}) is writing {recipes}/pinned/digits-1.0.yaml; "
                               "a pin has one writer: wait for it (then pin_overwrite=true replaces it), or choose "
                               "another version")  # fmt: skip
    assert holder.returncode == 0 and not recipes.exists(), "its lock went with it, and the folders it made for it"
    new_pin = check_new_pin(compose_cfg("pin=1.0", *second), "1.0", "digits", recipes)
    assert new_pin.path == recipes / "pinned" / "digits-1.0.yaml"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_pin_written_during_the_build_is_never_replaced_unasked(compose_cfg, tmp_path, monkeypatch, overwrite):
    """A writer that skipped the lock (a tfbuild before it, a copy by hand) wrote the pin meanwhile."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("recipe=digits", "export.tflite.quantization=[float]", *(["pin_overwrite=true"] if overwrite else []))
    new_pin = check_new_pin(cfg, "1.0", "digits", tmp_path / "recipes")
    new_pin.path.write_text("# the other writer's pin\n")
    if overwrite:  # asked for: replaced, as pin_overwrite says
        write(cfg, tmp_path, new_pin)
        assert "lock:" in new_pin.path.read_text()
    else:
        with pytest.raises(ConfigError, match=f"^pin: {new_pin.path} was written by someone else during this build; "
                                              "it is kept"):  # fmt: skip
            write(cfg, tmp_path, new_pin)
        assert new_pin.path.read_text() == "# the other writer's pin\n"
    assert [p.name for p in new_pin.path.parent.iterdir()] == ["digits-1.0.yaml"], "no lock or temporary file left"


def test_a_pin_build_that_stops_lets_go_and_leaves_nothing(compose_cfg, tmp_path):
    import gc

    new_pin = check_new_pin(compose_cfg("pin=1.0"), "1.0", "digits", tmp_path / "recipes")
    assert (tmp_path / "recipes" / "pinned" / ".digits-1.0.yaml.lock").exists()
    del new_pin  # the build failed: nothing writes the pin
    gc.collect()
    assert not (tmp_path / "recipes").exists()
    check_new_pin(compose_cfg("pin=1.0"), "1.0", "digits", tmp_path / "recipes")


# -- a pinned build changes nothing pinned -------------------------------------------------


@pytest.fixture(scope="module")
def shared_pin(compose_cfg, tmp_path_factory):
    """(cfg, plan, folder): recipe=digits pinned once for the tests that only read the pin."""
    folder = tmp_path_factory.mktemp("shared_pin")
    cfg = compose_cfg("recipe=digits", "export.tflite.quantization=[float]")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        plan, _ = write(cfg, folder)
    return cfg, plan, folder


@pytest.fixture()
def read_only_pin(shared_pin, monkeypatch):
    cfg, plan, folder = shared_pin
    monkeypatch.chdir(folder)
    return cfg, plan, folder / NAME

ALLOWED = "hydra.run.dir, cache.*, jobs, force, dry_run, allow_tool_drift, verify.node, verify.chromium"


@pytest.mark.parametrize(
    "override, key",
    [
        ("verify.enabled=false", "verify.enabled"),
        ("verify.samples=10", "verify.samples"),
        ("verify.tolerances.tflite.float.max_abs_diff=0.5", "verify.tolerances.tflite.float.max_abs_diff"),
        ("benchmark.enabled=false", "benchmark.enabled"),
        ("benchmark.min_runs=3", "benchmark.min_runs"),
        ("gates.min_accuracy=0.5", "gates.min_accuracy"),
        ("gates.tflite.max_bytes=1000", "gates.tflite.max_bytes"),
        ("task=regression", "task.name"),
        ("train.epochs=6", "train.epochs"),
        ("export.tflite.quantization=[float,int8]", "export.tflite.quantization"),
        ("data.limit=100", "data.limit"),
        ("model.params.filters=[4]", "model.params.filters"),
        ("target.jit_compile=true", "target.jit_compile"),
        ("optimize=prune", "optimize.epochs"),  # the first of the keys the group changes
    ],
)
def test_a_pinned_build_refuses_every_override_of_a_pinned_value(read_only_pin, compose_cfg, override, key):
    cfg, plan, path = read_only_pin
    overridden = load(path, compose_cfg("recipe=digits", "export.tflite.quantization=[float]", override))
    with pytest.raises(ConfigError) as info:
        check(overridden, plan, path)
    message = str(info.value)
    assert message.startswith(f"{NAME}: this build would not use the pinned values ({key}: pinned ")
    assert message.endswith(f"(a pinned build uses exactly its pin; it may set only {ALLOWED})") and "\n" not in message


@pytest.mark.parametrize(
    "overrides",
    [("cache.dir=/elsewhere/cache",), ("cache.remote=file:///shared/cache", "cache.remote_mode=readwrite"), ("jobs=1",),
     ("force=true",), ("dry_run=true",), ("verify.node=/opt/node/bin/node",), ("verify.chromium=/usr/bin/chromium",)],
)
def test_a_pinned_build_may_set_where_and_how_it_runs(read_only_pin, compose_cfg, overrides):
    cfg, plan, path = read_only_pin
    assert check(load(path, compose_cfg("recipe=digits", "export.tflite.quantization=[float]", *overrides)), plan, path) == []
