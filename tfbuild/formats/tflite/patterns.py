"""export.tflite.int8.float_layers patterns: regular expressions that cannot backtrack.

Python's `re` backtracks: `(a+)+$` against forty a's and a b runs for longer than the
universe, and float_layers comes from recipes anyone may write. RE2 (google-re2) matches in
time linear in the text, whatever the pattern, and refuses patterns whose compiled program
would exceed a memory budget. It reads the same syntax for everything float_layers' examples
use (names, classes, alternation, repetition); what it lacks (backreferences, lookaround)
needs backtracking by definition, and is refused while planning with one line.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError

KEY = "export.tflite.int8.float_layers"
# RE2's memory budget for one compiled pattern (its default, 8 MiB, is also what makes a
# pattern like (((a{100}){100}){100}) fail to compile instead of building a huge program).
MAX_MEMORY = 8 << 20


def compile_pattern(pattern: str) -> Any:
    """`pattern` compiled by RE2 (use .fullmatch), or a ConfigError naming it and the key."""
    import re2

    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.log_errors = False  # RE2 would print its reason on stderr; it is in the message
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        raise ConfigError(f"{KEY}: {pattern!r} is not a regular expression RE2 accepts ({_reason(error)}); "
                          "escape special characters with \\, and use no backreferences or lookaround") from None


def _reason(error: Exception) -> str:
    reason = error.args[0] if error.args else ""
    if isinstance(reason, bytes):  # the binding hands RE2's message over as bytes
        reason = reason.decode("utf-8", "replace")
    return " ".join(str(reason).split()) or type(error).__name__
