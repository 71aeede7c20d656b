"""Recipes: `recipes/NAME.yaml` files, selected on the command line as `recipe=NAME`.

Hydra finds config groups only as folders named after the group, but recipes live in a
top-level `recipes/` folder (users commit them there, next to `conf/`). So every recipe file
is loaded here and registered in Hydra's ConfigStore as group `recipe` (subfolders become
`recipe=sub/NAME`), with package `_global_` like an experiment config. Hydra then does
everything else: defaults lists, `override /group: x`, multirun sweeps, and listing the
recipes in `--help`.

A recipe file that does not parse is not registered; its error is kept so that choosing it
reports the file and line instead of "not found".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
RECIPE_GROUP = "recipe"


@dataclass
class RecipeIndex:
    files: dict[str, Path] = field(default_factory=dict)  # name -> file
    nodes: dict[str, DictConfig] = field(default_factory=dict)  # name -> parsed content
    broken: dict[str, str] = field(default_factory=dict)  # name -> one-line parse error

    def names(self) -> list[str]:
        return sorted(set(self.files) | set(self.broken))


def recipe_dirs(cwd: Path | None = None) -> list[Path]:
    """The user's `./recipes` first, then the project's own; the first definition of a name wins."""
    candidates = [(cwd or Path.cwd()) / "recipes", PROJECT_ROOT / "recipes"]
    seen: list[Path] = []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def discover(dirs: list[Path]) -> RecipeIndex:
    index = RecipeIndex()
    for folder in dirs:
        for path in sorted(folder.rglob("*.yaml")):
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in index.files or name in index.broken:
                continue
            try:
                node = OmegaConf.load(path)
            except Exception as exc:  # yaml.YAMLError and OmegaConf's own errors alike
                index.broken[name] = f"{path}: {_first_line(exc)}"
                continue
            index.files[name] = path
            index.nodes[name] = node
    return index


def register_recipes(index: RecipeIndex, cs: ConfigStore | None = None) -> None:
    cs = cs or ConfigStore.instance()
    for name, node in index.nodes.items():
        group, _, option = f"{RECIPE_GROUP}/{name}".rpartition("/")
        cs.store(group=group, name=option, node=node, package="_global_")


def _first_line(exc: Exception) -> str:
    # PyYAML's messages span lines ("while parsing ... in <file>, line 3, column 1"); fold them.
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
