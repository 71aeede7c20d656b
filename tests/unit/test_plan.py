import pytest

from tfbuild.errors import PlanError
from tfbuild.plan import make_plan

from tests.fakes import step


def test_orders_producers_before_consumers_and_keeps_declaration_order_otherwise():
    plan = make_plan([step("c", {"x": "b"}), step("a"), step("b", {"x": "a"}), step("d", {"x": "a"})])
    assert [s.name for s in plan.steps] == ["a", "b", "d", "c"]


def test_missing_input_names_the_step_and_the_artifact():
    with pytest.raises(PlanError, match="step 'b' needs artifact 'nowhere'"):
        make_plan([step("a"), step("b", {"x": "nowhere"})])


def test_duplicate_output_names_both_producers():
    twin = step("a")
    other = type(twin)(name="b", kind="write", outputs=twin.outputs)
    with pytest.raises(PlanError, match="produced by both 'a' and 'b'"):
        make_plan([twin, other])


def test_cycle_names_the_steps():
    with pytest.raises(PlanError, match="cycle: .*a.*b"):
        make_plan([step("a", {"x": "b"}), step("b", {"x": "a"})])


def test_duplicate_step_names():
    with pytest.raises(PlanError, match="two steps are named 'a'"):
        make_plan([step("a"), step("a", text="other")])


def test_two_steps_publishing_to_the_same_path():
    with pytest.raises(PlanError, match="steps 'a' and 'b' both publish 'a.txt'"):
        a = step("a", publish=True)
        b = type(a)(name="b", kind="write", outputs=(type(a.outputs[0])("out", "b", "b.txt", publish="a.txt"),))
        make_plan([a, b])
