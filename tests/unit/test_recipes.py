"""Recipe files: found by listing, read only when selected, and refused past the limits."""

from __future__ import annotations

import os
import threading
import time

import pytest
import yaml
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

import tfbuild.recipes as recipes
from tfbuild.errors import ConfigError
from tfbuild.hydra_errors import one_line_error
from tfbuild.recipes import MAX_RECIPE_BYTES, RecipeFileError, discover, load_recipe_file, register_recipes


def billion_laughs(levels: int, width: int = 10) -> str:
    """YAML whose aliases expand to width**levels scalars in a few hundred bytes."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(path) -> str:
    with pytest.raises(RecipeFileError) as info:
        load_recipe_file(path)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and "\n" not in message
    return message


def test_a_recipe_loads_as_its_mapping(tmp_path):
    path = write(tmp_path, "r.yaml", "# @package _global_\nbase: &base {epochs: 2, seed: 7}\ntrain:\n  <<: *base\n  seed: 1\n")
    assert OmegaConf.to_container(load_recipe_file(path)) == {
        "base": {"epochs": 2, "seed": 7}, "train": {"epochs": 2, "seed": 1}
    }
    assert OmegaConf.to_container(load_recipe_file(write(tmp_path, "empty.yaml", "# nothing yet\n"))) == {}


def test_a_file_over_the_size_limit_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as file:
        file.truncate(64 * 1024**3)  # sparse: reading it would take minutes, a stat does not
    started = time.perf_counter()
    message = refusal(path)
    assert message == f"{path}: 68,719,476,736 bytes is over the 1,048,576-byte limit for a recipe file"
    assert time.perf_counter() - started < 1
    at_limit = write(tmp_path, "at_limit.yaml", "a: 1\n" + "#" * (MAX_RECIPE_BYTES - 6) + "\n")
    assert load_recipe_file(at_limit).a == 1


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    path = write(tmp_path, "bomb.yaml", billion_laughs(levels=40))  # 10**40 scalars once expanded
    started = time.perf_counter()
    assert refusal(path) == f"{path}: more than 20,000 YAML nodes once aliases are expanded (the limit for a recipe)"
    assert time.perf_counter() - started < 1


def test_the_node_budget_counts_aliases_as_their_expansion(tmp_path, monkeypatch):
    # root, 2 keys, the 5-item list and its items (1 + 5), then a list of 3 aliases to it.
    path = write(tmp_path, "shared.yaml", "a: &a [1, 2, 3, 4, 5]\nb: [*a, *a, *a]\n")
    expanded = 1 + 1 + 6 + 1 + (1 + 3 * 6)
    monkeypatch.setattr(recipes, "MAX_RECIPE_NODES", expanded)
    assert load_recipe_file(path).b[2][4] == 5
    monkeypatch.setattr(recipes, "MAX_RECIPE_NODES", expanded - 1)
    assert "once aliases are expanded" in refusal(path)


def test_an_alias_inside_itself_is_refused(tmp_path):
    path = write(tmp_path, "loop.yaml", "a: &a\n  - 1\n  - *a\n")
    assert refusal(path) == f"{path}: line 3: an alias inside its own anchor"


def test_python_tags_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    text = f"a: !!python/object/apply:os.system ['touch {marker}']\n"
    path = write(tmp_path, "code.yaml", text)
    assert refusal(path) == (
        f"{path}: line 1: tag '!!python/object/apply:os.system' builds a Python object; recipes hold plain values only"
    )
    # OmegaConf's own loader is a SafeLoader: it refuses the tag too, and never runs it.
    with pytest.raises(yaml.constructor.ConstructorError):
        OmegaConf.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train:\n  epochs: [1\n", "cannot parse {path}: while parsing a flow sequence in \"{path}\", line 2, column 11"),
        ("- 1\n- 2\n", "{path}: a recipe is a mapping of keys to values, not a list"),
        ("a: 1\na: 2\n", "cannot parse {path}: while constructing a mapping in \"{path}\", line 1, column 1 found duplicate key a"),
        ("a: " + "[" * 100_000 + "\n", "cannot parse {path}: nested too deeply"),
    ],
)
def test_other_bad_yaml_is_one_line_naming_the_file(tmp_path, text, expected):
    path = write(tmp_path, "bad.yaml", text)
    assert refusal(path).startswith(expected.format(path=path))


def test_bytes_that_are_not_utf8_or_files_that_are_not_regular_are_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert refusal(path) == f"{path}: not UTF-8 text (byte 9)"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # Opening a FIFO for reading waits for a writer. The check must not wait; should it ever,
    # a writer comes after 5 s so that the failure shows as a slow answer, not a hung test.
    writer = threading.Timer(5, lambda: open(fifo, "wb").close())
    writer.start()
    started = time.perf_counter()
    try:
        assert refusal(fifo) == f"{fifo}: not a regular file"
    finally:
        writer.cancel()
    assert time.perf_counter() - started < 1
    assert refusal(tmp_path / "gone.yaml") == f"{tmp_path / 'gone.yaml'}: cannot read (No such file or directory)"


def test_discover_lists_names_and_reads_no_file(tmp_path, monkeypatch):
    write(tmp_path, "ok.yaml", "a: 1\n")
    write(tmp_path, "bomb.yaml", billion_laughs(levels=40))
    write(tmp_path, "release/v1.yaml", "train: {epochs: [\n")
    write(tmp_path, "notes.txt", "not a recipe\n")

    def no_reads(*args, **kwargs):
        raise AssertionError("discover read a file")

    monkeypatch.setattr("builtins.open", no_reads)
    monkeypatch.setattr(recipes, "load_recipe_file", no_reads)
    index = discover([tmp_path])
    assert index.names() == ["bomb", "ok", "release/v1"]
    assert index.files["release/v1"] == tmp_path / "release" / "v1.yaml"
    assert index.dirs == (tmp_path,)


def test_hydra_parses_only_the_recipe_it_composes(tmp_path, compose_cfg, monkeypatch):
    write(tmp_path, "lazy_ok.yaml", "# @package _global_\ntrain:\n  epochs: 4\n")
    write(tmp_path, "lazy_other.yaml", "# @package _global_\ntrain:\n  epochs: 5\n")
    write(tmp_path, "lazy_bomb.yaml", billion_laughs(levels=40))
    write(tmp_path, "lazy_broken.yaml", "train: {epochs: [\n")
    register_recipes(discover([tmp_path]))
    loaded = []
    load = recipes.load_recipe_file
    monkeypatch.setattr(recipes, "load_recipe_file", lambda path: loaded.append(path.name) or load(path))

    cfg = compose_cfg("recipe=lazy_ok")
    # The composed config is the recipe's content: recipes are never stand-ins.
    assert cfg.train.epochs == 4
    assert loaded == ["lazy_ok.yaml"]

    with pytest.raises(RecipeFileError) as info:
        compose_cfg("recipe=lazy_bomb")
    assert str(info.value) == (
        f"recipe=lazy_bomb: {tmp_path / 'lazy_bomb.yaml'}: more than 20,000 YAML nodes once aliases are expanded "
        "(the limit for a recipe)"
    )


def test_a_misspelled_recipe_gets_did_you_mean_from_names_alone(tmp_path, compose_cfg):
    write(tmp_path, "spelled_right.yaml", billion_laughs(levels=40))  # suggested, never parsed
    index = discover([tmp_path])
    register_recipes(index)
    with pytest.raises(MissingConfigException) as info:
        compose_cfg("recipe=speled_right")
    line = one_line_error(info.value, index)
    assert line.startswith("recipe=speled_right: no recipe named 'speled_right'")
    assert line.endswith("(did you mean 'spelled_right'?)")


@pytest.mark.parametrize("name", ["../escape", "sub/../../escape", "/etc/hostname"])
def test_recipe_names_cannot_leave_the_recipes_folders(tmp_path, compose_cfg, name):
    write(tmp_path, "recipes/ok.yaml", "a: 1\n")
    write(tmp_path, "escape.yaml", "# @package _global_\ntrain:\n  epochs: 9\n")
    register_recipes(discover([tmp_path / "recipes"]))
    with pytest.raises(MissingConfigException):
        compose_cfg(f"recipe={name}")
