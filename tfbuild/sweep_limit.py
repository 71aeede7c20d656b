"""A sweep's jobs counted before Hydra expands them, and refused past `sweep.max_jobs`.

Hydra's basic sweeper turns `a=range(0,10000) b=range(0,10000)` into the list of all 10**8
jobs' overrides before launching the first: memory grows by hundreds of MB a second and
nothing is printed. Here each sweep override's values are counted from what the parser
returns (a range by arithmetic, never by listing it; a choice by its length; a glob by the
config group's options it matches), multiplied as the sweeper does (one list per key, the
last override of a key winning, hydra.sweeper.params first), and a sweep over the limit
stops before the sweeper starts, in one line naming the sweep overrides and the key.

It runs as a Hydra callback at the start of a multirun, where the composed config (with
sweep.max_jobs from the command line or a recipe) is known and no job folder exists yet.
Hydra turns an exception a callback raises into a warning and goes on, so the refusal is a
BaseException that hydra_app.run_app catches.
"""

from __future__ import annotations

import decimal
import math
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, RangeSweep, ValueType
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

KEY = "sweep.max_jobs"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SHOWN = 80  # characters of an override quoted in the message


class SweepRefused(BaseException):
    """A sweep tfbuild will not start: one line for the user, exit 2 (a ConfigError's)."""

    exit_code = 2


class SweepLimit(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_sweep(config)


def check_sweep(config: DictConfig) -> None:
    """Raise SweepRefused when the sweep `config` describes has more jobs than sweep.max_jobs,
    or when the limit itself is not a positive number. Other sweepers (Optuna, Nevergrad)
    choose their own trials and are left alone."""
    hydra = config.hydra
    if OmegaConf.select(hydra, "sweeper._target_") != BASIC_SWEEPER:
        return
    limit = OmegaConf.select(config, KEY)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SweepRefused(f"{KEY} must be a positive number of jobs, got {limit!r}")
    params = OmegaConf.to_container(hydra.sweeper.params, resolve=False) if OmegaConf.select(hydra, "sweeper.params") else {}
    assert isinstance(params, dict)
    task = OmegaConf.to_container(hydra.overrides.task, resolve=False)
    assert isinstance(task, list)
    overrides = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in task]
    jobs, sweeps = count_jobs(overrides, _config_loader())
    if jobs > limit:
        shown = " ".join(o if len(o) <= SHOWN else o[: SHOWN - 3] + "..." for o in sweeps)
        raise SweepRefused(f"this sweep would run {jobs:,} jobs ({shown}), over {KEY}={limit:,}; sweep fewer values, "
                           f"or raise {KEY}")


def count_jobs(overrides: Sequence[str], config_loader: Any = None) -> tuple[int, list[str]]:
    """(jobs, the sweep overrides that make them) for the overrides a basic sweeper gets,
    without expanding any of them. `config_loader` lists config groups' options for glob()."""
    parser = OverridesParser.create(config_loader=config_loader)
    per_key: dict[str, tuple[int, str | None]] = {}
    for override in parser.parse_overrides(list(overrides)):
        key = override.get_key_element()
        per_key[key] = (values_of(override), override.input_line) if override.is_sweep_override() else (1, None)
    jobs = math.prod(n for n, _ in per_key.values())
    return jobs, [line for _, line in per_key.values() if line is not None]


def values_of(override: Override) -> int:
    """How many values one sweep override takes."""
    value = override.value()
    if override.value_type == ValueType.RANGE_SWEEP:
        assert isinstance(value, RangeSweep)
        return range_length(value)
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, list):
        return len(value)
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return sum(1 for _ in override.sweep_string_iterator())  # a group's options: a listing
    return 1  # interval(): the basic sweeper refuses it itself


def range_length(sweep: RangeSweep) -> int:
    """len(range(start, stop, step)), for floats too (as Hydra steps them, in decimals). A
    zero step is left to Hydra, which refuses it."""
    assert sweep.start is not None and sweep.stop is not None
    step = 1 if sweep.step is None else sweep.step
    start, stop, step = (decimal.Decimal(v) for v in (sweep.start, sweep.stop, step))  # exact, as Hydra's FloatRange
    if step == 0:
        return 1
    return max(0, math.ceil((stop - start) / step))


def _config_loader() -> Any:
    from hydra.core.global_hydra import GlobalHydra

    instance = GlobalHydra.instance()
    return instance.config_loader() if instance.is_initialized() else None

