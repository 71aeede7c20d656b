"""What of this machine changes the bytes a step makes, when tfbuild cannot fix it: the CPU's
instruction-set family and the accelerator. It goes into the keys of the steps whose numerics
depend on it (train, optimize, TFLite calibration), so a shared cache never serves one
machine's bytes to another, and a pin says where it can be reproduced byte for byte.

What tfbuild can fix (threads, oneDNN) is fixed instead: see tfenv.Numerics.

Read without TensorFlow, from /proc, once per process: a no-op build pays well under a
millisecond for it (/proc/cpuinfo is read up to the first CPU's flags only).
"""

from __future__ import annotations

import functools
import glob
import os
from pathlib import Path

# The test and ops knob: the family this machine claims to be (read here and nowhere else).
# Tests simulate another machine with it; ops can name a family /proc cannot tell apart.
FAMILY_ENV = "TFBUILD_MACHINE_FAMILY"
CPUINFO = Path("/proc/cpuinfo")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def family() -> str:
    """The CPU's instruction-set family as TensorFlow's kernels see it: x86-64-avx512-amx,
    x86-64-avx512, x86-64-avx2, x86-64 (AVX only: the oldest TF's wheels run on), aarch64-sve,
    aarch64; other systems and machines by name. TFBUILD_MACHINE_FAMILY overrides it."""
    return os.environ.get(FAMILY_ENV) or detected_family()


@functools.cache
def detected_family(cpuinfo: Path = CPUINFO, system: str | None = None, arch: str | None = None) -> str:
    # Only the tiers at which TensorFlow's kernels change their code path are told apart:
    # oneDNN and XNNPACK dispatch at run time on AVX-512 (with AMX for bfloat16 and int8),
    # AVX2 with FMA (fused multiply-adds round once), or plain AVX; on Arm, SVE or NEON.
    # Finer differences (AVX-512 VNNI on a float model) do not change float32 results.
    uname = os.uname()  # what platform.system() and machine() read, without importing platform
    system = (system or uname.sysname).lower()
    arch = (arch or uname.machine).lower()
    prefix = "" if system == "linux" else f"{system}-"
    if arch in ("x86_64", "amd64"):
        flags = _first_cpu(cpuinfo, "flags")
        if flags is None:
            return f"{prefix}x86-64-unknown"
        if "avx512f" in flags:
            return f"{prefix}x86-64-avx512" + ("-amx" if "amx_tile" in flags else "")
        if {"avx2", "fma"} <= flags:
            return f"{prefix}x86-64-avx2"
        return f"{prefix}x86-64"
    if arch in ("aarch64", "arm64"):
        features = _first_cpu(cpuinfo, "Features")
        if features is None:
            return f"{prefix}{arch}"
        return f"{prefix}aarch64" + ("-sve" if "sve" in features else "")
    return f"{prefix}{arch or 'unknown'}"


def _first_cpu(cpuinfo: Path, field: str) -> set[str] | None:
    """The first CPU's `field` (x86 flags, Arm Features) in /proc/cpuinfo; None without one.
    Stops at the first match: the kernel writes the file CPU by CPU, so a 200-core machine
    costs what a 1-core one does."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as lines:
            for line in lines:
                name, sep, value = line.partition(":")
                if sep and name.strip() == field:
                    return set(value.split())
    except OSError:
        return None
    return None


def gpu_models(root: Path = NVIDIA_GPUS) -> tuple[str, ...]:
    """The NVIDIA GPU models this process may use, distinct and sorted (none when
    CUDA_VISIBLE_DEVICES hides them all), from the driver's /proc files: no nvidia-smi, no
    TensorFlow. A GPU the driver lists without a model (a container that shows only
    /dev/nvidia*) counts as "nvidia (model unknown)". CUDA_VISIBLE_DEVICES choosing some GPUs
    of a mixed machine still lists every model: a key that says too much misses, never lies."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return ()
    return _gpu_models(root)


@functools.cache
def _gpu_models(root: Path) -> tuple[str, ...]:
    models = set()
    for information in glob.glob(str(root / "*" / "information")):
        try:
            text = Path(information).read_text(errors="replace")
        except OSError:
            continue
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model:")), "")
        models.add(model or "nvidia (model unknown)")
    if not models and root == NVIDIA_GPUS and glob.glob("/dev/nvidia[0-9]*"):
        models.add("nvidia (model unknown)")
    return tuple(sorted(models))


def key_entry(*, accelerator: bool) -> dict[str, str]:
    """What of this machine goes into a step's key: the CPU family; with `accelerator` (a step
    that may run on a GPU), the GPU models when there are any."""
    entry = {"cpu": family()}
    models = gpu_models() if accelerator else ()
    if models:
        entry["gpu"] = " + ".join(models)
    return entry


def described(entry: dict[str, str]) -> str:
    """"x86-64-avx2" or "x86-64-avx2 with NVIDIA H100 80GB HBM3": a key entry in words."""
    return entry.get("cpu", "?") + (f" with {entry['gpu']}" if entry.get("gpu") else "")
