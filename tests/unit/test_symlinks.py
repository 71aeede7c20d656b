"""The symlink rule (tfbuild/digests.py `walk`), for every kind of path tfbuild hashes: links
are followed and their targets' bytes keyed under the link's name; a dangling link, a link
cycle, a folder reached twice and anything not a regular file or folder are refused in one
line naming the path, and, while planning, the setting that led there."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbuild.builder_source import user_builder
from tfbuild.digests import InputPathError, StatCache, tree_digest, tree_files
from tfbuild.errors import ConfigError
from tfbuild.recipes import discover
from tfbuild.resolver import resolve


def saved_model(folder: Path, weights: bytes) -> Path:
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    return folder


def linked_variables(tmp_path: Path, weights: bytes) -> Path:
    """A SavedModel whose variables/ is a link to weights kept elsewhere."""
    store = saved_model(tmp_path / "store", weights)
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables").symlink_to(store / "variables", target_is_directory=True)
    return model


def test_a_linked_folders_files_are_hashed_under_the_links_name(tmp_path):
    model = linked_variables(tmp_path, b"weights-1")
    copy = saved_model(tmp_path / "copy", b"weights-1")
    records = tree_files(model)
    assert [r.path for r in records] == ["saved_model.pb", "variables/variables.data-00000-of-00001", "variables/variables.index"]
    assert tree_digest(records) == tree_digest(tree_files(copy)), "a link is read as the folder it names"
    cache = StatCache(tmp_path / "state.db")
    before = cache.digest(model)
    (tmp_path / "store" / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights-2")
    assert cache.digest(model) != before, "new weights behind the link: a new key"


def test_a_linked_file_is_read_at_its_target_and_keyed_by_it(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"one")
    (tmp_path / "b.npz").write_bytes(b"two")
    link = tmp_path / "data.npz"
    link.symlink_to(tmp_path / "a.npz")
    cache = StatCache(tmp_path / "state.db")
    first = cache.digest(link)
    link.unlink()
    link.symlink_to(tmp_path / "b.npz")  # pointed elsewhere: the stat remembered is the target's
    assert cache.digest(link) != first
    (tmp_path / "b.npz").write_bytes(b"one")
    assert cache.digest(link) == first


def dangling(root: Path) -> Path:
    (root / "gone").symlink_to(root / "nowhere")
    return root / "gone"


def cycle_to_parent(root: Path) -> Path:
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)
    return root / "sub" / "up"


def link_loop(root: Path) -> Path:
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    return root / "a"


def twice(root: Path) -> Path:
    (root / "real").mkdir()
    (root / "real" / "x.bin").write_bytes(b"x")
    (root / "zz_again").symlink_to(root / "real", target_is_directory=True)
    return root / "zz_again"


def fifo(root: Path) -> Path:
    os.mkfifo(root / "pipe")
    return root / "pipe"


REFUSED = {
    "a dangling link": (dangling, "a dangling symlink (its target"),
    "a link back to a folder above it": (cycle_to_parent, "a symlink cycle (it leads back to"),
    "links naming each other": (link_loop, "a symlink cycle"),
    "a folder reached twice": (twice, "reaches the folder already read as"),
    "a FIFO": (fifo, "a FIFO, not a regular file or folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_cannot_be_read_through_links_is_refused_not_skipped(case, tmp_path):
    make, why = REFUSED[case]
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.bin").write_bytes(b"ok")
    bad = make(root)
    for hashing in (lambda: tree_files(root), lambda: StatCache(tmp_path / "s.db").digest(root)):
        with pytest.raises(InputPathError) as refused:
            hashing()
        message = str(refused.value)
        assert message.startswith(f"{bad}: {why}") and "\n" not in message
    if case == "a folder reached twice":  # alone, the link is read through
        assert [r.path for r in tree_files(bad)] == ["x.bin"]
    elif case != "a FIFO":  # the link itself as the root is refused the same way
        with pytest.raises(InputPathError, match="symlink"):
            tree_files(bad)


# -- while planning, the refusal names the setting --------------------------------------------


def plan_of(compose_cfg, *overrides: str):
    return resolve(compose_cfg(*overrides)).plan


def npz(path: Path) -> Path:
    np.savez(path, x=np.zeros((20, 3), np.float32), y=np.arange(20) % 2)
    return path


def images(folder: Path) -> Path:
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        (folder / name / "1.png").write_bytes(b"png")
    return folder


@pytest.mark.parametrize("kind", ["npz file", "image folder", "tfrecord glob", "data.train"])
def test_data_paths_follow_links_and_refuse_broken_ones_naming_the_key(kind, compose_cfg, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    if kind == "npz file":
        (tmp_path / "d.npz").symlink_to(npz(store / "d.npz"))
        args, key, broken = ["data=npz", f"data.path={tmp_path / 'd.npz'}"], "data.path", tmp_path / "d.npz"
        files = {"source": str(tmp_path / "d.npz")}
    elif kind == "image folder":
        folder = images(tmp_path / "imgs")
        (folder / "cat" / "2.png").symlink_to(images(store / "more") / "cat" / "1.png")
        args = ["data=images", f"data.path={folder}", "data.image_size=[8,8]"]
        key, broken, files = "data.path", folder / "cat" / "2.png", {"source": str(folder)}
    elif kind == "tfrecord glob":
        (store / "a.tfrecord").write_bytes(b"a")
        (tmp_path / "part-0.tfrecord").symlink_to(store / "a.tfrecord")
        args = ["data=tfrecord", f"data.path={tmp_path}/part-*.tfrecord", "data.label=y", "+data.spec.y={dtype: int64}"]
        key, broken, files = "data.path", tmp_path / "part-0.tfrecord", {"source.0": str(tmp_path / "part-0.tfrecord")}
    else:
        for part in ("train", "validation", "test"):
            (tmp_path / f"{part}.npz").symlink_to(npz(store / f"{part}.npz"))
        args = ["data=npz", *(f"data.{p}={tmp_path / p}.npz" for p in ("train", "validation", "test"))]
        key, broken = "data.train", tmp_path / "train.npz"
        files = {p: str(tmp_path / f"{p}.npz") for p in ("train", "validation", "test")}
    assert dict(plan_of(compose_cfg, *args).step("data").files) == files, "followed: the link is the input"

    target = Path(os.readlink(broken))
    target.unlink()  # the link now dangles
    with pytest.raises(ConfigError) as refused:
        plan_of(compose_cfg, *args)
    assert str(refused.value).startswith(f"{key}: {broken}: a dangling symlink"), str(refused.value)


def test_model_path_reads_a_linked_variables_folder_and_refuses_a_cycle(compose_cfg, tmp_path):
    model = linked_variables(tmp_path, b"weights")
    args = ["model=file", f"model.path={model}", "data=none"]
    users = [s for s in plan_of(compose_cfg, *args).steps if "model" in s.files]
    assert users and all(s.files["model"] == str(model) for s in users)
    (tmp_path / "store" / "variables" / "loop").symlink_to(tmp_path / "store" / "variables", target_is_directory=True)
    with pytest.raises(ConfigError) as refused:
        plan_of(compose_cfg, *args)
    assert str(refused.value).startswith(f"model.path: {model}/variables/loop: a symlink cycle (it leads back to {model}/variables)")


def test_recipes_in_a_linked_folder_are_listed(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "team.yaml").write_text("a: 1\n")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "team").symlink_to(tmp_path / "shared", target_is_directory=True)
    (recipes / "mine.yaml").symlink_to(tmp_path / "shared" / "team.yaml")
    (recipes / "broken.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (recipes / "loop").symlink_to(recipes, target_is_directory=True)  # not entered twice, not fatal
    index = discover([recipes])
    assert index.names() == ["broken", "mine", "team/team"], "a broken one is listed: selecting it says why"


def test_a_builder_module_behind_a_link_is_keyed_by_its_target(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "nets.py").write_text("def build(input_shape, num_classes):\n    pass\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_models.py").symlink_to(lib / "nets.py")
    found = user_builder("my_models.build", [], [str(project), *sys.path])
    assert found.files == {"builder": str(project / "my_models.py")}
    cache = StatCache(tmp_path / "state.db")
    before = cache.digest(Path(found.files["builder"]))
    (lib / "nets.py").write_text("def build(input_shape, num_classes):\n    return 1\n")
    assert cache.digest(Path(found.files["builder"])) != before
