"""Where tfbuild finds its own config and the user's recipes. Imports nothing heavy: the no-op
shortcut (stamp.py) reads these paths before deciding whether Hydra is needed at all."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"


def recipe_dirs(cwd: Path | None = None) -> list[Path]:
    """The user's `./recipes` first, then the project's own; the first definition of a name wins."""
    candidates = [(cwd or Path.cwd()) / "recipes", PROJECT_ROOT / "recipes"]
    seen: list[Path] = []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def config_dirs(cwd: Path | None = None) -> list[Path]:
    """Every folder whose YAML can shape a composed config: tfbuild's conf/, the user's
    ./conf (where it has one) and the recipe folders."""
    return [CONF_DIR, (cwd or Path.cwd()) / "conf", *recipe_dirs(cwd)]
