"""Bounded inputs against the real decoders and the real tool: image bombs refused before
TensorFlow decodes them, and data files, data.spec shapes and sweeps that state sizes past
their limits refused with one line, exit 2, nothing cached."""

from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_tfbuild
from tests.integration.test_cli import WITH_IMPORT_PROBE, assert_refused
from tests.unit.test_bounded_inputs import gif, npy, npz_of, png, saved

# A bomb over the default data.max_pixels (2**26): 81 million pixels from a 79 KB file.
BOMB = (9000, 9000)


@functools.lru_cache(maxsize=1)
def png_bomb() -> bytes:
    return png(*BOMB, rows=True)


def tf_jpeg(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header then says width x height."""
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()
    content = bytearray(tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy())
    sof = content.index(b"\xff\xc0")
    struct.pack_into(">HH", content, sof + 5, height, width)
    return bytes(content)


def bmp(width: int, height: int) -> bytes:
    stride = (width * 3 + 3) // 4 * 4
    pixels = b"\x10" * stride * height
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + info + pixels


def image_folder(root: Path, name: str, content: bytes) -> Path:
    for path, data in {"a/ok.png": png(4, 4, rows=True), f"b/{name}": content, "b/fine.png": png(6, 2, rows=True)}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


@pytest.mark.parametrize(
    "name, make, params, expected",
    [
        ("bomb.png", png_bomb, {}, "is 9000 x 9000 pixels (81,000,000 pixels to decode), over data.max_pixels=67,108,864"),
        ("bomb.jpg", lambda: tf_jpeg(*BOMB), {}, "is 9000 x 9000 pixels (81,000,000 pixels to decode)"),
        ("frames.gif", lambda: gif(1000, 1000, [(1000, 1000)] * 100), {}, "is 1000 x 1000 pixels x 100 frames (100,000,000 pixels"),
        ("wide.gif", lambda: gif(2, 2, [(65535, 65535)]), {}, "is 2 x 2 pixels x 1 frame (4,294,836,225 pixels"),
        ("big.bmp", lambda: bmp(40, 30), {"max_pixels": 1000}, "is 40 x 30 pixels (1,200 pixels to decode), over data.max_pixels=1,000"),
        ("named.png", lambda: tf_jpeg(*BOMB), {}, "is 9000 x 9000 pixels"),  # told apart by content, not by name
    ],
)
def test_image_bombs_are_refused_before_they_are_decoded(tmp_path, name, make, params, expected):
    from tfbuild.datasets.sources import images

    root = image_folder(tmp_path / "imgs", name, make())
    assert (root / "b" / name).stat().st_size < 200_000
    data = images.read({"image_size": [4, 4], "color": "rgb", **params}, {"source": root})
    with pytest.raises(Exception) as info:
        list(data.chunks())
    assert type(info.value).__name__ == "DataError"
    assert str(info.value).startswith(f"data.path {root}: b/{name} {expected}"), str(info.value)
    # Under the limit, the same folder decodes.
    if params:
        raised = images.read({"image_size": [4, 4], "color": "rgb", "max_pixels": 1200}, {"source": root})
        assert np.concatenate([c["inputs"] for c in raised.chunks()]).shape == (3, 4, 4, 3)


def _bad_files(root: Path) -> None:
    image_folder(root / "pics", "bomb.png", png_bomb())
    for i in range(8):  # enough samples for a split of two classes
        (root / "pics" / "ab"[i % 2] / f"{i}.png").write_bytes(png(4, 4, rows=True))
    npz_of(root / "lies.npz", {"x": npy((10**10, 4)), "y": saved(np.arange(60) % 3)})
    (root / "t.tfrecord").write_bytes(b"")


COMMON = ["verify.enabled=false", "benchmark.enabled=false"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data=images", "data.path=pics", "data.image_size=[8,8]", "model=cnn"],
         "step 'data': data.path {cwd}/pics: b/bomb.png is 9000 x 9000 pixels (81,000,000 pixels to decode), over data.max_pixels=67,108,864"),
        (["data=npz", "data.path=lies.npz", "model=mlp"],
         "step 'data': data.path {cwd}/lies.npz: array 'x' claims shape (10000000000, 4) of float64 (320,000,000,000 bytes)"),
        (["data=tfrecord", "data.path=t.tfrecord", "data.label=y", "model=mlp",
          "data.spec.x={dtype: float32, shape: [3000000000]}", "data.spec.y={dtype: int64, shape: []}"],
         "data.spec.x.shape: [3000000000] is 3,000,000,000 values per sample, over tfbuild's limit of 2,147,483,647"),
        (["data=images", "data.path=pics", "data.image_size=[8,8]", "model=cnn", "data.max_pixels=0"],
         "data.max_pixels must be a positive number of pixels, got 0"),
    ],
)
def test_data_that_states_sizes_past_its_limits_is_one_line_exit_2_and_caches_nothing(tmp_path, args, expected):
    _bad_files(tmp_path)
    result = run_tfbuild(*args, *COMMON, cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert_refused(result, expected.format(cwd=tmp_path), tmp_path)
    cache = tmp_path / "outputs" / "cache"
    assert not list((cache / "entries").glob("*/*")) and not list((cache / "tmp").glob("*"))


# A tfbuild that may not take more than 3 GiB of address space: a sweep that is expanded
# (10**8 jobs' overrides) runs out of it in seconds instead of filling the machine.
BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from tfbuild.cli import main
sys.argv = ["tfbuild", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train.seed=range(0,10000)", "train.epochs=range(1,10001)"],
         "this sweep would run 100,000,000 jobs (train.seed=range(0,10000) train.epochs=range(1,10001)), over "
         "sweep.max_jobs=1,000; sweep fewer values, or raise sweep.max_jobs"),
        (["train.seed=range(0,1001)"], "this sweep would run 1,001 jobs (train.seed=range(0,1001)), over sweep.max_jobs=1,000"),
        (["recipe=glob(digits*)", "train.seed=range(0,200)", "sweep.max_jobs=1500"],  # 9 recipes x 200 seeds
         "this sweep would run 1,800 jobs (recipe=glob(digits*) train.seed=range(0,200)), over sweep.max_jobs=1,500"),
    ],
)
def test_sweeps_past_max_jobs_are_refused_before_they_are_expanded(tmp_path, args, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    result = subprocess.run([sys.executable, "-c", BOUNDED, "-m", *args, "dry_run=true"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"tfbuild: error: {expected}"), result.stderr
    assert not (tmp_path / "outputs").exists(), "no sweep folder, no job folder"
