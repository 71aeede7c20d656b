"""Finding the Chromium that browser verification drives, without starting it.

tfbuild never downloads a browser: it drives the system's Chromium (Debian's `chromium`
package) through puppeteer-core, which is pinned in package.json and installed by
`make setup`. Planning asks `chromium_problem()` so that a missing browser costs a second,
not a training run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .tfjs_node import NODE_MODULES

# Looked for in this order when verify.chromium (or TFBUILD_CHROMIUM) names none.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install chromium) or set verify.chromium=/path/to/chromium"
def find_chromium(name: str | None = None) -> Path | None:
    """The executable for `name` (a command on PATH or a path), else TFBUILD_CHROMIUM, else
    the first of CANDIDATES on PATH."""
    wanted = name or os.environ.get("TFBUILD_CHROMIUM")
    for candidate in [wanted] if wanted else CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return Path(found)
    return None


def chromium_problem(name: str | None = None, key: str = "verify.browser_backends", without: str | None = None) -> str | None:
    """None when Chromium and puppeteer-core are there; else one line saying what is missing,
    how to install it, and how to go without (`without`, by default `key`=[])."""
    without = without or f"or verify in Node.js only with {key}=[]"
    if find_chromium(name) is None:
        what = f"`{name}`" if name else "chromium (looked for " + ", ".join(CANDIDATES) + " on PATH)"
        return f"Chromium not found: {what}; {INSTALL_HINT}, {without}"
    if not (NODE_MODULES / "puppeteer-core" / "package.json").is_file():
        return f"puppeteer-core is not installed in {NODE_MODULES}: run `make setup` (npm ci), {without}"
    return None
