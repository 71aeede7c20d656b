"""Run folders and pins as a user meets them through the real `tfbuild`: the user's files under
every format's folder name and a `latest` of theirs survive builds that succeed, fail and exit
2; a run folder or a pin another build holds refuses the second build on one line."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tfbuild.formats import FORMATS

from tests.conftest import TINY, hold_in_process, run_tfbuild

# Formats whose whole folder is not one artifact: the user's notes there survive a build that
# publishes into them. (saved_model/ and serving/ are artifacts themselves: see the refusal.)
TFLITE_ONLY = ["target.formats=[]", "export.formats=[tflite]", "export.tflite.quantization=[float]"]
BUILD = ["recipe=digits", *TINY, *TFLITE_ONLY]
USER_FILES = {f"{name}/notes.txt": f"my notes on {name}" for name in FORMATS} | {"serving/mine/model.txt": "mine"}


hold = hold_in_process


HOLD_RUN_FOLDER = ("import sys; from pathlib import Path; from tfbuild.plan import make_plan; "
                   "from tfbuild.run_folder import RunFolder; folder = RunFolder.open(Path(sys.argv[1]), make_plan([])); "
                   "print('held', flush=True); sys.stdin.read()")  # fmt: skip
HOLD_PIN = ("import sys; from pathlib import Path; from omegaconf import OmegaConf; from tfbuild.pins import check_new_pin; "
            "new_pin = check_new_pin(OmegaConf.create({'dry_run': False, 'pin_overwrite': False}), '1.0', 'digits', "
            "Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()")  # fmt: skip


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def run_beside(code: str, held: str, *args: str, cwd):
    """`tfbuild ARGS` while a real second process runs `code` and holds its lock on `held`."""
    holder = hold(code, held)
    try:
        return run_tfbuild(*args, cwd=cwd), holder
    finally:
        holder.communicate("", timeout=60)


def test_a_second_build_into_a_held_run_folder_is_refused_on_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tflite").mkdir()
    (run_dir / "tflite" / "notes.txt").write_text("mine")
    refused, holder = run_beside(HOLD_RUN_FOLDER, str(run_dir), "recipe=digits", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2
    assert one_line(refused) == (f"tfbuild: error: run folder: another tfbuild (pid {holder.pid}) is building into "
                                 f"{run_dir} (one build per run folder at a time); wait for it, or choose another "
                                 "folder with hydra.run.dir=FOLDER")  # fmt: skip
    assert (run_dir / "tflite" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "outputs" / "cache").exists() or not any((tmp_path / "outputs" / "cache").rglob("manifest.json"))


def test_a_second_writer_of_a_pin_is_refused_on_one_line(tmp_path):
    refused, holder = run_beside(HOLD_PIN, str(tmp_path / "recipes"), "recipe=digits", "pin=1.0", cwd=tmp_path)
    assert refused.returncode == 2
    assert one_line(refused) == (f"tfbuild: error: pin: another tfbuild (pid {holder.pid}) is writing "
                                 f"{tmp_path}/recipes/pinned/digits-1.0.yaml; a pin has one writer: wait for it (then "
                                 "pin_overwrite=true replaces it), or choose another version")  # fmt: skip
    assert not (tmp_path / "outputs" / "runs").exists() and not (tmp_path / "recipes").exists()


@pytest.mark.slow
def test_the_users_files_and_latest_survive_builds_that_succeed_fail_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    for rel, text in USER_FILES.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(text)
    latest = tmp_path / "outputs" / "runs" / "digits" / "latest"
    latest.parent.mkdir(parents=True)
    latest.write_text("my latest")
    rng = np.random.RandomState(0)
    x = rng.rand(60, 4).astype(np.float32)
    x[5, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(60) % 3)

    def kept() -> None:
        assert {rel: (run_dir / rel).read_text() for rel in USER_FILES} == USER_FILES
        assert latest.read_text() == "my latest"

    built = run_tfbuild(*BUILD, cwd=tmp_path, check=True)  # into outputs/runs/digits/TIME: `latest` is the user's
    assert " ".join(built.stdout.split()).count(f"{latest} is not tfbuild's link to the last run (yours?): left as it is") == 1
    run_tfbuild(*BUILD, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    kept()
    float_tflite = (run_dir / "tflite" / "model_float.tflite").read_bytes()
    failed = run_tfbuild(*BUILD, "gates.min_accuracy=1.0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert failed.returncode == 1 and "gate failed" in failed.stderr
    kept()
    refused = run_tfbuild("data=npz", "data.path=nan.npz", "model=mlp", *TFLITE_ONLY, f"hydra.run.dir={run_dir}",
                          cwd=tmp_path)  # the data step refuses its input: exit 2  # fmt: skip
    assert refused.returncode == 2 and "step 'data'" in one_line(refused)
    kept()
    assert (run_dir / "tflite" / "model_float.tflite").read_bytes() == float_tflite, "nothing cleared for a build that exits 2"
    in_the_way = run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=[float]", f"hydra.run.dir={run_dir}",
                             cwd=tmp_path)  # publishes saved_model/ too: the user's notes are in the way
    assert in_the_way.returncode == 2
    assert one_line(in_the_way) == ("tfbuild: error: run folder: 'saved_model' holds 'saved_model/notes.txt', which "
                                    "tfbuild did not write; tfbuild replaces only what it wrote: move it away, or "
                                    "choose another folder with hydra.run.dir=FOLDER")  # fmt: skip
    kept()
