"""Hydra's and OmegaConf's composition errors, rewritten as one line naming the key.

Hydra reports a typo'd key as three lines ("Could not override 'train.epocs'. To append ...",
"Key 'epocs' not in 'TrainConfig'", "full_key: ..."), and a missing recipe as a block listing
the options. A user needs: which key or file, what is allowed, and a "did you mean".
"""

from __future__ import annotations

import re

from hydra.errors import MissingConfigException
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .errors import did_you_mean
from .recipes import RECIPE_GROUP, RecipeIndex


def one_line_error(exc: BaseException, recipes: RecipeIndex) -> str:
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc, recipes)
    cause = exc if isinstance(exc, OmegaConfBaseException) else exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return _omegaconf_error(cause)
    return _squash(str(exc))


def _missing_option(exc: MissingConfigException, recipes: RecipeIndex) -> str:
    wanted = exc.missing_cfg_file or ""
    group, _, option = wanted.rpartition("/")
    if wanted.startswith(f"{RECIPE_GROUP}/"):
        name = wanted[len(RECIPE_GROUP) + 1 :]
        if name in recipes.broken:
            return f"recipe={name}: cannot parse {recipes.broken[name]}"
        if ".." in name.split("/") or name.startswith("/"):
            return f"recipe={name}: recipe names are paths inside recipes/ and may not contain '..'"
        names = recipes.names()
        return (
            f"recipe={name}: no recipe named '{name}' (looked for recipes/{name}.yaml; available: "
            f"{', '.join(names) or 'none'}){did_you_mean(name, names)}"
        )
    options = [str(o) for o in (exc.options or [])]
    if group and options:
        return f"{group}={option}: not one of {', '.join(options)}{did_you_mean(option, options)}"
    return _squash(str(exc))


def _omegaconf_error(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or ""
    message = str(getattr(err, "msg", None) or err).splitlines()[0]
    if isinstance(err, ConfigKeyError):
        parent = getattr(err, "parent_node", None)
        bad = str(getattr(err, "key", "") or key.rpartition(".")[2])
        allowed = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else []
        if allowed:
            where = key.rpartition(".")[0] or "the config"
            return f"{key}: no such key in {where} (keys: {', '.join(allowed)}){did_you_mean(bad, allowed)}"
    message = re.sub(r"\s*full_key:.*$", "", message)
    return f"{key}: {message}" if key else message


def _squash(text: str) -> str:
    return " ".join(text.split())
