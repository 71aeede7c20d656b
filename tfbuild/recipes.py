"""Recipes: `recipes/NAME.yaml` files, selected on the command line as `recipe=NAME`.

Hydra finds config groups only as folders named after the group, but recipes live in a
top-level `recipes/` folder (users commit them there, next to `conf/`). Each recipes folder
(`./recipes` first, then the project's own) is therefore added to Hydra's config search path
as a config source of its own, serving the group `recipe` (subfolders become
`recipe=sub/NAME`) with package `_global_`, like an experiment config. Hydra then does
everything else: defaults lists, `override /group: x`, multirun sweeps and globs, listing the
recipes in `--help`, and its "not found" error.

Recipe files are input from anyone who can write to the folder, so they are read lazily:
listing names costs a directory listing and no reads, and a file is parsed only when Hydra
composes it. A broken, huge or hostile file therefore affects only the commands that select
it. Parsing goes through `load_recipe_file`, which refuses, before building anything, a file
over MAX_RECIPE_BYTES, YAML whose aliases would expand past MAX_RECIPE_NODES nodes (a
"billion laughs"), aliases that refer to themselves, and tags that construct Python objects.
"""

from __future__ import annotations

import functools
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.object_type import ObjectType
from hydra.core.plugins import Plugins
from hydra.plugins.config_source import ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_yaml_loader
from omegaconf.errors import OmegaConfBaseException

from .digests import is_racy, walk
from .errors import ConfigError
from .project import CONF_DIR, PROJECT_ROOT, recipe_dirs

__all__ = ["CONF_DIR", "PROJECT_ROOT", "RecipeIndex", "discover", "load_recipe_file", "recipe_dirs", "register_recipes"]

RECIPE_GROUP = "recipe"

# A pinned recipe of everything (digits_all) is 9 KB and 544 YAML nodes. Parsing is pure
# Python and slow: on the project's machines a recipe of 100,000 nodes took 14 s to load and
# one of 20,000 took 2.7 s. So the node budget, not the bytes, bounds what a hostile file can
# cost; 20,000 is 37 times the largest real recipe. A megabyte of comments or of one string
# loads in under a second.
MAX_RECIPE_BYTES = 1024 * 1024
MAX_RECIPE_NODES = 20_000
# PyYAML's tags for Python objects (python/object, python/name, ...). OmegaConf's loader is a
# SafeLoader and refuses them already; naming them gives the user a clearer message.
PYTHON_TAG_PREFIX = "tag:yaml.org,2002:python/"


class RecipeFileError(ConfigError):
    """A recipe file that is refused: unreadable, too big, not YAML, an alias bomb. One line."""


@dataclass(frozen=True)
class RecipeIndex:
    """The recipes that exist, from directory listings alone (nothing here reads a file)."""

    dirs: tuple[Path, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)  # name -> file; the first folder wins

    def names(self) -> list[str]:
        return sorted(self.files)


def discover(dirs: list[Path]) -> RecipeIndex:
    """Every `*.yaml` under `dirs`, named by its path inside its folder; no file is opened.
    Symlinks are followed as Hydra follows them when it composes (digests.walk, the one rule
    for links); one that cannot be (dangling, a cycle) is listed all the same where it names
    a `.yaml`, so that selecting it gives the reason, and it touches no other recipe."""
    files: dict[str, Path] = {}
    for folder in dirs:
        refused: list[Path] = []
        found = [entry.path for entry in walk(folder, lambda path, why: refused.append(path)) if entry.is_file]
        for path in sorted([*found, *refused]):
            if path.name.endswith(".yaml"):
                files.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return RecipeIndex(dirs=tuple(dirs), files=files)


def register_recipes(index: RecipeIndex) -> None:
    """Put `index.dirs` on Hydra's config search path (for `hydra.main` and the compose API)."""
    folders = list(index.dirs)

    class RecipeFolders(SearchPathPlugin):
        def manipulate_search_path(self, search_path) -> None:  # type: ignore[no-untyped-def]
            for folder in folders:
                search_path.append(provider="tfbuild-recipes", path=f"{RecipeSource.scheme()}://{folder}")

    Plugins.instance().register(RecipeSource)
    Plugins.instance().register(RecipeFolders)


def load_recipe_file(path: Path) -> DictConfig:
    """A recipe file's content, checked against the limits before anything is built from it.

    Raises RecipeFileError (a ConfigError: exit 2, one line naming the file) for a file that is
    missing or not a regular file, larger than MAX_RECIPE_BYTES, not UTF-8 YAML, not a mapping,
    expanding past MAX_RECIPE_NODES nodes through aliases, or tagged to build Python objects.

    A build reads its recipe up to three times (Hydra composing it, the pin check, error
    messages that say where a value came from), and parsing is pure Python (about 25 ms for a
    pinned digits_all): parses are remembered by the file's full stat, each caller gets its own
    copy.
    """
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode) or is_racy(info):
        return _parse_recipe_file(path)  # refused there with the reason, or too fresh to remember
    signature = (str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)
    return OmegaConf.create(_remembered_parse(signature))


@functools.lru_cache(maxsize=16)
def _remembered_parse(signature: tuple[Any, ...]) -> dict[str, Any]:
    content = OmegaConf.to_container(_parse_recipe_file(Path(signature[0])), resolve=False)
    assert isinstance(content, dict)
    return content


def _parse_recipe_file(path: Path) -> DictConfig:
    text = _read_limited(path)
    stream = io.StringIO(text)
    stream.name = str(path)  # type: ignore[misc]  # so that PyYAML's messages name the file
    loader = _limited_loader(path)(stream)
    try:
        node = loader.get_single_node()  # the node graph: aliases are shared nodes, not copies
        if node is None:
            return OmegaConf.create()
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise RecipeFileError(f"cannot parse {path}: {_first_line(exc)}") from None
    except RecursionError:
        raise RecipeFileError(f"cannot parse {path}: nested too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise RecipeFileError(f"{path}: a recipe is a mapping of keys to values, not a {type(data).__name__}")
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise RecipeFileError(f"{path}: {_first_line(exc)}") from None


def _read_limited(path: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; fstat then refuses it.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
                raise RecipeFileError(f"{path}: not a regular file")
            if info.st_size > MAX_RECIPE_BYTES:
                raise RecipeFileError(_too_big(path, info.st_size))
            data = file.read(MAX_RECIPE_BYTES + 1)  # it may have grown since fstat
    except OSError as exc:
        raise RecipeFileError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeFileError(_too_big(path, len(data)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _too_big(path: Path, size: int) -> str:
    return f"{path}: {size:,} bytes is over the {MAX_RECIPE_BYTES:,}-byte limit for a recipe file"


def _limited_loader(path: Path) -> type:
    """OmegaConf's YAML loader, composing under the limits: it stops as soon as the document
    has more than MAX_RECIPE_NODES distinct nodes or any node expands (aliases copied out) past
    it, at an alias inside its own anchor, and at a Python tag, before anything is constructed."""

    class LimitedLoader(get_yaml_loader()):  # type: ignore[misc]
        def __init__(self, stream: io.StringIO) -> None:
            super().__init__(stream)
            # id(node) -> its size with aliases expanded. Every finished node is here, so an
            # anchored node that is not is still open: an alias to it would contain itself.
            self.expanded: dict[int, int] = {}

        def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                anchored = self.anchors.get(event.anchor)
                if anchored is not None and id(anchored) not in self.expanded:
                    raise RecipeFileError(f"{path}: line {event.start_mark.line + 1}: an alias inside its own anchor")
                return super().compose_node(parent, index)  # the shared node, sized already
            node = super().compose_node(parent, index)  # its children are finished and sized
            if node.tag.startswith(PYTHON_TAG_PREFIX):
                raise RecipeFileError(
                    f"{path}: line {node.start_mark.line + 1}: tag '!!{node.tag[len('tag:yaml.org,2002:'):]}' "
                    "builds a Python object; recipes hold plain values only"
                )
            size = 1 + sum(self.expanded[id(child)] for child in _children(node))
            self.expanded[id(node)] = size
            if size > MAX_RECIPE_NODES or len(self.expanded) > MAX_RECIPE_NODES:
                raise RecipeFileError(
                    f"{path}: more than {MAX_RECIPE_NODES:,} YAML nodes once aliases are expanded "
                    "(the limit for a recipe)"
                )
            return node

    return LimitedLoader


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _first_line(exc: Exception) -> str:
    # PyYAML's messages span lines ("while parsing ... in <file>, line 3, column 1"); fold them.
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


class RecipeSource(ConfigSource):
    """One recipes folder as a Hydra config source for the group `recipe`.

    Hydra asks a source whether a path is a group or a config, lists groups, and loads a
    config only when composing it; answering the first three from the file system, and parsing
    in `load_config` alone, is what keeps unselected recipes unread. Paths outside the group
    `recipe`, or that would leave the folder ('..'), are not ours.
    """

    @staticmethod
    def scheme() -> str:
        return "tfbuild-recipes"

    def _inside(self, config_path: str) -> Path | None:
        """The path in this folder for a Hydra config path under `recipe/`, or None."""
        parts = config_path.strip("/").split("/")
        if parts[0] != RECIPE_GROUP or any(part in ("", ".", "..") for part in parts[1:]):
            return None
        return Path(self.path).joinpath(*parts[1:])

    def load_config(self, config_path: str) -> ConfigResult:
        file_path = self._normalize_file_name(config_path.strip("/"))
        inside = self._inside(file_path)
        assert inside is not None, f"Hydra asked {self} for {config_path}, which is not a recipe"
        name = file_path[len(RECIPE_GROUP) + 1 :].removesuffix(".yaml")
        try:
            config = load_recipe_file(inside)
        except RecipeFileError as exc:
            raise RecipeFileError(f"recipe={name}: {exc}") from None
        return ConfigResult(config=config, path=self.full_path(), provider=self.provider, header={"package": "_global_"})

    def available(self) -> bool:
        return Path(self.path).is_dir()

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return True  # the root: it holds the group `recipe`
        inside = self._inside(config_path)
        return inside is not None and inside.is_dir()

    def is_config(self, config_path: str) -> bool:
        inside = self._inside(self._normalize_file_name(config_path.strip("/")))
        return inside is not None and inside.is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path.strip("/") == "":
            return [RECIPE_GROUP] if results_filter in (None, ObjectType.GROUP) else []
        inside = self._inside(config_path)
        if inside is None or not inside.is_dir():
            return []
        found: list[str] = []
        for entry in os.listdir(inside):
            self._list_add_result(found, f"{config_path.strip('/')}/{entry}", entry, results_filter)
        return sorted(set(found))
