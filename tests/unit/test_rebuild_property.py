"""Property: change one input of a random plan, and exactly the steps that depend on it re-run.

Plans are random DAGs of fake steps (each writes its `text` param and its inputs' contents),
so a change travels exactly along the edges; the runner must rebuild that set, no more (a
needless rebuild) and no less (a stale artifact served as current).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfbuild.cache import Cache
from tfbuild.plan import make_plan
from tfbuild.runner import BUILT, CACHED, run_plan

from tests.fakes import WriteStep, step


@st.composite
def plans(draw):
    """(edges: step i -> the earlier steps it reads, the step whose input changes)."""
    count = draw(st.integers(min_value=1, max_value=8))
    edges = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(count)]
    return edges, draw(st.integers(0, count - 1))


def build(edges, changed=None):
    return [
        step(f"s{i}", {f"in{j}": f"s{j}" for j in parents}, text="changed" if i == changed else f"step {i}")
        for i, parents in enumerate(edges)
    ]


def dependents(edges, start):
    found = {start}
    for i, parents in enumerate(edges):  # edges only point backwards: one pass in order suffices
        if found.intersection(parents):
            found.add(i)
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans())
def test_exactly_the_dependents_of_a_changed_input_rerun(tmp_path_factory, case):
    edges, changed = case
    cache = Cache(tmp_path_factory.mktemp("cache"))
    runs: Counter = Counter()
    registry = {"write": WriteStep("write", runs)}
    first = run_plan(make_plan(build(edges)), cache, registry, scope="p")
    assert {r.status for r in first.steps} == {BUILT}
    runs.clear()
    second = run_plan(make_plan(build(edges, changed)), cache, registry, scope="p")
    rebuilt = {int(r.spec.name[1:]) for r in second.steps if r.status == BUILT}
    assert rebuilt == dependents(edges, changed)
    assert {r.status for r in second.steps if int(r.spec.name[1:]) not in rebuilt} <= {CACHED}
    assert set(runs) == {f"s{i}" for i in rebuilt}
    cache.close()
