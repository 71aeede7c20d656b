"""Shared fixtures: compose the real config (Hydra's compose API), and run tfbuild for real."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tfbuild.recipes import CONF_DIR, PROJECT_ROOT, discover, recipe_dirs, register_recipes
from tfbuild.schema import register_configs
from tfbuild.tfenv import DEFAULT as DEFAULT_NUMERICS

# TensorFlow starts with the threads and oneDNN a default build sets (train.threads,
# train.onednn), before any test module imports it: the steps tests run in this process check it.
os.environ.update(DEFAULT_NUMERICS.environment())

RECIPES = discover(recipe_dirs(PROJECT_ROOT))
register_configs()
register_recipes(RECIPES)

# The smallest real build that still learns: 600 digits, three epochs (about 85% test accuracy).
# Less than that and int8 verification fails on merit: a model near chance has near-tied
# classes that quantization flips. Tests shrink the work, never fake it.
# Benchmarks keep their protocol but time a handful of calls.
TINY = [
    "train.epochs=3", "data.limit=600", "data.calibration_samples=16",
    "benchmark.warmup=1", "benchmark.min_runs=5", "benchmark.min_seconds=0",
]  # fmt: skip


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg("recipe=digits", "train.epochs=1") -> the composed DictConfig."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


def run_tfbuild(
    *args: str, cwd: Path, check: bool = False, python_code: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The installed `tfbuild` in a subprocess, as a user runs it (`env` adds variables)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}, **(env or {})}
    if python_code is not None:
        command = [sys.executable, "-c", python_code, *args]
    else:
        command = [str(Path(sys.executable).parent / "tfbuild"), *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tfbuild {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def hold_in_process(code: str, *args: str) -> subprocess.Popen:
    """A real second process running `code`, which prints "held" once it holds its lock and then
    waits for its stdin to close (`holder.communicate("")` lets go)."""
    holder = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=PROJECT_ROOT)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(holder.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(60)  # a deadline, not a sleep
    assert lines == ["held"], f"the holder did not take its lock: {holder.poll()}"
    return holder
