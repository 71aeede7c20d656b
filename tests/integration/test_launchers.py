"""Sweeps whose jobs run elsewhere: as Ray tasks on a real two-node Ray cluster started here,
and as submitit jobs (its local executor: one process per job). Real TensorFlow, tiny
builds. Each launcher's second sweep reuses its first sweep's cache (training and exports
are cached; the gate is judged again), so only the first one trains."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild

pytestmark = pytest.mark.slow

VARIANTS = ("float", "dynamic", "fp16", "int8")
SWEEP = ["-m", "recipe=digits", *TINY, f"export.tflite.quantization={','.join(VARIANTS)}"]
# A size budget only the smaller variants meet (float: ~156 KB, fp16: ~80 KB, dynamic and
# int8: ~45 KB): a sweep that asks which quantizations fit, where two jobs fail their gate.
BUDGET = "gates.tflite.max_bytes=60000"


def needs(module: str) -> None:
    """The launcher's extra is installed; else skip, or fail on CI (the dev install has it)."""
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the launcher tests: {module} is not installed")
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A head and a worker node (one CPU each), started once for the session and ended after
    it: exactly their own processes (tests/ray_cluster.py)."""
    needs("ray")
    from tests.ray_cluster import LocalRayCluster

    with LocalRayCluster(tmp_path_factory.mktemp("ray_cluster")) as cluster:
        yield cluster


def sweep_outcome(cwd: Path) -> tuple[list[dict], list[dict]]:
    """(each job's build.json, sweep_report.json's jobs) of the newest sweep under `cwd`."""
    sweep = max((cwd / "outputs" / "sweeps").iterdir())
    builds = [json.loads((sweep / str(n) / "build.json").read_text()) for n in range(len(VARIANTS))]
    return builds, json.loads((sweep / "sweep_report.json").read_text())["jobs"]


def trained(builds: list[dict]) -> list[str]:
    return [next(s["status"] for s in b["steps"] if s["name"] == "train") for b in builds]


def assert_budget_failures(result, builds: list[dict], jobs: list[dict]) -> None:
    """float and fp16 fail their gate, exit 1 each; the command exits 1 and says which."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert [j["exit_code"] for j in jobs] == [1, 0, 1, 0]
    assert [b["status"] for b in builds] == ["failed", "succeeded", "failed", "succeeded"]
    assert set(trained(builds)) == {"cached"}, "the second sweep reused the first one's training"
    assert "4 jobs, 2 failed: job 0 (exit 1), job 2 (exit 1)" in result.stdout


def test_a_sweep_on_a_two_node_ray_cluster_trains_once(ray_cluster, tmp_path):
    address = f"hydra.launcher.ray.init.address={ray_cluster.address}"
    result = run_tfbuild(*SWEEP, "hydra/launcher=ray", address, cwd=tmp_path, check=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("ray: job ")]
    assert len(lines) == 4 and all(": ok after " in line for line in lines), result.stdout
    for variant in VARIANTS:  # each line names what its job swept, not the shared overrides
        assert any(f" export.tflite.quantization={variant}: ok" in line for line in lines)
    nodes = {re.search(r"on node (\w+)", line).group(1) for line in lines}
    assert nodes == {n[:8] for n in ray_cluster.node_ids()}, f"both of the cluster's nodes ran jobs: {lines}"
    assert result.stderr == "", "Ray's own messages stay off the user's terminal"
    builds, jobs = sweep_outcome(tmp_path)
    assert trained(builds).count("built") == 1, "one job trained; the others found it in the shared cache"
    assert [j["status"] for j in jobs] == ["succeeded"] * 4 and [j["exit_code"] for j in jobs] == [0] * 4
    # The jobs ran in the caller's folder, wherever their Ray workers started.
    assert (tmp_path / "outputs" / "cache").is_dir() and not (Path.cwd() / "outputs" / "sweeps").exists()

    failing = run_tfbuild(*SWEEP, BUDGET, "hydra/launcher=ray", address, cwd=tmp_path)
    assert_budget_failures(failing, *sweep_outcome(tmp_path))
    failed_line = next(line for line in failing.stdout.splitlines() if line.startswith("ray: job 0 "))
    assert "exit 1" in failed_line and "gate" in failed_line, "the job's line carries its error"
    job_log = (max((tmp_path / "outputs" / "sweeps").iterdir()) / "0" / "build.log").read_text()
    assert "what the job printed" in job_log and "tflite/float" in job_log, "and its folder all it printed"


def test_with_no_address_the_sweep_starts_ray_of_its_own(ray_cluster, tmp_path):
    """Even with a cluster running on this machine (the session's): `address: null` is a Ray
    started for the sweep, and gone after it."""
    result = run_tfbuild("-m", "recipe=digits", *TINY, "export.tflite.quantization=float,int8", "hydra/launcher=ray",
                         cwd=tmp_path, check=True)  # fmt: skip
    assert result.stdout.startswith("ray: 2 jobs on a Ray instance started here;"), result.stdout
    assert result.stdout.count(": ok after ") == 2 and result.stderr == ""
    nodes = set(re.findall(r"on node (\w+)", result.stdout))
    assert len(nodes) == 1 and not any(n.startswith(tuple(nodes)) for n in ray_cluster.node_ids()), "not the cluster's"
    builds = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "sweeps").glob("*/*/build.json")]
    assert trained(builds) == ["built", "cached"] or trained(builds) == ["cached", "built"]


def test_a_ray_cluster_that_is_not_there_is_one_line(tmp_path):
    needs("ray")
    result = run_tfbuild(*SWEEP, "hydra/launcher=ray", "hydra.launcher.ray.init.address=127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("tfbuild: error: hydra.launcher.ray.init.address: no Ray cluster at '127.0.0.1:9' "
                                    "(Connection refused)")  # fmt: skip
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "no sweep folder for a sweep that never started"


def test_a_sweep_with_the_submitit_local_launcher_trains_once(tmp_path):
    needs("submitit")
    # Four processes at once on a small machine: each builds its steps itself (README).
    local = ["hydra/launcher=submitit_local", "jobs=1"]
    run_tfbuild(*SWEEP, *local, cwd=tmp_path, check=True)
    builds, jobs = sweep_outcome(tmp_path)
    assert trained(builds).count("built") == 1
    assert [j["status"] for j in jobs] == ["succeeded"] * 4 and [j["exit_code"] for j in jobs] == [0] * 4
    sweep = max((tmp_path / "outputs" / "sweeps").iterdir())
    assert list(sweep.glob(".submitit/*/*_log.out")), "submitit's logs are in the sweep folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"], "nothing of submitit's beside it"

    failing = run_tfbuild(*SWEEP, BUDGET, *local, cwd=tmp_path)
    assert_budget_failures(failing, *sweep_outcome(tmp_path))
