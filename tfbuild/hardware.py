"""What this machine has, found without importing TensorFlow, so a target the machine cannot
serve fails in a second rather than after TensorFlow's import and a training run.

The train step checks again with TensorFlow itself (a GPU that nvidia-smi lists may still be
invisible to a CPU-only TensorFlow build), and says so in the same way.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess


def gpu_count() -> tuple[int, str]:
    """(GPUs this process may use, how that was found)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0, "CUDA_VISIBLE_DEVICES hides them all"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0, "nvidia-smi not found"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 0, f"nvidia-smi failed ({exc})"
    count = sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
        return count, f"nvidia-smi, limited by CUDA_VISIBLE_DEVICES={visible}"
    return count, "nvidia-smi -L"


def tpu_address(configured: str | None) -> tuple[str | None, str]:
    """(the TPU to resolve, or None when none is reachable, and where it came from)."""
    if configured:
        return configured, "target.tpu"
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"], "TPU_NAME"
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        return "local", "a TPU VM's /dev/accel devices"
    return None, "no target.tpu, no TPU_NAME, no /dev/accel* devices"
