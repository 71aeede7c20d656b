"""`tfbuild`: the Hydra app. Compose -> check -> resolve -> run -> build.json and a table.

Hydra's own error printing spans lines and may show a traceback; tfbuild asks Hydra to raise
instead (HYDRA_FULL_ERROR) and turns every error a user can cause into one line on stderr
with a non-zero exit (2: bad config, 1: a step failed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .cache import Cache
from .checks import check_cache_location
from .errors import BuildFailed, ConfigError, DataError, TfbuildError
from .hydra_errors import one_line_error
from .plan import Plan
from .pin_checks import check_pinned, compare_with_lock, read_pin
from .pins import check_new_pin, typed_version, write_pin
from .recipes import CONF_DIR, RecipeIndex, discover, load_recipe_file, recipe_dirs, register_recipes
from .resolver import resolve
from .schema_checks import Origin
from .schema import register_configs

if TYPE_CHECKING:
    from .worker_pool import Pools

BUILD_LOG = "build.log"


def job(cfg: DictConfig, recipes: RecipeIndex, pools: Pools | None = None) -> int:
    """One build per job, returning its exit code. Errors are reported here, as one line, so
    that one failed job in a sweep neither aborts the others nor prints Hydra's report."""
    try:
        build(cfg, recipes, pools)
    except TfbuildError as exc:
        _report(str(exc))
        return exc.exit_code
    except Exception as exc:  # a bug in tfbuild: still one line here, the traceback in the log
        log = Path(HydraConfig.get().runtime.output_dir) / BUILD_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as file:
            file.write(f"tfbuild internal error:\n{traceback.format_exc()}")
        _report(f"internal error, please report it: {type(exc).__name__}: {exc} (traceback: {log})")
        return 3
    return 0


def build(cfg: DictConfig, recipes: RecipeIndex, pools: Pools | None = None) -> None:
    """One build of the composed config, in Hydra's run folder (`recipes`: to find a pin's file;
    `pools`: the worker processes this process's builds share; None: this build's own)."""
    started, wall = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    recipe = hydra_cfg.runtime.choices.get("recipe")
    cache = None
    try:
        # Pins are checked before any work: a pin that may not be written, or a pinned build
        # that would not reproduce its lock (edited, overridden, other tools or inputs), stops here.
        pinned = read_pin(cfg, recipe, recipes)  # first: an edited pin is named as such
        resolved = resolve(cfg, _origin(hydra_cfg.overrides.task, recipe, recipes))
        new_pin = None if cfg.pin is None else check_new_pin(cfg, typed_version(hydra_cfg), recipe, Path.cwd() / "recipes")
        _check_run_dir_writable(run_dir)
        project_files = [CONF_DIR, Path.cwd() / "conf", *recipe_dirs()]
        cache_dir = _writable_cache_dir(cfg.cache.dir, check_cache_location(cfg.cache.dir, run_dir, project_files))
        cache = Cache(cache_dir)
        drift = check_pinned(cfg, pinned, resolved.plan, cache.state.digest) if pinned else []
    except ConfigError:
        if cache is not None:
            cache.close()
        _remove_unused_run_dir(run_dir)  # nothing was built; leave no empty run folder behind
        raise

    # Imported once the config is known to be good: a config error stays as fast as possible.
    from .console import ConsoleReporter, report_table, summary_table, terminal_console
    from .quiet import native_output_to
    from .record import build_record, write_json
    from .report import gate_violations, report_rows, write_report
    from .report_quantization import quantization_facts
    from .runner import SKIPPED, run_plan
    from .steps import REGISTRY
    from .worker_pool import Pools, job_count

    log_path = run_dir / BUILD_LOG
    own_pools = Pools()  # used only without a caller's pools: closed when this build ends

    def log_error(text: str) -> None:
        with open(log_path, "a") as log:
            log.write(text)

    with terminal_console() as console, _run_dir_writes(run_dir):
        try:
            result = run_plan(
                resolved.plan,
                cache,
                REGISTRY,
                run_dir=run_dir,
                scope=recipe or "",
                force=resolved.choices.force,
                dry_run=cfg.dry_run,
                reporter=ConsoleReporter(console),
                quiet=partial(native_output_to, log_path),  # a partial pickles: workers use it too
                log_error=log_error,
                workers=(pools or own_pools).for_jobs(job_count(cfg.jobs)),
            )
        finally:
            cache.close()
            own_pools.close()
        bad_input = next((f for f in result.failures if f.bad_input), None)
        others = [r for r in result.steps if r is not bad_input]
        if bad_input is not None and all(r.status == SKIPPED for r in others):
            # The input cannot be built from (the data step refused it) and nothing was made:
            # like a config error, exit 2 and leave no run folder.
            _remove_unused_run_dir(run_dir)
            raise DataError(f"step '{bad_input.spec.name}': {bad_input.error}")

        title = f"tfbuild {'plan' if cfg.dry_run else 'build'}: {recipe or '(no recipe)'}"
        console.print(summary_table(result, title))
        if not cfg.verify.enabled:  # allowed, but never silent
            _say_unverified(console, resolved.plan)
        if cfg.dry_run:
            _remove_unused_run_dir(run_dir)
            return
        rows = report_rows(result, OmegaConf.to_container(cfg.gates, resolve=True))  # type: ignore[arg-type]
        write_report(run_dir, rows, recipe=recipe, quantization=quantization_facts(result))
        violations = gate_violations(rows)
        console.print(report_table(rows, f"report: {run_dir / 'report.md'}", console.width))
        record = build_record(
            result,
            recipe=recipe,
            config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[arg-type]
            cache_dir=cache_dir,
            verification="on" if cfg.verify.enabled else "off",
            gate_violations=violations,
            started=started,
            seconds=time.perf_counter() - wall,
        )
        write_json(run_dir / "build.json", record)
        console.print(f"[dim]run folder: {run_dir}  ({time.perf_counter() - wall:.2f} s)[/]")
        pin_problems = _check_lock(console, pinned.lock, record, recipe, drift) if pinned else []
    # One line per problem; the last is raised, and a failed step's points to the log.
    problems = [f"gate failed: {v}" for v in violations] + pin_problems
    problems += [f"step '{f.spec.name}' failed: {f.error}" for f in result.failures]
    if new_pin is not None and not problems:
        materials = {r.spec.name: r.entry.manifest["material"] for r in result.steps if r.entry is not None}
        write_pin(new_pin, cfg, hydra_cfg.runtime.choices, record, materials, recipe or "")
        cache.record_pin(new_pin.path.stem, [s["key"] for s in record["steps"] if s.get("key")])
        print(f"pinned: {new_pin.path} (rebuild and check it with: tfbuild recipe=pinned/{new_pin.path.stem})")
    if pinned and not problems:  # a reproduced pin: the cache keeps what it needs
        cache.record_pin(Path(recipe or "pinned").name, pinned.lock["steps"].values())
    for problem in problems[:-1]:
        _report(problem)
    if problems:
        raise BuildFailed(f"{problems[-1]} (details: {log_path})" if result.failures else problems[-1])


def _check_lock(console: Any, lock: dict[str, Any], record: dict[str, Any], recipe: str | None, drift: list[str]) -> list[str]:
    """A pinned build against its lock: problems to fail on, or (with allowed drift) warnings."""
    same, differences = compare_with_lock(lock, record)
    if not differences:
        console.print(f"[green]reproduced {recipe}: {len(same)} artifacts byte-identical to the lock[/]")
        return []
    if drift:  # asked to build anyway: report, do not fail
        console.print(f"[yellow]with tool drift ({', '.join(drift)}), differences from the lock: {'; '.join(differences)}[/]")
        return []
    return [f"pin: {difference}" for difference in differences]


def _say_unverified(console: Any, plan: Plan) -> None:
    from .formats import FORMATS

    conversions = {step.kind for fmt in FORMATS.values() for step in fmt.steps}
    n = sum(1 for s in plan.steps if s.kind in conversions)
    if n:
        were, runtime = ("s were", "their runtimes") if n > 1 else (" was", "its runtime")
        console.print(f"[yellow]verification is off (verify.enabled=false): {n} artifact{were} not run on {runtime}[/]")


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


@contextlib.contextmanager
def _run_dir_writes(run_dir: Path) -> Iterator[None]:
    """A write into the run folder failing mid-build (disk full, folder made read-only) fails
    the build on one line; the cache is unaffected (its entries are committed by rename)."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or run_dir
        raise BuildFailed(f"cannot write '{where}' ({exc.strerror}); the cache keeps every step that finished") from None


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


def _remove_unused_run_dir(run_dir: Path) -> None:
    # Hydra made it (with only its .hydra/ record) before the task ran.
    leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if leftovers <= {".hydra", BUILD_LOG}:
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir, stop=Path.cwd())


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """The folders Hydra made on the way (outputs/runs/RECIPE/), while empty, up to `stop`."""
    stop = stop.absolute()
    for parent in folder.absolute().parents:
        if parent == stop or not parent.is_relative_to(stop):
            return
        try:
            parent.rmdir()  # only ever removes an empty folder
        except OSError:
            return


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


def main() -> None:
    # Builders named by `model._target_` are looked up from where tfbuild runs, as with `python -m`.
    sys.path.insert(0, os.getcwd())
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise to us; we print one line, not Hydra's report
    sys.argv[1:] = [_open_dict_override(arg) for arg in sys.argv[1:]]
    # Names only: a recipe file is read when Hydra composes it, so one bad file under recipes/
    # touches only the commands that select it.
    index = discover(recipe_dirs())
    OmegaConf.register_new_resolver("tfbuild_run_name", lambda recipe: recipe or "no_recipe", replace=True)
    OmegaConf.register_new_resolver("tfbuild_formats_help", formats_help, replace=True)
    register_configs()
    register_recipes(index)
    worst_exit = 0  # the worst exit code of the jobs run by this process (a sweep runs several)

    from .worker_pool import Pools

    # A sweep's jobs run one after another here: they share one set of worker processes.
    pools = Pools()

    def task(cfg: DictConfig) -> None:
        nonlocal worst_exit
        worst_exit = max(worst_exit, job(cfg, index, pools))

    app = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)
    try:
        with pools:
            app()
    except ConfigError as exc:  # a recipe file refused while Hydra composed it
        _report(str(exc))
        sys.exit(exc.exit_code)
    except (HydraException, OmegaConfBaseException) as exc:  # errors in the config or command line
        _report(one_line_error(exc, index))
        sys.exit(ConfigError.exit_code)
    except OSError as exc:  # Hydra making the run folder or writing .hydra/ into it (jobs catch their own)
        _report(_unusable_run_dir(exc))
        sys.exit(ConfigError.exit_code)
    except KeyboardInterrupt:
        _report("interrupted; steps that finished are cached, those running were discarded")
        sys.exit(130)
    from .sweep_report import failed_jobs  # jobs other launchers ran in other processes

    sys.exit(max(worst_exit, 1 if failed_jobs else 0))


# Keys whose entries are the user's own names (an output, a builder parameter, a TFRecord
# feature): `task.outputs.age=regression` adds or replaces the entry, as `++` would, since
# no schema can list them in advance. Their values are still checked (checks.py).
_OPEN_DICTS = ("task.outputs.", "model.params.", "data.spec.")


def _open_dict_override(arg: str) -> str:
    if arg.startswith(_OPEN_DICTS) and "=" in arg:
        return "++" + arg
    return arg


def _unusable_run_dir(exc: OSError) -> str:
    """One line for a run folder Hydra could not make or write, after removing what it left."""
    run_dir, path = _hydra_write_target(exc)
    if run_dir is not None:  # a half-written .hydra/ record is no use to anyone
        _remove_unused_run_dir(run_dir)
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


def _report(message: str) -> None:
    print(f"tfbuild: error: {message}", file=sys.stderr)
