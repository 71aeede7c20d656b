"""The Hydra app: compose the config, check it, plan, and hand the build to `build.py`.

Hydra's own error printing spans lines and may show a traceback; tfbuild asks Hydra to raise
instead (HYDRA_FULL_ERROR) and turns every error a user can cause into one line on stderr
with a non-zero exit (2: bad config, 1: a step failed).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .build import Build, build_exit_code, internal_error
from .cache import Cache
from .checks import check_cache_location, check_cache_remote
from .errors import ConfigError, TfbuildError, print_error
from .hydra_errors import one_line_error
from .job_outcome import record_exit_code
from .pin_checks import check_pinned, read_pin
from .pins import check_new_pin, typed_version, write_pin
from .project import CONF_DIR, config_dirs, recipe_dirs
from .recipes import RecipeIndex, discover, load_recipe_file, register_recipes
from .resolver import resolve
from .run_folder import BUILD_LOG, latest_link, remove_unused_run_dir
from .schema import register_configs
from .schema_checks import Origin
from .sweep_limit import SweepRefused
from .worker_pool import Pools
from . import stamp


def run_app(args: list[str], environment: dict[str, str]) -> int:
    """Run Hydra on `args` (already sys.argv[1:]); the worst exit code of its jobs.
    `environment` is the one tfbuild started with, for the stamps a good build leaves."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise to us; we print one line, not Hydra's report
    # Names only: a recipe file is read when Hydra composes it, so one bad file under recipes/
    # touches only the commands that select it.
    index = discover(recipe_dirs())
    OmegaConf.register_new_resolver("tfbuild_run_name", stamp.run_name, replace=True)
    OmegaConf.register_new_resolver("tfbuild_formats_help", formats_help, replace=True)
    register_configs()
    register_recipes(index)
    worst_exit = 0  # the worst exit code of the jobs run by this process (a sweep runs several)
    # A sweep's jobs run one after another here: they share one set of worker processes.
    pools = Pools()
    command_pid = os.getpid()

    def task(cfg: DictConfig) -> int:
        """One job, here or, with a launcher that ships it (joblib, submitit, Ray: pickled with
        what it refers to), in another process or on another machine."""
        nonlocal worst_exit
        elsewhere = os.getpid() != command_pid
        # A process that runs jobs for a launcher may live on (Ray and joblib reuse theirs):
        # no one would close the pool it made, so each job there closes its own.
        with pools if elsewhere else contextlib.nullcontext():
            code = job(cfg, index, args, environment, pools)
        if _in_sweep(HydraConfig.get()):
            with contextlib.suppress(OSError):  # an unwritable job folder: the job said so already
                record_exit_code(Path(HydraConfig.get().runtime.output_dir), code)
        worst_exit = max(worst_exit, code)
        return code

    app = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)
    try:
        with pools:
            app()
    except ConfigError as exc:  # a recipe file refused while Hydra composed it
        print_error(str(exc))
        return exc.exit_code
    except SweepRefused as exc:  # too many jobs, counted before Hydra's sweeper expanded them
        print_error(str(exc))
        return exc.exit_code
    except (HydraException, OmegaConfBaseException) as exc:  # errors in the config or command line
        print_error(one_line_error(exc, index))
        return ConfigError.exit_code
    except OSError as exc:  # Hydra making the run folder or writing .hydra/ into it (jobs catch their own)
        print_error(_unusable_run_dir(exc))
        return ConfigError.exit_code
    from .sweep_report import failed_jobs  # jobs other launchers ran in other processes

    return max([worst_exit, *failed_jobs.values()])


def job(cfg: DictConfig, recipes: RecipeIndex, args: list[str], environment: dict[str, str], pools: Pools) -> int:
    """One build per job, returning its exit code; a good build leaves a stamp for the no-op
    shortcut to find."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        build = compose_build(cfg, recipes)
    except TfbuildError as exc:
        print_error(str(exc))
        return exc.exit_code
    except Exception as exc:
        return internal_error(exc, run_dir / BUILD_LOG)
    code = build_exit_code(build, pools)
    if code == 0 and not _in_sweep(hydra_cfg):
        stamp.record(args, build, run_dir_pattern=_run_dir_pattern(hydra_cfg), config_text=OmegaConf.to_yaml(cfg), env=environment)
    return code


def compose_build(cfg: DictConfig, recipes: RecipeIndex) -> Build:
    """The composed config, checked and planned, as a Build; a ConfigError (after removing the
    run folder Hydra made) when it cannot be built. Pins are checked before any work: a pin
    that may not be written, or a pinned build that would not reproduce its lock (edited,
    overridden, other tools or inputs), stops here."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    recipe = hydra_cfg.runtime.choices.get("recipe")
    cache = None
    try:
        pinned = read_pin(cfg, recipe, recipes)  # first: an edited pin is named as such
        resolved = resolve(cfg, _origin(hydra_cfg.overrides.task, recipe, recipes))
        new_pin = None if cfg.pin is None else check_new_pin(cfg, typed_version(hydra_cfg), recipe, Path.cwd() / "recipes")
        _check_run_dir_writable(run_dir)
        cache_dir = _writable_cache_dir(cfg.cache.dir, check_cache_location(cfg.cache.dir, run_dir, config_dirs()))
        check_cache_remote(cfg.cache.remote)
        cache = Cache(cache_dir)
        drift = check_pinned(cfg, pinned, resolved.plan, cache.state.digest) if pinned else []
    except ConfigError:
        remove_unused_run_dir(run_dir)  # nothing was built; leave no empty run folder behind
        raise
    finally:
        if cache is not None:
            cache.close()
    writer = None
    if new_pin is not None:
        choices = dict(hydra_cfg.runtime.choices)

        def writer(record: Any, materials: Any) -> Path:
            write_pin(new_pin, cfg, choices, record, materials, recipe or "")
            return new_pin.path
    return Build(
        plan=resolved.plan,
        recipe=recipe,
        run_dir=run_dir,
        cache_dir=cache_dir,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[arg-type]
        force=resolved.choices.force,
        dry_run=bool(cfg.dry_run),
        latest=latest_link(run_dir, _run_dir_pattern(hydra_cfg)),
        pinned_lock=pinned.lock if pinned else None,
        drift=drift,
        write_pin=writer,
        pin_name=Path(recipe or "pinned").name if pinned else None,
    )


def _in_sweep(hydra_cfg: Any) -> bool:
    return hydra_cfg.mode is None or hydra_cfg.mode.name != "RUN"


def _run_dir_pattern(hydra_cfg: Any) -> str:
    """How this job's folder was named, before interpolation: hydra.run.dir, or in a sweep
    its job's hydra.sweep.subdir (by job number: no `latest` among a sweep's jobs)."""
    if _in_sweep(hydra_cfg):
        return str(OmegaConf.to_container(hydra_cfg.sweep)["subdir"])
    return str(OmegaConf.to_container(hydra_cfg.run)["dir"])


def formats_help() -> str:
    """`tfbuild --help`'s lines on formats, from the registry (conf/hydra/help/tfbuild.yaml)."""
    from .formats import FORMATS

    lines = [f"export.formats                 {', '.join(FORMATS)} (one value or a list), built besides the target's"]
    for fmt in FORMATS.values():
        lines.append(f"  {fmt.name:<28} {fmt.summary}")
        if fmt.variants:
            key = f"export.{fmt.name}.quantization"
            lines.append(f"  {key:<28} {', '.join(fmt.variants)} (default: the target's)")
    return "\n".join("  " + line for line in lines).lstrip()


def _origin(overrides: Any, recipe: str | None, recipes: RecipeIndex) -> Origin:
    """The command line and the recipe file, so that errors can say where a value was written."""
    file = recipes.files.get(recipe or "")
    # Unresolved: `key=${...}` must stay as typed (its interpolation is checked later).
    typed = OmegaConf.to_container(overrides, resolve=False) if OmegaConf.is_config(overrides) else overrides
    # Hydra composed this file already, under the same limits; a small second read.
    content = load_recipe_file(file) if file else None
    return Origin(command_line=tuple(str(o) for o in typed), recipe_file=file, recipe=content)


def _check_run_dir_writable(run_dir: Path) -> None:
    """Hydra has made the run folder (and, unless hydra.output_subdir=null, written into it);
    a folder that cannot take build.log and build.json is refused before any work."""
    probe = run_dir / ".tfbuild-write-probe"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run folder: cannot write in '{run_dir}' ({exc.strerror}); set hydra.run.dir=FOLDER to a writable place") from None


def _writable_cache_dir(path: str, folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cache.dir: '{path}' exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache.dir: cannot create '{path}' ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cache.dir: '{path}' is not writable")
    return folder


def _unusable_run_dir(exc: OSError) -> str:
    """One line for a run folder Hydra could not make or write, after removing what it left."""
    run_dir, path = _hydra_write_target(exc)
    if run_dir is not None:  # a half-written .hydra/ record is no use to anyone
        remove_unused_run_dir(run_dir)
    return f"run folder: cannot write '{path or run_dir or '?'}' ({exc.strerror}); set hydra.run.dir=FOLDER to a writable place"


def _hydra_write_target(exc: OSError) -> tuple[Path | None, Path | None]:
    """(run folder, file) Hydra was writing. A failed open() names its file; a failed write()
    (a full disk) names none, so the file is read from Hydra's frames (run_job's output_dir,
    _save_config's output_dir and filename)."""
    run_dir = path = Path(exc.filename) if exc.filename else None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "run_job" and "output_dir" in frame.f_locals:
            run_dir = Path(str(frame.f_locals["output_dir"]))
        if frame.f_code.co_name == "_save_config" and path is None:
            path = Path(str(frame.f_locals.get("output_dir", ""))) / str(frame.f_locals.get("filename", ""))
        tb = tb.tb_next
    return run_dir, path
