"""Pin checks that need no build: where a pin may be written, and what a lock must hold."""

from __future__ import annotations

import pytest

from tfbuild.errors import ConfigError
from tfbuild.pins import check_new_pin, check_pinned, pin_path, section_digests


@pytest.mark.parametrize(
    "overrides, recipe, message",
    [
        (["pin=1.0"], None, "pin: a pin is made from a recipe; add recipe=NAME"),
        (["pin=1.0"], "pinned/digits-0.9", "pin: recipe=pinned/digits-0.9 is a pin already"),
        (["pin=../1.0"], "digits", "pin: '../1.0' is not a version"),
        (["pin=1.0", "dry_run=true"], "digits", "pin: a pin records what a build made; drop dry_run=true"),
    ],
)
def test_a_pin_that_may_not_be_written_is_refused_first(compose_cfg, tmp_path, overrides, recipe, message):
    with pytest.raises(ConfigError) as info:
        check_new_pin(compose_cfg(*overrides), recipe, tmp_path / "recipes")
    assert str(info.value).startswith(message)


def test_pins_go_under_recipes_pinned_and_overwrite_needs_asking(compose_cfg, tmp_path):
    path = pin_path(tmp_path / "recipes", "team/digits", "1.4.0")
    assert path == tmp_path / "recipes" / "pinned" / "team_digits-1.4.0.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("lock: {}\n")
    with pytest.raises(ConfigError, match="exists; pins are not replaced unless you add pin_overwrite=true"):
        check_new_pin(compose_cfg("pin=1.4.0"), "team/digits", tmp_path / "recipes")
    assert check_new_pin(compose_cfg("pin=1.4.0", "pin_overwrite=true"), "team/digits", tmp_path / "recipes") == path


def test_a_damaged_lock_is_refused_with_what_is_wrong(compose_cfg):
    cfg = compose_cfg("+lock.tools={}", "+lock.sections={}", "+lock.steps={}", "+lock.data.step_key=12",
                      "+lock.artifacts.saved_model.sha256=xyz")
    with pytest.raises(ConfigError) as info:
        check_pinned(cfg, None)
    assert str(info.value) == (
        "the pinned recipe: the lock is damaged (lock.artifacts.saved_model needs a 64-hex sha256 and bytes; "
        "lock.data.step_key is not a 64-hex key); re-pin with pin=VERSION"
    )


def test_section_digests_change_with_any_value():
    a = section_digests({"train": {"epochs": 5}, "model": {"name": "cnn"}})
    b = section_digests({"train": {"epochs": 6}, "model": {"name": "cnn"}})
    assert a["model"] == b["model"] and a["train"] != b["train"]
