"""One build, after its config is known: run the plan, then the post-build policy (the step
table, report, build.json, gates, a pinned build's lock check, writing a new pin, `latest`).

No Hydra here: the CLI composes and checks the config, then hands a `Build` over; the no-op
shortcut (`stamp.py`) makes the same `Build` from a stamp; tests make one directly.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from .cache import Cache
from .errors import BuildFailed, DataError, TfbuildError, print_error
from .plan import Plan
from .run_folder import BUILD_LOG, RunFolder

if TYPE_CHECKING:
    from .worker_pool import Pools

# write_pin(record, materials) -> the pin's path; made by the CLI, which has the config.
PinWriter = Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]]], Path]


@dataclass(frozen=True)
class Build:
    plan: Plan
    recipe: str | None
    run_dir: Path
    cache_dir: Path
    config: dict[str, Any]  # the composed config, resolved: build.json's "config"
    force: bool | tuple[str, ...] = False
    dry_run: bool = False
    latest: Path | None = None  # a link to the run folder, made once it holds a build
    pinned_lock: dict[str, Any] | None = None  # a pinned build: the lock it must reproduce
    drift: list[str] = field(default_factory=list)  # tool drift allowed for the pinned build
    write_pin: PinWriter | None = None  # pin=VERSION: write the pin after a good build
    pin_name: str | None = None  # under this name the cache keeps the pin's entries (gc)

    @property
    def log_path(self) -> Path:
        return self.run_dir / BUILD_LOG

    @property
    def verify_enabled(self) -> bool:
        return bool(self.config["verify"]["enabled"])


def build_exit_code(build: Build, pools: Pools | None = None) -> int:
    """Run the build and say how it went as an exit code (0, 1: a step or gate failed, 2: bad
    input). Errors are reported here, as one line, so that one failed job in a sweep neither
    aborts the others nor prints Hydra's report."""
    try:
        run_build(build, pools=pools)
    except TfbuildError as exc:
        print_error(str(exc))
        return exc.exit_code
    except Exception as exc:
        return internal_error(exc, build.log_path)
    return 0


def internal_error(exc: Exception, log_path: Path) -> int:
    """A bug in tfbuild: still one line on the terminal, the traceback in the log; exit 3."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as file:
        file.write(f"tfbuild internal error:\n{traceback.format_exc()}")
    print_error(f"internal error, please report it: {type(exc).__name__}: {exc} (traceback: {log_path})")
    return 3


def run_build(
    build: Build,
    report_error: Callable[[str], None] = print_error,
    registry: Mapping[str, Any] | None = None,
    pools: Pools | None = None,
) -> dict[str, Any] | None:
    """Build, report and record; returns build.json's record (None for a dry run). Raises
    BuildFailed (a step or gate failed; every problem but the last goes to `report_error`)
    or DataError (the input was refused and nothing was built). `registry`: the step kinds
    (tests give fakes; by default tfbuild's own). `pools`: the worker processes this
    process's builds share (a sweep's jobs); None: this build's own, closed when it ends."""
    # Imported here: a config error in the CLI stays as fast as possible.
    from rich.markup import escape

    from .console import ConsoleReporter, report_table, summary_table, terminal_console, upload_entries
    from .quiet import native_output_to
    from .record import build_record, write_json
    from .report import gate_violations, report_rows, write_report
    from .report_quantization import quantization_facts
    from .remote_sync import open_remote
    from .runner import SKIPPED, run_plan
    from .steps import REGISTRY
    from .tfenv import set_for_plan
    from .worker_pool import Pools, job_count

    started, wall = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    run_dir, log_path = build.run_dir, build.log_path
    cache = Cache(build.cache_dir)
    own_pools = Pools()  # used only without a caller's pools

    def log_error(text: str) -> None:
        with open(log_path, "a") as log:
            log.write(text)

    # One build per run folder: a second is refused here, before any work (exit 2).
    with RunFolder.opened(run_dir, build.plan) as folder, terminal_console() as console, _run_dir_writes(run_dir):
        folder.check_free(build.plan)  # nothing of the user's is replaced: refused now, not half-way

        def warn(text: str) -> None:
            console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
            log_error(f"warning: {text}\n")

        remote = None if build.dry_run else open_remote(cache, build.config.get("cache", {}), warn)
        # Threads and oneDNN as the steps' params say, before this process or its workers import TensorFlow.
        set_for_plan(s.params for s in build.plan.steps)
        try:
            result = run_plan(
                build.plan,
                cache,
                REGISTRY if registry is None else registry,
                run_dir=folder,
                scope=build.recipe or "",
                force=build.force,
                dry_run=build.dry_run,
                reporter=ConsoleReporter(console),
                quiet=partial(native_output_to, log_path),  # a partial pickles: workers use it too
                log_error=log_error,
                workers=(pools or own_pools).for_jobs(job_count(build.config.get("jobs"))),
                remote=remote,
            )
        finally:
            cache.close()
            own_pools.close()
        bad_input = next((f for f in result.failures if f.bad_input), None)
        if bad_input is not None and all(r.status == SKIPPED for r in result.steps if r is not bad_input):
            # The input cannot be built from (the data step refused it) and nothing was made:
            # like a config error, exit 2 and leave no run folder (or a reused one as it was).
            folder.remove_if_unused()
            raise DataError(f"step '{bad_input.spec.name}': {bad_input.error}")

        title = f"tfbuild {'plan' if build.dry_run else 'build'}: {build.recipe or '(no recipe)'}"
        console.print(summary_table(result, title))
        if remote is not None:  # what this build made or used, for the machines that share the remote
            upload_entries(remote, [r.entry for r in result.steps if r.entry is not None], console)
        if not build.verify_enabled:  # allowed, but never silent
            _say_unverified(console, build.plan)
        _say_trusted(console, build.plan)
        if build.dry_run:
            folder.remove_if_unused()
            return None
        folder.finish()  # the build went ahead: what earlier builds published here and this one did not goes
        rows = report_rows(result, build.config["gates"])
        write_report(run_dir, rows, recipe=build.recipe, quantization=quantization_facts(result))
        violations = gate_violations(rows)
        console.print(report_table(rows, f"report: {run_dir / 'report.md'}", console.width))
        record = build_record(
            result,
            recipe=build.recipe,
            config=build.config,
            cache_dir=build.cache_dir,
            verification="on" if build.verify_enabled else "off",
            gate_violations=violations,
            started=started,
            seconds=time.perf_counter() - wall,
        )
        write_json(run_dir / "build.json", record)
        if build.latest is not None:
            _point_latest(build.latest, run_dir, warn)
        console.print(f"[dim]run folder: {run_dir}  ({time.perf_counter() - wall:.2f} s)[/]")
        lock_problems = _check_lock(console, build, record) if build.pinned_lock is not None else []
    # One line per problem; the last is raised, and a failed step's points to the log.
    problems = [f"gate failed: {v}" for v in violations] + lock_problems
    problems += [f"step '{f.spec.name}' failed: {f.error}" for f in result.failures]
    if not problems:
        _keep_pin(build, cache, record, result)
    for problem in problems[:-1]:
        report_error(problem)
    if problems:
        raise BuildFailed(f"{problems[-1]} (details: {log_path})" if result.failures else problems[-1])
    return record


def _keep_pin(build: Build, cache: Cache, record: Mapping[str, Any], result: Any) -> None:
    """A good build: write the pin it was asked for, and let the cache keep a pin's entries.

    The build's use locks ended with run_plan, so a gc may have run since: the entries are
    locked against gc again and looked up before the pin is recorded, so that a pin never
    names an entry gc removed in between (it would then be recorded for nothing)."""
    keys = [s["key"] for s in record["steps"] if s.get("key")]
    with contextlib.ExitStack() as held:
        for key in keys:
            held.enter_context(cache.using(key))
        gone = [s["name"] for s in record["steps"] if s.get("key") and cache.lookup(s["key"])[0] is None]
        if gone:
            raise BuildFailed(f"cache gc removed the entries of {', '.join(gone)} while this build ended; "
                              "nothing was pinned: build again")  # fmt: skip
        if build.write_pin is not None:
            materials = {r.spec.name: r.entry.manifest["material"] for r in result.steps if r.entry is not None}
            path = build.write_pin(record, materials)
            cache.record_pin(path.stem, keys)
            print(f"pinned: {path} (rebuild and check it with: tfbuild recipe=pinned/{path.stem})")
        if build.pinned_lock is not None:  # a reproduced pin
            cache.record_pin(build.pin_name or "pinned", build.pinned_lock["steps"].values())


def _check_lock(console: Any, build: Build, record: dict[str, Any]) -> list[str]:
    """A pinned build against its lock: problems to fail on, or (with allowed drift) warnings."""
    from .pin_checks import compare_metrics, compare_with_lock

    same, differences = compare_with_lock(build.pinned_lock or {}, record)
    if build.config.get("pin_reproduce") == "metrics":  # another machine family: the metrics, not the bytes
        held, problems = compare_metrics(build.pinned_lock or {}, record, float(build.config.get("pin_tolerance", 0.01)))
        if not problems:
            console.print(f"[green]reproduced {build.recipe} by its metrics: {held} test metrics within "
                          f"pin_tolerance of the lock ({len(same)} of {len(same) + len(differences)} artifacts "
                          "also byte-identical)[/]")  # fmt: skip
        return [f"pin: {problem}" for problem in problems]
    if not differences:
        console.print(f"[green]reproduced {build.recipe}: {len(same)} artifacts byte-identical to the lock[/]")
        return []
    if build.drift:  # asked to build anyway: report, do not fail
        console.print(f"[yellow]with tool drift ({', '.join(build.drift)}), differences from the lock: {'; '.join(differences)}[/]")
        return []
    return [f"pin: {difference}" for difference in differences]


def _say_unverified(console: Any, plan: Plan) -> None:
    from .formats import FORMATS

    conversions = {step.kind for fmt in FORMATS.values() for step in fmt.steps}
    n = sum(1 for s in plan.steps if s.kind in conversions)
    if n:
        were, runtime = ("s were", "their runtimes") if n > 1 else (" was", "its runtime")
        console.print(f"[yellow]verification is off (verify.enabled=false): {n} artifact{were} not run on {runtime}[/]")


def _say_trusted(console: Any, plan: Plan) -> None:
    """model.trust_code: true is allowed, but never silent (it is in the keys, too)."""
    from rich.markup import escape

    trusted = sorted({s.files["model"] for s in plan.steps if s.params.get("trust_code") and "model" in s.files})
    for path in trusted:
        console.print(f"[yellow]model.trust_code is true: loading {escape(path)} runs the Python code it carries[/]")


def _point_latest(link: Path, run_dir: Path, warn: Callable[[str], None]) -> None:
    """`link` -> the run folder, replaced in one rename (a reader never finds it missing). A
    relative target, so the runs folder can be moved or copied whole. Only tfbuild's own link
    is ever replaced (a link to a folder beside it, as this writes): a file, folder or other
    link of the user's named `latest` is left as it is, and said so once."""
    target = os.path.relpath(run_dir.absolute(), link.absolute().parent)
    if not _own_latest(link):
        warn(f"{link} is not tfbuild's link to the last run (yours?): left as it is")
        return
    staging = link.with_name(f".{link.name}.{os.getpid()}")
    try:
        staging.unlink(missing_ok=True)
        staging.symlink_to(target)
        os.replace(staging, link)
    except OSError:
        pass  # a convenience: a filesystem without symlinks does not fail the build
    finally:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)


def _own_latest(link: Path) -> bool:
    """Nothing there, or a link to a plain name beside it (what _point_latest writes)."""
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return True
    except OSError:  # EINVAL: not a link
        return False
    return target not in ("", ".", "..") and "/" not in target


@contextlib.contextmanager
def _run_dir_writes(run_dir: Path) -> Iterator[None]:
    """A write into the run folder failing mid-build (disk full, folder made read-only) fails
    the build on one line; the cache is unaffected (its entries are committed by rename)."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or run_dir
        raise BuildFailed(f"cannot write '{where}' ({exc.strerror}); the cache keeps every step that finished") from None
