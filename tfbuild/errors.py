"""Errors that tfbuild reports to the user as one line, without a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class TfbuildError(Exception):
    """An error with a message meant for the user; the CLI prints it on one line."""

    exit_code = 2


class ConfigError(TfbuildError):
    """The recipe or command line asks for something invalid. Raised before any work."""


class DataError(TfbuildError):
    """The data a step read cannot be trained on (found when the data step runs, before any
    training): bad input like a ConfigError, so exit 2 and nothing is cached."""


class PlanError(TfbuildError):
    """The steps do not form a valid graph (a bug in a step definition, or a user plugin)."""


class BuildFailed(TfbuildError):
    """A step failed while building; its dependents did not run."""

    exit_code = 1


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when `value` is a near miss of an allowed value, else ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def print_error(message: str) -> None:
    """How every error reaches the user: one line on stderr."""
    import sys

    print(f"tfbuild: error: {message}", file=sys.stderr)
