"""The session's one real build of everything (`recipe=digits_all`, shrunk), shared by the
integration tests; tests that change something build into a copy of its cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tfbuild.cache import Cache
from tfbuild.discovered import AUDIT_LOG
from tfbuild.resolver import resolve
from tfbuild.runner import StepResult, run_plan
from tfbuild.steps import REGISTRY

from tests.conftest import TINY
from tests import sftp_server as sftp


@pytest.fixture(scope="session")
def built(compose_cfg, tmp_path_factory):
    """(root, cfg, result): every TFLite and TF.js variant, each verified; run folder root/run."""
    root = tmp_path_factory.mktemp("chain")
    cfg = compose_cfg("recipe=digits_all", *TINY)
    # Every step kind logs what it read of the project (test_discovered_inputs checks it).
    with pytest.MonkeyPatch.context() as env:
        env.setenv(AUDIT_LOG, str(root / "audit.log"))
        result = run_plan(resolve(cfg).plan, Cache(root / "cache"), REGISTRY, run_dir=root / "run", scope="digits")
    assert result.failed is None, result.failed and result.failed.error
    return root, cfg, result


def step_result(result, name: str) -> StepResult:
    return next(r for r in result.steps if r.spec.name == name)


def info(result, name: str) -> dict:
    return step_result(result, name).info


def cache_copy(root: Path, tmp_path: Path) -> Cache:
    """A private copy of the shared build's cache: reuse its steps without changing it."""
    shutil.copytree(root / "cache", tmp_path / "cache")
    return Cache(tmp_path / "cache")


def require_browser(problem: str | None) -> None:
    """Chromium (and Node, which drives it) are there; else skip with the reason, or fail
    when CI is set: CI must run the browser tests (`.ci/run` installs Chromium)."""
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def sftp_server():
    """A real SFTP server (Debian's sshd) on 127.0.0.1 for the session: tests.sftp_server.SFTPServer.
    `url()` makes a fresh remote folder; `env` (FSSPEC_SFTP) configures fsspec in a subprocess,
    `configured()` in this process. Skips without sshd, or fails when CI is set."""
    problem = sftp.sshd_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the remote-cache tests: {problem}")
        pytest.skip(problem)
    with sftp.sftp_server() as server:
        yield server
