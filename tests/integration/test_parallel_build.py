"""Real builds with jobs=2 (worker processes, TensorFlow in each): the same bytes as jobs=1,
nothing started for a no-op, and no browser left behind by a worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild
from tests.integration.conftest import require_browser

NOOP_PROBE = """
import sys
from tfbuild import worker_pool
spawned = []
real = worker_pool.WorkerPool._spawn
worker_pool.WorkerPool._spawn = lambda self, quiet: spawned.append(1) or real(self, quiet)
from tfbuild.cli import main
sys.argv = ['tfbuild', *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print('TF_IMPORTED', 'tensorflow' in sys.modules, 'WORKERS', len(spawned))
"""


def test_a_sweep_shares_its_workers(tmp_path):
    done = run_tfbuild("-m", "recipe=digits", *TINY, "jobs=2", "benchmark.enabled=false",
                       "export.tflite.quantization=float,dynamic", cwd=tmp_path, python_code=NOOP_PROBE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "WORKERS 2" in done.stdout, "two jobs, one pair of workers (TensorFlow imported once a worker)"
    assert len(list((tmp_path / "outputs" / "sweeps").glob("*/*/build.json"))) == 2


def artifacts(folder: Path, recipe: str) -> dict[str, str]:
    (record,) = [p for p in (folder / "outputs" / "runs" / recipe).glob("*/build.json") if not p.parent.is_symlink()]
    return {a["name"]: a["sha256"] for a in json.loads(record.read_text())["artifacts"]}


def test_two_jobs_make_the_same_bytes_as_one_and_a_no_op_starts_nothing(tmp_path):
    args = ["recipe=digits", *TINY, "export.tflite.quantization=[float,int8]"]
    for jobs in (1, 2):
        (tmp_path / f"jobs{jobs}").mkdir()
        done = run_tfbuild(*args, f"jobs={jobs}", cwd=tmp_path / f"jobs{jobs}", check=True)
        assert "built in" in done.stdout
    one, two = artifacts(tmp_path / "jobs1", "digits"), artifacts(tmp_path / "jobs2", "digits")
    assert set(one) == {"saved_model", "tflite/float", "tflite/int8"}
    assert two == one, "jobs=2 made other bytes than jobs=1"

    again = run_tfbuild(*args, "jobs=2", cwd=tmp_path / "jobs2", python_code=NOOP_PROBE, check=True)
    assert "TF_IMPORTED False WORKERS 0" in again.stdout, again.stdout


def test_a_failed_step_in_a_worker_is_one_line_and_the_traceback_is_in_the_log(tmp_path):
    # The float TFLite held to no difference at all: its verify step fails, in a worker.
    done = run_tfbuild("recipe=digits", *TINY, "jobs=2", "benchmark.enabled=false", "export.tflite.quantization=float",
                       "verify.tolerances.tflite.float.max_abs_diff=0", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("tfbuild: error:")]
    assert line.startswith("tfbuild: error: step 'verify[tflite/float]' failed: VerificationFailed: tflite/float does not match the SavedModel")
    (log,) = [p for p in (tmp_path / "outputs" / "runs" / "digits").glob("*/build.log") if not p.parent.is_symlink()]
    assert "Traceback (most recent call last)" in log.read_text()


def test_workers_leave_no_chromium_behind(tmp_path):
    from tfbuild.runtimes.chromium import chromium_problem

    require_browser(chromium_problem(None))
    # Each worker's browser profile is made under TMPDIR: a short one (Chromium's sockets
    # there must fit in 108 bytes), of this test's own, to find what is left by its name.
    scratch = Path(tempfile.mkdtemp(prefix="tfb-par-"))
    try:
        done = run_tfbuild("recipe=digits_browser", *TINY, "jobs=2", "benchmark.enabled=false",
                           cwd=tmp_path, env={"TMPDIR": str(scratch)})  # fmt: skip
        assert done.returncode == 0, done.stderr
        left = subprocess.run(["pgrep", "-af", str(scratch)], capture_output=True, text=True).stdout
        assert left == "", f"processes left behind:\n{left}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("recipe", ["digits_all"])
def test_two_jobs_make_the_same_bytes_as_one_for_every_format(tmp_path, recipe):
    args = [f"recipe={recipe}", *TINY, "benchmark.enabled=false"]
    for jobs in (1, 2):
        (tmp_path / f"jobs{jobs}").mkdir()
        run_tfbuild(*args, f"jobs={jobs}", cwd=tmp_path / f"jobs{jobs}", check=True)
    one, two = artifacts(tmp_path / "jobs1", recipe), artifacts(tmp_path / "jobs2", recipe)
    assert len(one) == 10 and two == one
