"""A sweep job's exit code, as its folder keeps it for launchers that run jobs elsewhere, and
as the sweep report reads it."""

from __future__ import annotations

import json

from tfbuild.job_outcome import EXIT_CODE, read_exit_code, record_exit_code
from tfbuild.run_folder import remove_unused_sweep_dir
from tfbuild.sweep_report import collect, write_sweep_report


def test_a_recorded_code_is_read_back_and_a_missing_one_is_none(tmp_path):
    record_exit_code(tmp_path / "0", 1)
    assert read_exit_code(tmp_path / "0") == 1
    assert read_exit_code(tmp_path / "1") is None
    assert [p.name for p in (tmp_path / "0").iterdir()] == [EXIT_CODE], "no temporary file left beside it"


def test_a_failed_job_whose_folder_was_removed_gets_it_back_a_good_one_does_not(tmp_path):
    record_exit_code(tmp_path / "3", 2)  # a config error: the build removed its empty folder
    assert read_exit_code(tmp_path / "3") == 2
    record_exit_code(tmp_path / "4", 0)  # a dry run: nothing to keep
    assert not (tmp_path / "4").exists()


def job(sweep, number: int, status: str | None, code: int | None) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- export.tflite.quantization=v{number}\n")
    if status is not None:
        (folder / "build.json").write_text(json.dumps({"status": status}))
    if code is not None:
        record_exit_code(folder, code)


def test_the_sweep_report_gives_each_job_its_exit_code(tmp_path):
    job(tmp_path, 0, "succeeded", 0)
    job(tmp_path, 1, "failed", 1)
    job(tmp_path, 2, None, 2)  # refused before building
    job(tmp_path, 3, "failed", None)  # its process died before it could say
    job(tmp_path, 4, None, None)
    jobs, _ = collect(tmp_path)
    assert [(j["status"], j["exit_code"]) for j in jobs] == [
        ("succeeded", 0), ("failed", 1), ("not built", 2), ("failed", 1), ("not built", 1)]
    write_sweep_report(tmp_path)
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "- job 0: `export.tflite.quantization=v0` — succeeded\n" in markdown
    assert "- job 2: `export.tflite.quantization=v2` — not built (exit 2)\n" in markdown
    assert "not built (exit 2)</span>" in (tmp_path / "sweep_report.html").read_text()
    assert [j["exit_code"] for j in json.loads((tmp_path / "sweep_report.json").read_text())["jobs"]] == [0, 1, 2, 1, 1]


def test_a_sweep_folder_no_job_started_in_is_removed_one_with_jobs_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    unused = tmp_path / "outputs" / "sweeps" / "a"
    unused.mkdir(parents=True)
    (unused / "multirun.yaml").write_text("{}\n")
    remove_unused_sweep_dir(unused)
    assert list(tmp_path.iterdir()) == [], "with the empty folders above it"
    used = tmp_path / "sweeps" / "b"
    job(used, 0, "succeeded", 0)
    remove_unused_sweep_dir(used)
    assert (used / "0" / "build.json").is_file()
