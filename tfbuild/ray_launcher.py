"""`tfbuild -m hydra/launcher=ray ...`: each job of a sweep runs as a Ray task. This is Hydra's
Ray launcher (hydra-ray-launcher, whose `hydra/launcher=ray` option and settings
hydra_plugins/tfbuild_launchers/ray_launcher.py takes over) with what a tfbuild job needs:

- where: a Ray worker starts in its node's own folder, not the caller's; the job moves to
  the caller's folder first, so that relative paths (outputs/, cache.dir, data.path, a
  builder module beside the recipe) mean what they mean to the caller. Every node must see
  that folder (a shared filesystem): the step cache's locks are files there, which is also
  what makes a sweep train once across nodes.
- joining a cluster: the plugin always asks for a small object store, which Ray refuses when
  it joins a running cluster; it is asked for here only when Ray starts on this machine.
- the terminal: Ray would forward every job's output, interleaved, line by line; instead
  each job's own output comes back with its result and the terminal gets one line per job
  as it ends (its exit code, the node it ran on, its error line if it failed).
- a task Ray could not run (its worker died, its node was lost) is that job's failure, with
  Ray's reason on its line, not a traceback that ends the sweep.

Imported only when the launcher is chosen; Ray is the `ray` extra (`pip install -e '.[ray]'`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import ConfigError
from .job_outcome import record_exit_code
from .run_folder import BUILD_LOG, remove_unused_sweep_dir

try:
    import ray
except ImportError:  # the extra is not installed; said when the launcher is chosen
    ray = None

LOCAL_OBJECT_STORE = 78_643_200  # what the plugin asks for on a local start (Ray's default is 30% of RAM)
FORWARDED_ENV = ("TFBUILD_",)  # the caller's variables a job needs wherever it runs


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's Launcher.launch for `launcher` (hydra_plugins/tfbuild_launchers/ray_launcher.py):
    every job as a Ray task, started at once; Ray runs as many as the cluster has room for."""
    if ray is None:
        raise ConfigError("hydra/launcher=ray needs Ray: pip install -e '.[ray]'")
    config, context = launcher.config, launcher.hydra_context
    setup_globals()
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        address = _connect(launcher.ray_cfg.init)
    except ConfigError:
        remove_unused_sweep_dir(sweep_dir)
        raise
    print(f"ray: {len(job_overrides)} jobs on {address}; sweep folder {sweep_dir}", flush=True)
    options = _remote_options(launcher.ray_cfg.remote)
    remote = ray.remote(**options)(_run_here) if options else ray.remote(_run_here)
    cwd, pending, jobs = os.getcwd(), [], {}
    # What tells the jobs apart: the overrides not every one of them has (a lone job: all).
    shared = set.intersection(*(set(o) for o in job_overrides)) if len(job_overrides) > 1 else set()
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job_id_for_{idx}"  # as hydra-ray-launcher names them
            sweep_config.hydra.job.num = idx
        ref = remote.remote(cwd, context, sweep_config, launcher.task_function, Singleton.get_state())
        pending.append(ref)
        own = " ".join(o for o in filter_overrides(overrides) if o not in shared) or "(no overrides)"
        jobs[ref] = (idx, own, sweep_config, time.perf_counter())
    returns: dict[int, JobReturn] = {}
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            idx, own, sweep_config, started = jobs[ref]
            returns[idx] = _finish(ref, idx, own, sweep_config, time.perf_counter() - started)
    return [returns[idx] for idx in sorted(returns)]


def _finish(ref: Any, idx: int, overrides: str, sweep_config: DictConfig, seconds: float) -> JobReturn:
    """The job's JobReturn, after its one line on the terminal (`overrides`: its own)."""
    try:
        ret, output, node = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task never finished: its worker or its node died
        reason = _reason(exc)
        _print_job(idx, overrides, 1, seconds, "?", f"Ray could not run it: {reason}")
        record_exit_code(_job_dir(sweep_config), 1)
        return _failed_return(sweep_config, 1)
    if ret.status != JobStatus.COMPLETED:  # the task function raised (a bug): Hydra's sweeper would re-raise it here
        error = ret._return_value
        _print_job(idx, overrides, 1, seconds, node, f"{type(error).__name__}: {error}".splitlines()[0])
        record_exit_code(_job_dir(sweep_config), 1)
        return _failed_return(sweep_config, 1)
    code = ret.return_value
    _print_job(idx, overrides, code, seconds, node, _error_line(output) if code else "")
    return ret


def _connect(init: DictConfig) -> str:
    """Join the cluster at `init.address` (or start Ray here when it is null); the address."""
    options = OmegaConf.to_container(init, resolve=True)
    assert isinstance(options, dict)
    if not options.get("address") or options["address"] == "local":
        # "local": a Ray of its own, even where `ray start` runs a cluster on this machine (a
        # bare ray.init() would join that one, and then refuse the object store size).
        options["address"] = "local"
        options.setdefault("object_store_memory", LOCAL_OBJECT_STORE)
        options.setdefault("include_dashboard", False)
    options.setdefault("log_to_driver", False)  # each job's output comes back with its result
    options.setdefault("logging_level", logging.WARNING)  # not "Connecting to existing Ray cluster..."
    if not ray.is_initialized():
        _check_reachable(options.get("address"))
        try:
            with warnings.catch_warnings():  # a tip about GPU variables in Ray's next versions
                warnings.simplefilter("ignore", FutureWarning)
                ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:  # no cluster there, or options Ray refuses
            where = "this machine" if options["address"] == "local" else f"'{options['address']}'"
            raise ConfigError(f"hydra.launcher.ray.init: Ray could not start or join a cluster at {where} ({exc})") from None
    return "a Ray instance started here" if options["address"] == "local" else options["address"]


def _check_reachable(address: str | None) -> None:
    """A HOST:PORT where nothing listens is said at once: Ray would retry it for minutes."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or host.startswith("ray://"):
        return  # null, auto, a Ray client address: Ray's own to resolve
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(f"hydra.launcher.ray.init.address: no Ray cluster at '{address}' ({exc.strerror or exc}); "
                          "start one with `ray start --head`, or leave the address out to start Ray here") from None


def _remote_options(remote: DictConfig) -> dict[str, Any]:
    """`hydra.launcher.ray.remote` (ray.remote's options), with the caller's TFBUILD_*
    variables added to the task's environment."""
    options = OmegaConf.to_container(remote, resolve=True) if remote else {}
    assert isinstance(options, dict)
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    if forwarded:
        runtime_env = dict(options.get("runtime_env") or {})
        runtime_env["env_vars"] = {**forwarded, **(runtime_env.get("env_vars") or {})}
        options["runtime_env"] = runtime_env
    return options


def _run_here(cwd: str, hydra_context: Any, sweep_config: DictConfig, task_function: Any,
              singleton_state: Any) -> tuple[JobReturn, str, str]:  # fmt: skip
    """What a Ray worker runs for one job: in the caller's folder, with the caller's folder
    importable (as the tfbuild command makes it); (JobReturn, the job's output, the node)."""
    os.chdir(cwd)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    _jobs_from_task_cpus(sweep_config)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        setup_globals()  # as hydra-ray-launcher's job does
        Singleton.set_state(singleton_state)
        HydraConfig.instance().set_config(sweep_config)
        ret = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    _keep_output(sweep_config, output.getvalue())
    node = ray.get_runtime_context().get_node_id()[:8]
    return ret, output.getvalue(), node


def _keep_output(sweep_config: DictConfig, output: str) -> None:
    """What the job printed (its tables, its error line), at the end of its build.log: where
    the terminal's output of a build run here would be, had it been kept."""
    folder = OmegaConf.select(sweep_config, "hydra.runtime.output_dir")  # run_job set it
    if not output or not folder or not Path(folder).is_dir():
        return
    with contextlib.suppress(OSError), open(Path(folder) / BUILD_LOG, "a") as log:
        log.write(f"\n--- what the job printed (hydra/launcher=ray) ---\n{output}")


def _reason(exc: Exception) -> str:
    """One line for why Ray could not run a task: the exception the task raised (Ray's own
    message starts with a header naming the task), or the death Ray reports."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _jobs_from_task_cpus(sweep_config: DictConfig) -> None:
    """`jobs: null` means one worker process per CPU this process may use; a Ray task may use
    the CPUs Ray gave it (hydra.launcher.ray.remote.num_cpus, 1 by default), not every CPU of
    its node, which the node's other tasks use too. With one, steps build in the task's own
    process, which Ray keeps for its next task: TensorFlow imported once per worker, not per job."""
    if sweep_config.get("jobs") is not None:
        return
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        with open_dict(sweep_config):
            sweep_config.jobs = max(1, int(cpus))


def _print_job(idx: int, overrides: str, code: int, seconds: float, node: str, error: str) -> None:
    outcome = "ok" if code == 0 else f"exit {code}"
    line = f"ray: job {idx} {overrides}: {outcome} after {seconds:.1f} s on node {node}"
    print(line + (f": {error}" if error else ""), flush=True)


def _error_line(output: str) -> str:
    """The job's last `tfbuild: error:` line (what the command would have printed), if any."""
    errors = [line for line in output.splitlines() if line.startswith("tfbuild: error:")]
    return errors[-1].removeprefix("tfbuild: error: ") if errors else ""


def _job_dir(sweep_config: DictConfig) -> Path:
    """Where the job's folder is, as Hydra's run_job names it."""
    HydraConfig.instance().set_config(sweep_config)  # hydra.sweep.subdir may read hydra.job.*
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def _failed_return(sweep_config: DictConfig, code: int) -> JobReturn:
    ret = JobReturn(overrides=list(sweep_config.hydra.overrides.task), status=JobStatus.COMPLETED)
    ret.return_value = code
    return ret
