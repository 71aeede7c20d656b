"""Hydra's and OmegaConf's composition errors, rewritten as one line naming the key.

Hydra reports a typo'd key as three lines ("Could not override 'train.epocs'. To append ...",
"Key 'epocs' not in 'TrainConfig'", "full_key: ..."), and a missing recipe as a block listing
the options. A user needs: which key or file, what is allowed, and a "did you mean".
"""

from __future__ import annotations

import dataclasses
import re

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .errors import did_you_mean
from .recipes import RECIPE_GROUP, RecipeIndex
from .schema_checks import field_names, schema_type_at, unknown_key


def one_line_error(exc: BaseException, recipes: RecipeIndex) -> str:
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc, recipes)
    if isinstance(exc, OverrideParseException):
        # repr-style escapes keep a typed newline or tab visible and the message on one line
        shown = exc.override.encode("unicode_escape").decode("ascii")
        return f"cannot parse '{shown}': {_squash(exc.message)}"
    cause = exc if isinstance(exc, OmegaConfBaseException) else (exc.__cause__ or exc.__context__)
    # "In 'recipe/NAME': ... raised while composing config": the fault is in that recipe file.
    where = re.match(rf"In '{RECIPE_GROUP}/([^']+)'", str(exc))
    prefix = f"{recipes.files.get(where.group(1), where.group(1))}: " if where else ""
    if isinstance(cause, OmegaConfBaseException):
        return prefix + _omegaconf_error(cause)
    return prefix + _squash(str(exc))


def _missing_option(exc: MissingConfigException, recipes: RecipeIndex) -> str:
    wanted = exc.missing_cfg_file or ""
    group, _, option = wanted.rpartition("/")
    if wanted.startswith(f"{RECIPE_GROUP}/"):
        name = wanted[len(RECIPE_GROUP) + 1 :]
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
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and key:
        where = key.rpartition(".")[0]
        if schema_keys(where) is None:  # a free-form mapping such as model.params
            return f"{key}: no such key in {where} (to add one, write +{key}=VALUE)"
        return unknown_key(key)
    message = re.sub(r"\s*full_key:.*$", "", message)
    return f"{key}: {message}" if key else message


def schema_keys(path: str) -> list[str] | None:
    """The keys the schema allows at a dotted path, or None where it allows any."""
    node = schema_type_at(path)
    return field_names(node) if dataclasses.is_dataclass(node) else None


def _squash(text: str) -> str:
    return " ".join(text.split())
