"""`tfbuild`: the command. A rebuild that its stamp can stand for runs without Hydra
(stamp.py); everything else goes through the Hydra app (hydra_app.py). Either way the build
itself is build.py's, and every error a user can cause is one line on stderr with a non-zero
exit (2: bad config, 1: a step failed, 130: interrupted).
"""

from __future__ import annotations

import os
import sys

from .errors import print_error


def main() -> None:
    environment = dict(os.environ)  # as the user started us: what a stamp compares
    # Builders named by `model._target_` are looked up from where tfbuild runs, as with `python -m`.
    sys.path.insert(0, os.getcwd())
    sys.argv[1:] = args = [_open_dict_override(arg) for arg in sys.argv[1:]]
    try:
        from .stamp import rebuild

        code = rebuild(args, environment)
        if code is None:
            from .hydra_app import run_app

            code = run_app(args, environment)
    except KeyboardInterrupt:
        print_error("interrupted; steps that finished are cached, the one running was discarded")
        code = 130
    sys.exit(code)


# Keys whose entries are the user's own names (an output, a builder parameter, a TFRecord
# feature): `task.outputs.age=regression` adds or replaces the entry, as `++` would, since
# no schema can list them in advance. Their values are still checked (checks.py).
_OPEN_DICTS = ("task.outputs.", "model.params.", "data.spec.")


def _open_dict_override(arg: str) -> str:
    if arg.startswith(_OPEN_DICTS) and "=" in arg:
        return "++" + arg
    return arg
