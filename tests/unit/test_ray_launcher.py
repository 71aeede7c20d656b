"""The Ray launcher's pieces that need no cluster: a job's error line, the options a task
gets, an address where nothing listens."""

from __future__ import annotations

import socket

import pytest
from omegaconf import OmegaConf

pytest.importorskip("ray")

from tfbuild.errors import ConfigError  # noqa: E402
from tfbuild.ray_launcher import _check_reachable, _error_line, _remote_options  # noqa: E402


def test_a_jobs_line_carries_its_last_error_line():
    output = "table\ntfbuild: error: first\nmore\ntfbuild: error: gate failed: tflite/float\n"
    assert _error_line(output) == "gate failed: tflite/float"
    assert _error_line("all good\n") == ""


def test_the_callers_tfbuild_variables_go_with_each_task(monkeypatch):
    monkeypatch.setenv("TFBUILD_CHROMIUM", "/opt/chromium")
    remote = OmegaConf.create({"num_cpus": 2, "runtime_env": {"env_vars": {"A": "1"}}})
    options = _remote_options(remote)
    assert options["num_cpus"] == 2
    assert options["runtime_env"]["env_vars"] == {"TFBUILD_CHROMIUM": "/opt/chromium", "A": "1"}


def test_no_tfbuild_variables_no_runtime_env(monkeypatch):
    for name in [k for k in __import__("os").environ if k.startswith("TFBUILD_")]:
        monkeypatch.delenv(name)
    assert _remote_options(OmegaConf.create({})) == {}


def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:  # a port that was free a moment ago, and nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"^hydra.launcher.ray.init.address: no Ray cluster at '127.0.0.1:{port}'"):
        _check_reachable(f"127.0.0.1:{port}")
    for address in (None, "auto", "local", "ray://head:10001"):
        _check_reachable(address)  # Ray's own to resolve
