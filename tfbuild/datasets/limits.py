"""How much memory and disk a data step may ask for, checked before it allocates.

A data file states sizes it does not hold: an .npz header's shape, a TFRecord spec's shape, a
model signature's input shape. Allocating what they claim crashes the process (a TFRecord
shape of 3e9 values segfaulted) or ends in an OSError/MemoryError with a traceback. So every
allocation a claim drives is checked here first and refused with one DataError naming the
file or key, what it asks for and the limit.

Only Python's standard library here: plan_data.py checks data.spec's fixed limit while
planning, where NumPy and TensorFlow are not imported.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from ..errors import DataError
from ..human import human_bytes

# Values in one sample of one input or target, whatever memory says. TensorFlow indexes some
# tensors with 32-bit integers; a sample past this is never an image, sound or feature vector
# anyone trains on, only a typo or a hostile file.
MAX_SAMPLE_VALUES = 2**31 - 1
# A step may take at most this share of the memory available when it starts: the arrays it
# checks are copied once or twice (to float32, into the split), and the rest of the build
# (other workers, TensorFlow itself) needs the remainder.
MEMORY_SHARE = 0.5


def product(shape: Iterable[int]) -> int:
    """The number of values of `shape`, as a Python int (never wraps around like NumPy's)."""
    count = 1
    for side in shape:
        count *= int(side)
    return count


def check_sample_values(shape: Iterable[int], what: str, error: type[Exception] = DataError) -> int:
    """The values in one sample of `shape`, or an `error` naming `what` (the key or file) when
    over the fixed limit; memory is not asked (see check_memory)."""
    shape = tuple(shape)
    values = product(shape)
    if values > MAX_SAMPLE_VALUES:
        raise error(f"{what}: {list(shape)} is {values:,} values per sample, over tfbuild's limit of "
                    f"{MAX_SAMPLE_VALUES:,}")
    return values


def available_memory() -> int | None:
    """Bytes of memory this process may still take: the least of the machine's available
    memory and its cgroup's (a container's) remaining limit; None where neither is known."""
    found = [n for n in (_meminfo_available(), _cgroup_remaining()) if n is not None]
    if not found:
        try:
            found = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def check_memory(nbytes: int, what: str, available: int | None = None) -> None:
    """Refuse `what` (a sentence's subject naming the file or key) when it needs more than
    MEMORY_SHARE of the available memory. `available`: for tests; None reads the machine."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available * MEMORY_SHARE:
        raise DataError(f"{what} needs {human_bytes(nbytes)} of memory, more than half of the "
                        f"{human_bytes(available)} available")


def check_disk(nbytes: int, folder: Path, what: str) -> None:
    """Refuse to write `nbytes` into `folder` (or the folder it will be made in) when its file
    system has less free."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return  # the write itself will say what is wrong with the folder
    if nbytes > free:
        raise DataError(f"{what} needs {human_bytes(nbytes)} on disk, and {existing} has {human_bytes(free)} free")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_remaining() -> int | None:
    """A container's memory limit minus what it uses (cgroup v2, then v1); None when unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:  # v1 says "unlimited" with a huge number
            return None
        return max(0, int(limit) - usage)
    return None
