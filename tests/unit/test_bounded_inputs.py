"""Bounded inputs: sizes a file or a key states are checked before anything is allocated or
run (image headers, .npz headers, data.spec, float_layers patterns, sweeps). No TensorFlow:
the decoding side is in tests/integration/test_bounded_sources.py."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tfbuild.datasets import limits
from tfbuild.datasets.image_headers import DamagedHeader, decoded_pixels, describe
from tfbuild.datasets.sources import npz as npz_source
from tfbuild.datasets.sources import tfrecord as tfrecord_source
from tfbuild.errors import ConfigError, DataError
from tfbuild.formats.tflite.layers import QuantizedOp, matching_ops
from tfbuild.formats.tflite.patterns import compile_pattern
from tfbuild.sweep_limit import count_jobs

# --- image headers ------------------------------------------------------------------------


def png(width: int, height: int, rows: bool = False) -> bytes:
    """A grayscale PNG of zeros; with `rows`, every row compressed in (a real bomb), else the
    header alone."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if not rows:
        return b"\x89PNG\r\n\x1a\n" + ihdr
    squeeze = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, junk: bytes = b"") -> bytes:
    """A JPEG's markers up to its first scan: APP0, a comment, fill bytes, then SOF0."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    comment = b"\xff\xfe" + struct.pack(">H", 7) + b"hello"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + comment + junk + b"\xff\xff" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"


def gif(width: int, height: int, frames: list[tuple[int, int]]) -> bytes:
    """A GIF of `frames` (width, height), each with one pixel's worth of data."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    control = b"!\xf9\x04\x00\x00\x00\x00\x00"  # a graphic control extension: skipped over
    body = b"".join(control + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02D\x01\x00" for w, h in frames)
    return head + body + b";"


def bmp(width: int, height: int) -> bytes:
    stride = (width * 3 + 3) // 4 * 4
    pixels = b"\0" * stride * abs(height)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + info + pixels


@pytest.mark.parametrize(
    "data, pixels, shown",
    [
        (png(3, 5), 15, "3 x 5 pixels"),
        (png(70_000, 70_000), 4_900_000_000, "70000 x 70000 pixels"),
        (jpeg(640, 480), 307_200, "640 x 480 pixels"),
        (jpeg(65_000, 65_000, junk=b"garbage"), 4_225_000_000, "65000 x 65000 pixels"),  # libjpeg skips junk too
        (gif(10, 20, [(10, 20)]), 200, "10 x 20 pixels x 1 frame"),
        (gif(100, 100, [(100, 100)] * 300), 3_000_000, "100 x 100 pixels x 300 frames"),  # every frame is read
        (gif(1, 1, [(60_000, 60_000)]), 3_600_000_000, "1 x 1 pixels x 1 frame"),  # a frame larger than its screen
        (bmp(7, -9), 63, "7 x 9 pixels"),  # top-down rows
        (b"not an image at all", None, "of unreadable size"),  # TensorFlow refuses it without decoding
    ],
)
def test_image_headers_state_what_decoding_would_allocate(data, pixels, shown):
    assert decoded_pixels(data) == pixels
    assert describe(data) == shown


@pytest.mark.parametrize(
    "data, reason",
    [
        (png(3, 5)[:20], "its header is cut short"),
        (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIDAT" + b"\0" * 17, "its first chunk is not IHDR"),
        (b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", "it has no frame header"),  # a scan before any SOF
        (jpeg(640, 0), "its frame header gives no height"),
        (jpeg(640, 480)[:30], "its header is cut short"),
        (b"BM\0\0", "its header is cut short"),
    ],
)
def test_damaged_image_headers_are_named(data, reason):
    with pytest.raises(DamagedHeader, match=f"^{reason}$"):
        decoded_pixels(data)


# --- npz headers --------------------------------------------------------------------------


def npy(shape: tuple[int, ...], descr: str = "<f8", data: bytes = b"\0" * 64, fortran: bool = False) -> bytes:
    """A .npy whose header says `shape` whatever `data` holds."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return out.getvalue() + data


def npz_of(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> dict[str, Path]:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(f"{name}.npy", content)
    return {"source": path}


def with_stated_size(path: Path, member: str, size: int) -> None:
    """Rewrite the zip's central directory so that `member` claims `size` bytes uncompressed."""
    content = bytearray(path.read_bytes())
    entry = content.index(b"PK\x01\x02")
    while content[entry + 46 : entry + 46 + len(member)] != member.encode():
        entry = content.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", content, entry + 24, size)
    path.write_bytes(bytes(content))


Y = np.arange(300) % 3


def saved(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


class Opens:
    """Pickled, it opens (creates) a file when unpickled: proof that nothing was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize(
    "members, stated, expected",
    [
        # Shapes that claim more than the member holds.
        ({"x": npy((10**10, 3)), "y": saved(Y)}, None,
         "array 'x' claims shape (10000000000, 3) of float64 (240,000,000,000 bytes), but its member holds at most 64"),
        ({"x": npy((300, 3)), "y": npy((300,), "<i8", b"")}, None,
         "array 'x' claims shape (300, 3) of float64 (7,200 bytes), but its member holds at most 64"),
        ({"x": npy((2**62, 2**62)), "y": saved(Y)}, None, "array 'x' claims shape (4611686018427387904, 4611686018427387904)"),
        ({"x": npy((300, 3), fortran=True), "y": saved(Y)}, None, "array 'x' claims shape (300, 3) of float64"),
        # Negative sizes.
        ({"x": npy((-1, 3)), "y": saved(Y)}, None, "array 'x' has a negative size in its shape (-1, 3); the file is damaged"),
        ({"x": npy((300, -5)), "y": saved(Y)}, None, "array 'x' has a negative size in its shape (300, -5)"),
        # A zip directory that states a huge member the deflated bytes could never expand to.
        ({"x": saved(np.zeros((300, 3))), "y": npy((2**28,), "<i8")}, ("y", 2**32 - 1),
         "array 'y' claims shape (268435456,) of int64 (2,147,483,648 bytes), but its member holds at most"),
    ],
)
def test_npz_headers_that_claim_more_than_the_file_holds_are_refused_before_allocating(tmp_path, members, stated, expected):
    paths = npz_of(tmp_path / "d.npz", members, zipfile.ZIP_DEFLATED if stated else zipfile.ZIP_STORED)
    if stated:
        with_stated_size(paths["source"], f"{stated[0]}.npy", stated[1])
    with pytest.raises(DataError) as info:
        list(npz_source.read({}, paths).chunks())
    assert str(info.value).startswith(f"data.path {paths['source']}: {expected}")
    assert "\n" not in str(info.value)


def test_npz_arrays_of_python_objects_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    hostile = np.array([Opens(str(marker))] * 300, dtype=object)
    for name, arrays in {"as input": {"x": hostile, "y": Y}, "as label": {"x": np.zeros((300, 2)), "y": hostile}}.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(DataError, match=r"holds Python objects \(dtype object\); save numeric arrays$"):
            list(npz_source.read({}, {"source": path}).chunks())
    assert not marker.exists()


def test_npz_labels_and_chunks_must_fit_the_memory_available(tmp_path, monkeypatch):
    """A well-formed file whose labels expand hugely (zeros deflate 1000-fold): refused when
    they would not fit; read when they do."""
    paths = npz_of(tmp_path / "d.npz", {"x": saved(np.zeros((2_000_000, 1), np.float32)), "y": saved(np.zeros(2_000_000, np.int64))},
                   zipfile.ZIP_DEFLATED)
    assert paths["source"].stat().st_size < 200_000
    monkeypatch.setattr(limits, "available_memory", lambda: 40_000_000)
    with pytest.raises(DataError) as info:
        npz_source.read({}, paths)
    assert str(info.value) == (f"data.path {paths['source']}: reading arrays y, x needs 30.5 MB of memory, more than half "
                               f"of the 38.1 MB available")
    monkeypatch.setattr(limits, "available_memory", lambda: 80_000_000)
    assert npz_source.read({}, paths).count == 2_000_000


# --- data.spec and generated inputs -------------------------------------------------------


@pytest.mark.parametrize(
    "shape, expected",
    [
        ([3_000_000_000], "data.spec.x.shape: [3000000000] is 3,000,000,000 values per sample, over tfbuild's limit of 2,147,483,647"),
        ([65536, 65536], "data.spec.x.shape: [65536, 65536] is 4,294,967,296 values per sample"),
        ([10**6, 10**6, 10**6], "data.spec.x.shape: [1000000, 1000000, 1000000] is 1,000,000,000,000,000,000 values"),
    ],
)
def test_data_spec_shapes_past_the_limit_are_refused(tmp_path, shape, expected):
    spec = {"x": {"dtype": "float32", "shape": shape}, "y": {"dtype": "int64", "shape": []}}
    with pytest.raises(DataError) as info:
        tfrecord_source.read({"spec": spec, "label": "y"}, {"source": tmp_path / "never-read.tfrecord"})
    assert str(info.value).startswith(expected)


def test_data_spec_shapes_must_fit_the_memory_available(tmp_path, monkeypatch):
    spec = {"x": {"dtype": "float32", "shape": [1000, 1000]}, "y": {"dtype": "int64", "shape": []}}
    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)
    with pytest.raises(DataError) as info:
        tfrecord_source.read({"spec": spec, "label": "y"}, {"source": tmp_path / "never-read.tfrecord"})
    assert str(info.value) == ("data.spec (y [], x [1000, 1000]), parsed 128 records at a time, needs 976.6 MB of memory, "
                               "more than half of the 1.0 GB available")


def test_generated_inputs_must_fit_the_memory_available(tmp_path):
    from tfbuild.datasets.generated import write_generated_split

    with pytest.raises(DataError, match=r"^data.source=none: the model's input 'big': \[3000000000\] is 3,000,000,000 values"):
        write_generated_split(tmp_path / "a", {"big": ([3_000_000_000], "float32")}, 4, 0)
    with pytest.raises(DataError, match=r"^data.source=none: drawing 128 samples of the model's inputs \(wide \[100000000\]\) "
                                        r"needs 143.1 GB of memory, more than half of the "):
        write_generated_split(tmp_path / "b", {"wide": ([100_000_000], "float32")}, 4, 0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_limits_read_the_memory_this_process_may_take():
    available = limits.available_memory()
    assert available is not None and 0 < available
    limits.check_memory(available // 10, "a tenth")
    with pytest.raises(DataError, match=r"^an array needs 1.0 KB of memory, more than half of the 1.0 KB available$"):
        limits.check_memory(1024, "an array", available=1024)


# --- float_layers patterns ----------------------------------------------------------------

OPS = [QuantizedOp("model/conv0/Relu;model/conv0/Conv2D", "CONV_2D", "conv0"),
       QuantizedOp("model/dense/MatMul;model/dense/BiasAdd", "FULLY_CONNECTED", "dense")]
# Each one backtracks exponentially in Python's re on a text of a's that does not match.
CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a*)*b", "(a|a?)+$", "((a+)+)+c", "(.*a){25}"]


MATCH_ALL = """
import sys
from tfbuild.errors import DataError
from tfbuild.formats.tflite.layers import QuantizedOp, matching_ops
names = ["a" * 40 + "!", "a" * 5000 + "b!", "model/" + "a" * 3000]
ops = [QuantizedOp(name, "CONV_2D", name) for name in names]
for pattern in sys.argv[1:]:
    try:
        matching_ops([pattern], ops, "export.tflite.int8.float_layers")
    except DataError:  # it matches nothing: fine, as long as it ends
        pass
print("done")
"""


def test_catastrophic_float_layers_patterns_finish():
    """Each pattern against long near-matches, in a child process with a deadline: with
    Python's re, the first would not return within the age of the universe."""
    try:
        result = subprocess.run([sys.executable, "-c", MATCH_ALL, *CATASTROPHIC], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a float_layers pattern was still matching after 60 s")
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr


@pytest.mark.parametrize(
    "pattern, picked",
    [
        ("dense", [OPS[1].name]),  # documented forms keep working: a layer, an op type, a pattern
        ("CONV_2D", [OPS[0].name]),
        ("conv[0-9]", [OPS[0].name]),
        ("(conv|dense).*", [OPS[0].name, OPS[1].name]),
        (r"model/dense/MatMul;model/dense/BiasAdd", [OPS[1].name]),
        (r"\w+0", [OPS[0].name]),
    ],
)
def test_float_layers_patterns_keep_their_regular_expression_meaning(pattern, picked):
    assert matching_ops([pattern], OPS, "export.tflite.int8.float_layers") == picked


@pytest.mark.parametrize(
    "pattern",
    ["conv(", r"(a)\1", "(?=conv)conv0", "(?<!x)dense", "a{2000}", "((((a{100}){100}){100}){100})"],
)
def test_patterns_re2_cannot_run_in_linear_time_are_refused_in_one_line(pattern):
    with pytest.raises(ConfigError) as info:
        compile_pattern(pattern)
    message = str(info.value)
    assert message.startswith(f"export.tflite.int8.float_layers: {pattern!r} is not a regular expression RE2 accepts (")
    assert "\n" not in message


# --- sweeps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, jobs",
    [
        (["train.seed=range(0,1000)"], 1000),  # the default limit, exactly
        (["train.seed=range(0,10)", "train.epochs=1,2,3", "recipe=digits"], 30),
        (["train.seed=range(0,10000)", "train.epochs=range(1,10001)"], 100_000_000),
        (["train.seed=range(0,1000000000)"], 10**9),
        (["train.seed=range(10,0,-3)"], 4),  # 10, 7, 4, 1
        (["train.seed=range(5,5)"], 0),
        (["train.learning_rate=range(0,1,0.1)"], 10),  # floats step as Hydra steps them
        (["train.learning_rate=range(0.5,0,-0.25)"], 2),
        (["train.seed=choice(1,2,3,4)", "train.epochs=shuffle(range(0,50))"], 200),
        (["train.seed=sort(3,1,2)"], 3),
        (["train.seed=1,2", "train.seed=5,6,7"], 3),  # a key's last override wins, as in the sweeper
        (["train.seed=3", "train.epochs=4"], 1),
    ],
)
def test_sweeps_are_counted_without_expanding_them(overrides, jobs):
    counted, sweeps = count_jobs(overrides)
    assert counted == jobs
    assert all(o in overrides and ("," in o or "(" in o) for o in sweeps)


def _composed(*overrides: str, params: dict[str, str] | None = None):
    """The config a multirun starts with; `params`: hydra.sweeper.params, as a recipe or
    conf/ file would set them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from tfbuild.recipes import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    if params:
        with open_dict(cfg):
            cfg.hydra.sweeper.params = params
    return cfg


@pytest.mark.parametrize(
    "overrides, params, refused",
    [
        ([], None, None),
        ([], {"train.seed": "range(0,1000)"}, None),  # the default limit is allowed
        ([], {"train.seed": "range(0,1001)"},
         "this sweep would run 1,001 jobs (train.seed=range(0,1001)), over sweep.max_jobs=1,000; sweep fewer values, "
         "or raise sweep.max_jobs"),
        (["sweep.max_jobs=1001"], {"train.seed": "range(0,1001)"}, None),
        (["sweep.max_jobs=6"], {"train.seed": "1,2,3", "train.epochs": "1,2,3"},
         "this sweep would run 9 jobs (train.seed=1,2,3 train.epochs=1,2,3), over sweep.max_jobs=6"),
        (["sweep.max_jobs=6", "train.epochs=4"], {"train.seed": "1,2,3", "train.epochs": "1,2,3"}, None),  # the command line wins
        (["sweep.max_jobs=-1"], None, "sweep.max_jobs must be a positive number of jobs, got -1"),
    ],
)
def test_sweep_max_jobs_counts_the_sweeper_params_and_is_read_from_the_config(overrides, params, refused):
    from tfbuild.sweep_limit import SweepRefused, check_sweep

    cfg = _composed(*overrides, params=params)
    if refused is None:
        check_sweep(cfg)
        return
    with pytest.raises(SweepRefused) as info:
        check_sweep(cfg)
    assert str(info.value).startswith(refused) and info.value.exit_code == 2


def test_a_split_larger_than_the_free_disk_is_refused_before_a_byte_is_written(tmp_path):
    from tfbuild.datasets.split import ArraySpec, SplitWriter

    free = limits.shutil.disk_usage(tmp_path).free
    samples = {"train": free // 4_000_000 + 1, "validation": 1, "test": 1}  # 1,000,000 float32 a sample
    with pytest.raises(DataError) as info:
        SplitWriter(tmp_path / "cache" / "split", {"x": ArraySpec((1000, 1000), "float32")}, {}, samples, source="data.path big.npz")
    assert str(info.value).startswith("data.path big.npz: the split needs ") and f"and {tmp_path} has " in str(info.value)
    assert list(tmp_path.iterdir()) == []
    SplitWriter(tmp_path / "small", {"x": ArraySpec((3,), "float32")}, {}, {"train": 5, "validation": 1, "test": 1}).close()
