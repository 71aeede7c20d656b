"""The runner's walk with several builds at once (fake steps on threads): what overlaps, what
waits, and that every result and reason is the sequential walk's."""

from collections import Counter
from dataclasses import replace

import pytest

from tfbuild.cache import Cache
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, run_plan
from tfbuild.steps.base import NoProgress

from tests.fakes import WriteStep, step
from tests.parallel_fakes import BarrierStep, ThreadExecutor


class TimedStep(WriteStep):
    """A benchmark-like step: it must run alone."""

    exclusive = True


class Events:
    """A reporter that records, in the walk's own order, which steps start and finish."""

    def __init__(self):
        self.log = []

    def step_started(self, spec, reason):
        self.log.append(("start", spec.name))
        return NoProgress()

    def step_waiting(self, spec):
        self.log.append(("wait", spec.name))

    def step_finished(self, result):
        self.log.append(("end", result.spec.name))

    def running_at_each_start(self):
        """step -> the steps that were running when it started."""
        running, seen = set(), {}
        for event, name in self.log:
            if event == "start":
                seen[name] = set(running)
                running.add(name)
            elif event == "end":
                running.discard(name)
        return seen


@pytest.fixture
def runs():
    return Counter()


@pytest.fixture
def walk(tmp_path, runs):
    """walk(steps, slots=3, **run_plan kwargs): a build on its own cache per `cache` name."""

    def _walk(steps, slots=3, cache="cache", registry=None, **kwargs):
        kinds = {"write": WriteStep("write", runs), "timed": TimedStep("timed", runs), **(registry or {})}
        executor = ThreadExecutor(slots) if slots > 1 else None
        return run_plan(make_plan(steps), Cache(tmp_path / cache), kinds, scope="recipe", workers=executor, **kwargs)

    return _walk


def fan_out(*leaves, **params):
    """data -> train -> one step per leaf (each reads train), like conversions of one model."""
    return [step("data"), step("train", {"data": "data"}),
            *(step(leaf, {"model": "train"}, publish=True, **{"text": leaf, **params.get(leaf, {})}) for leaf in leaves)]  # fmt: skip


def summary(result):
    return [(r.spec.name, r.status, r.reason, r.error) for r in result.steps]


def test_independent_steps_run_at_the_same_time(walk):
    meet = BarrierStep(3)  # each of the three waits until all three are running
    steps = [step("data"), *(replace(step(n, {"data": "data"}, text=n), kind="barrier") for n in ("a", "b", "c"))]
    result = walk(steps, slots=3, registry={"barrier": meet})
    assert [r.status for r in result.steps] == [BUILT] * 4, [r.error for r in result.steps]


def test_a_step_starts_only_after_the_steps_it_reads_from_are_done(walk):
    events = Events()
    steps = [*fan_out("x", "y"), step("z", {"a": "x", "b": "y"})]
    result = walk(steps, reporter=events)
    assert [r.status for r in result.steps] == [BUILT] * 5
    order = [name for event, name in events.log if event == "end"]
    for spec in make_plan(steps).steps:
        upstream = {a for a in spec.inputs.values()}
        started = events.log.index(("start", spec.name))
        assert all(events.log.index(("end", u)) < started for u in upstream), (spec.name, events.log)
    assert order[:2] == ["data", "train"] and order[-1] == "z"
    assert events.running_at_each_start()["z"] == set()


def test_results_and_reasons_are_the_sequential_walks_in_plan_order(walk, runs):
    """Failures, skips, a diagnosis that runs and one that is not needed, cached steps:
    the same statuses, reasons and errors, at jobs=1 and with three at once."""

    def plan():
        check_ok = step("check_ok", {"model": "a"})
        check_bad = step("check_bad", {"model": "b"}, fail=True)
        return [*fan_out("a", "b", "c", c={"fail": True}), step("after_c", {"c": "c"}), check_ok, check_bad,
                replace(step("why_ok", {"model": "a"}), runs_if_failed="check_ok"),
                replace(step("why_bad", {"model": "b"}), runs_if_failed="check_bad")]  # fmt: skip

    for cache in ("sequential", "parallel"):
        walk(fan_out("a"), slots=1 if cache == "sequential" else 3, cache=cache)  # something already cached
    sequential = walk(plan(), slots=1, cache="sequential")
    parallel = walk(plan(), slots=3, cache="parallel")
    assert summary(parallel) == summary(sequential)
    assert [r.spec.name for r in parallel.steps] == [s.name for s in make_plan(plan()).steps]
    statuses = {r.spec.name: r.status for r in parallel.steps}
    assert statuses == {"data": CACHED, "train": CACHED, "a": CACHED, "b": BUILT, "c": FAILED, "after_c": SKIPPED,
                        "check_ok": BUILT, "check_bad": FAILED, "why_ok": NOT_NEEDED, "why_bad": BUILT}  # fmt: skip
    assert [r.output_digest("out") for r in parallel.steps if r.status == BUILT] == [
        r.output_digest("out") for r in sequential.steps if r.status == BUILT
    ]


def test_a_failure_skips_its_dependents_while_the_others_finish(walk, tmp_path):
    steps = [*fan_out("a", "b", b={"fail": True}), step("after_b", {"b": "b"}), step("after_a", {"a": "a"})]
    result = {r.spec.name: (r.status, r.reason) for r in walk(steps).steps}
    assert result["b"][0] == FAILED and result["after_b"] == (SKIPPED, "b did not build")
    assert result["a"][0] == BUILT and result["after_a"][0] == BUILT
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_a_step_that_times_something_runs_alone(walk):
    events = Events()
    timed = [StepSpec(f"bench[{n}]", "timed", {"text": n}, {"model": "train"}, step(f"bench[{n}]").outputs)
             for n in ("p", "q")]  # fmt: skip
    meet = [replace(s, kind="barrier") for s in fan_out("x", "y")[2:]]  # x and y must run side by side
    result = walk([*fan_out("z"), *meet, *timed], slots=3, reporter=events, registry={"barrier": BarrierStep(2)})
    assert [r.status for r in result.steps] == [BUILT] * 7, [r.error for r in result.steps]
    running = events.running_at_each_start()
    for name in ("bench[p]", "bench[q]"):
        assert running[name] == set(), f"{name} started beside {running[name]}"
    for name, beside in running.items():
        assert not {"bench[p]", "bench[q]"} & beside, f"{name} started while a benchmark ran"


def test_a_dry_run_builds_nothing_and_says_why(walk, runs):
    result = walk(fan_out("a", "b"), dry_run=True)
    assert [r.status for r in result.steps] == [TO_BUILD] * 4
    assert result.steps[2].reason == "after train (its input may change)"
    assert not runs


def test_two_steps_with_one_key_build_it_once(walk, runs):
    """The key is the step's kind, params and inputs, not its name: the second finds the
    first's entry, as it would one after the other."""
    twins = [StepSpec(n, "write", {"text": "same"}, {"data": "data"}, (OutputSpec("out", n, "twin.txt"),)) for n in ("twin1", "twin2")]
    steps = [step("data"), *twins]
    sequential = walk(steps, slots=1, cache="sequential")
    parallel = walk(steps, slots=3, cache="parallel")
    assert summary(parallel) == summary(sequential)
    assert [(r.status, r.reason) for r in parallel.steps][1:] == [(BUILT, "not in cache"), (CACHED, "cached")]
    assert runs["twin1"] == 2 and not runs["twin2"]


# -- the `jobs` key --


def test_jobs_must_be_a_positive_whole_number_or_null(compose_cfg):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from tfbuild.errors import ConfigError
    from tfbuild.hydra_errors import one_line_error
    from tfbuild.resolver import resolve
    from tfbuild.schema_checks import Origin

    from tests.conftest import RECIPES

    for value, expected in (("0", "jobs must be at least 1, got 0"), ("-2", "jobs must be at least 1, got -2")):
        with pytest.raises(ConfigError, match=f"^{expected}$"):
            resolve(compose_cfg(f"jobs={value}"), Origin(command_line=(f"jobs={value}",)))
    with pytest.raises((HydraException, OmegaConfBaseException)) as info:
        compose_cfg("jobs=two")
    assert one_line_error(info.value, RECIPES).startswith("jobs: Value 'two' of type 'str' could not be converted to Integer")
    assert compose_cfg().jobs is None and compose_cfg("jobs=3").jobs == 3


def test_jobs_changes_no_step_and_no_key(compose_cfg):
    from tfbuild.resolver import resolve

    one, many = (resolve(compose_cfg("recipe=digits_all", f"jobs={n}")).plan for n in (1, 8))
    assert one == many


@pytest.mark.parametrize("slots", [1, 3])
def test_a_step_another_tfbuild_is_building_waits_without_holding_up_the_rest(tmp_path, runs, slots):
    import threading
    import time

    from tfbuild.runner import step_material
    from tfbuild.step_job import output_records

    cache = Cache(tmp_path / "cache")
    kinds = {"write": WriteStep("write", runs)}
    steps = [step("data"), step("train", {"data": "data"}), step("other", text="independent")]
    plan = make_plan(steps)
    key = run_plan(plan, cache, kinds, dry_run=True).steps[0].key
    events, results = Events(), []
    with cache.locked(key):  # another tfbuild is building `data`
        walk = threading.Thread(target=lambda: results.append(
            run_plan(plan, cache, kinds, scope="recipe", reporter=events, workers=ThreadExecutor(slots) if slots > 1 else None)))
        walk.start()
        deadline = time.monotonic() + 30
        while not {("wait", "data"), ("end", "other")} <= set(events.log) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("end", "other") in events.log, "the rest went on while data waited"
        tmp = cache.begin(key)  # ...and commits it
        (tmp / "out" / "data.txt").write_text("data")
        spec = plan.step("data")
        cache.commit(tmp, key, {"key": key, "name": "data", "material": step_material(spec, kinds["write"], {}, cache.state.digest),
                                "info": {}, "seconds": 0.0, "outputs": output_records(spec, tmp), "created": "now",
                                "discovered": {"read": {}, "absent": []}})  # fmt: skip
    walk.join(30)
    (result,) = results
    assert summary(result)[0] == ("data", CACHED, "built meanwhile by another tfbuild", None)
    assert [r.status for r in result.steps[1:]] == [BUILT, BUILT] and runs["data"] == 0
