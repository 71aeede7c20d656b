"""Steps built in worker processes (fake steps, no TensorFlow: the pools here preload
nothing): they overlap, their progress and errors come back, and a worker that dies or a
Ctrl-C leaves nothing half-written in the cache."""

import os
from collections import Counter
from dataclasses import replace
from functools import partial

import pytest

from tfbuild.cache import Cache
from tfbuild.plan import make_plan
from tfbuild.quiet import native_output_to
from tfbuild.runner import BUILT, CACHED, FAILED, SKIPPED, run_plan
from tfbuild.steps.base import NoProgress
from tfbuild.worker_pool import Pools, WorkerPool, job_count

from tests.fakes import EventReporter, WriteStep, step
from tests.parallel_fakes import DieStep, InterruptStep, KeeperStep, MeetStep, PrintStep

KINDS = {"write": WriteStep("write", Counter()), "meet": MeetStep(), "die": DieStep(), "interrupt": InterruptStep(),
         "print": PrintStep(), "keeper": KeeperStep()}  # fmt: skip


@pytest.fixture
def pool():
    with WorkerPool(2, preload=None) as pool:
        yield pool


def build(tmp_path, steps, pool, **kwargs):
    return run_plan(make_plan(steps), Cache(tmp_path / "cache"), KINDS, workers=pool, **kwargs)


def of_kind(kind, name, inputs=None, **params):
    return replace(step(name, inputs, **params), kind=kind)


def leftovers(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache" / "tmp").iterdir())


def test_steps_run_at_the_same_time_in_two_processes(tmp_path, pool):
    steps = [step("data"), *(of_kind("meet", n, {"data": "data"}, text=n, folder=str(tmp_path), meet=["a", "b"]) for n in "ab")]
    result = build(tmp_path, steps, pool)
    assert [r.status for r in result.steps] == [BUILT] * 3, [r.error for r in result.steps]
    pids = {r.info["pid"] for r in result.steps[1:]}
    assert len(pids) == 2 and pool.started == 2


def test_progress_and_errors_come_back_from_the_worker(tmp_path, pool):
    calls, errors = [], []

    class Recorder:
        def step_started(self, spec, reason):
            class Progress:
                def start(self, total, description):
                    calls.append((spec.name, "start", total, description))

                def advance(self, description=None):
                    calls.append((spec.name, "advance", description))

            return Progress()

        def step_finished(self, result):
            pass

    steps = [step("data"), step("bad", {"data": "data"}, fail=True), step("after", {"bad": "bad"})]
    result = build(tmp_path, steps, pool, reporter=Recorder(), log_error=errors.append)
    assert ("data", "start", 1, "working") in calls and ("data", "advance", "done") in calls
    assert [(r.status, r.error) for r in result.steps] == [
        (BUILT, None), (FAILED, "ValueError: bad was told to fail"), (SKIPPED, None)]
    assert len(errors) == 1 and errors[0].startswith("step 'bad' failed:\nTraceback (most recent call last):")
    assert "raise ValueError" in errors[0]


def test_a_worker_killed_mid_step_fails_that_step_in_one_line_and_the_rest_go_on(tmp_path, pool):
    steps = [step("data"), of_kind("die", "doomed", {"data": "data"}), step("after", {"x": "doomed"}),
             step("other", {"data": "data"}, text="other")]  # fmt: skip
    result = {r.spec.name: r for r in build(tmp_path, steps, pool).steps}
    assert result["doomed"].status == FAILED
    assert result["doomed"].error == "the worker process building it was killed by SIGKILL (out of memory?)"
    assert result["after"].status == SKIPPED and result["other"].status == BUILT
    assert leftovers(tmp_path) == [], "its half-written folder was removed"
    again = build(tmp_path, [step("data"), step("next", {"data": "data"})], pool)
    assert [r.status for r in again.steps] == [CACHED, BUILT], "the pool replaced the dead worker"


def test_steps_that_share_a_runtime_run_in_one_worker_one_at_a_time(tmp_path, pool):
    reporter = EventReporter()
    browser = [of_kind("keeper", f"b{i}", {"data": "data"}, text=str(i), affinity="chromium") for i in range(3)]
    result = build(tmp_path, [step("data"), *browser, step("plain", {"data": "data"}, text="plain")], pool,
                   reporter=reporter)  # fmt: skip
    assert [r.status for r in result.steps] == [BUILT] * 5
    assert len({r.info["pid"] for r in result.steps if r.spec.name.startswith("b")}) == 1
    running = set()
    for event, name, *_ in reporter.events:
        if event == "start":
            assert not (name.startswith("b") and any(r.startswith("b") for r in running)), reporter.events
            running.add(name)
        else:
            running.discard(name)


def test_ctrl_c_ends_the_workers_and_leaves_no_temp_folder(tmp_path, pool):
    class Interrupting:
        def step_started(self, spec, reason):
            class Progress:
                def start(self, total, description):
                    raise KeyboardInterrupt  # as if the user pressed Ctrl-C while both steps ran

            return Progress() if spec.name == "long" else NoProgress()

        def step_finished(self, result):
            pass

    steps = [step("data"), of_kind("interrupt", "long", {"data": "data"}, folder=str(tmp_path), after="beside"),
             of_kind("meet", "beside", {"data": "data"}, folder=str(tmp_path), meet=["never"])]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, steps, pool, reporter=Interrupting())
    assert leftovers(tmp_path) == []
    assert pool.started == 0, "the workers that were building were ended"


def test_ctrl_c_in_a_step_built_in_this_process_leaves_no_temp_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, [step("data"), of_kind("interrupt", "long", {"data": "data"})], None)
    assert leftovers(tmp_path) == []


def test_a_cached_build_starts_no_worker(tmp_path, pool):
    build(tmp_path, [step("data"), step("train", {"data": "data"})], pool)
    with WorkerPool(2, preload=None) as fresh:
        result = build(tmp_path, [step("data"), step("train", {"data": "data"})], fresh)
        assert [r.status for r in result.steps] == [CACHED, CACHED]
        assert fresh.started == 0
        assert build(tmp_path, [step("data")], fresh, dry_run=True).steps[0].status == CACHED
        assert fresh.started == 0


def test_the_pool_outlives_a_build_and_is_reused(tmp_path, pool):
    first = build(tmp_path, [step("one")], pool)
    second = build(tmp_path, [step("two")], pool)
    assert first.steps[0].status == second.steps[0].status == BUILT
    assert pool.started == 2


def test_native_output_goes_to_the_log_in_the_worker(tmp_path, pool, capfd):
    log = tmp_path / "build.log"
    result = build(tmp_path, [of_kind("print", "noisy")], pool, quiet=partial(native_output_to, log))
    assert result.steps[0].status == BUILT
    assert "native noise on fd 1" in log.read_text() and "native noise on fd 2" in log.read_text()
    assert "native noise" not in capfd.readouterr().out + capfd.readouterr().err


def test_pools_are_made_for_more_than_one_job_and_reused():
    with Pools() as pools:
        assert pools.for_jobs(1) is None, "one job: built in this process"
        two = pools.for_jobs(2)
        assert two is not None and two.slots == 2 and pools.for_jobs(2) is two
        three = pools.for_jobs(3)
        assert three is not two and three.slots == 3
    assert job_count(None) >= 1 and job_count(4) == 4


def test_a_step_that_cannot_go_to_a_worker_fails_in_one_line(tmp_path, pool):
    class Local(WriteStep):  # defined in a function: a worker could not import it
        pass

    kinds = {**KINDS, "local": Local("local", Counter())}
    steps = [step("data"), of_kind("local", "here", {"data": "data"}), step("other", {"data": "data"}, text="x")]
    result = run_plan(make_plan(steps), Cache(tmp_path / "cache"), kinds, workers=pool)
    here = result.steps[1]
    assert here.status == FAILED and here.error.startswith("could not hand the step to a worker process (")
    assert "\n" not in here.error and result.steps[2].status == BUILT
    assert leftovers(tmp_path) == []


def test_output_for_a_removed_run_folder_goes_nowhere_and_the_folder_stays_gone(tmp_path):
    """A worker that warms up after its build removed the run folder (refused input) must
    neither fail nor make the folder again."""
    gone = tmp_path / "run" / "build.log"
    with native_output_to(gone):
        os.write(1, b"TensorFlow's import noise\n")
    assert not (tmp_path / "run").exists()
