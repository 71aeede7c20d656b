"""Where tfbuild finds its own config and the user's recipes. Imports nothing heavy: the no-op
shortcut (stamp.py) reads these paths before deciding whether Hydra is needed at all."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"


def recipe_candidates(cwd: Path | None = None) -> list[Path]:
    """Where recipes may live, whether or not the folder exists yet: `./recipes`, then the project's."""
    return [(cwd or Path.cwd()) / "recipes", PROJECT_ROOT / "recipes"]


def recipe_dirs(cwd: Path | None = None) -> list[Path]:
    """The user's `./recipes` first, then the project's own; the first definition of a name wins."""
    seen: list[Path] = []
    for folder in recipe_candidates(cwd):
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def config_dirs(cwd: Path | None = None) -> list[Path]:
    """Every folder whose YAML can shape a composed config: tfbuild's conf/, the user's ./conf
    and the recipe folders, including those not made yet (the stamp watches them, so that
    creating ./recipes or ./conf after a build is noticed)."""
    return [CONF_DIR, (cwd or Path.cwd()) / "conf", *recipe_candidates(cwd)]


# Paths whose every change must send the next command through planning again, though no key
# holds them: folders where planning looked for something and found it missing, or listed to
# match a glob (a module a builder imports under `try`, the files a TFRecord glob matches).
# A folder's stat changes when an entry is added, removed or renamed. Planning notes them here,
# and the stamp (stamp.py) written after the build watches them. Only ever added to: a stale
# entry costs one more planning, a missing one a stale plan.
_PLANNING_WATCHED: set[str] = set()


def watch_for_planning(paths: Iterable[str | Path]) -> None:
    """Note folders (or files) whose change must make the next command plan again."""
    _PLANNING_WATCHED.update(str(Path(path).absolute()) for path in paths)


def planning_watched() -> list[str]:
    return sorted(_PLANNING_WATCHED)
