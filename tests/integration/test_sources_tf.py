"""Sources that decode with TensorFlow: image folders (streamed through tf.data), TFRecords,
and image-shape preprocessing. Real files written with TensorFlow in tmp_path, a few pixels
each."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tfbuild.datasets.preprocess import LUMA, apply_image_shape
from tfbuild.datasets.source import CHUNK
from tfbuild.datasets.sources import images as images_source
from tfbuild.datasets.sources import tfrecord as tfrecord_source
from tfbuild.errors import DataError
from tfbuild.tfenv import import_tensorflow

tf = import_tensorflow()

# The smallest GIF (1x1, one black pixel) and a 24-bit BMP writer: TensorFlow encodes only
# PNG and JPEG, and no imaging library is installed.
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def bmp(height: int, width: int, bgr: tuple[int, int, int]) -> bytes:
    stride = (width * 3 + 3) // 4 * 4
    pixels = b"".join(bytes(bgr) * width + b"\0" * (stride - width * 3) for _ in range(height))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(info) + len(pixels), 0, 0, 54) + info + pixels


def png(rgb: tuple[int, ...], size: tuple[int, int] = (3, 5)) -> bytes:
    return tf.io.encode_png(np.full((*size, len(rgb)), rgb, np.uint8)).numpy()


def jpeg(rgb: tuple[int, int, int]) -> bytes:
    return tf.io.encode_jpeg(np.full((8, 8, 3), rgb, np.uint8), quality=100).numpy()


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def everything(data) -> np.ndarray:
    return np.concatenate([c["inputs"] for c in data.chunks()])


# --- image folders ------------------------------------------------------------------------

def test_every_image_format_decodes_to_the_same_rule(tmp_path):
    root = write(tmp_path / "imgs", {
        "a/rgb.png": png((255, 0, 51)), "a/gray.png": png((102,)), "a/rgba.png": png((0, 255, 0, 7)),
        "a/graya.png": png((51, 200)), "b/photo.JPG": jpeg((0, 0, 255)), "b/bitmap.bmp": bmp(2, 3, (255, 0, 0)),
        "b/anim.gif": GIF, "b/.DS_Store": b"junk",
    })
    data = images_source.read({"image_size": [4, 6], "color": "rgb"}, {"source": root})
    x = everything(data)
    assert x.shape == (7, 4, 6, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert data.targets["label"].tolist() == [0, 0, 0, 0, 1, 1, 1]  # a/gray, a/graya, a/rgb, a/rgba, b/anim, ...
    pixel = {name: x[i, 0, 0] for i, name in enumerate(["gray", "graya", "rgb", "rgba", "gif", "bmp", "jpg"])}
    np.testing.assert_allclose(pixel["rgb"], [1, 0, 0.2], atol=1e-6)
    np.testing.assert_allclose(pixel["gray"], [0.4] * 3, atol=1e-6)  # one channel repeated
    np.testing.assert_allclose(pixel["graya"], [0.2] * 3, atol=1e-6)  # alpha dropped
    np.testing.assert_allclose(pixel["rgba"], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(pixel["bmp"], [0, 0, 1], atol=1e-6)  # BMP stores blue, green, red
    np.testing.assert_allclose(pixel["jpg"], [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(pixel["gif"], [0, 0, 0], atol=1e-6)

    gray = everything(images_source.read({"image_size": [4, 6], "color": "grayscale"}, {"source": root}))
    assert gray.shape == (7, 4, 6, 1)
    np.testing.assert_allclose(gray[:, 0, 0, 0], [0.4, 0.2, np.dot(LUMA, [1, 0, 0.2]), LUMA[1], 0, LUMA[2], LUMA[2]], atol=0.02)


def test_a_folder_streams_in_chunks_decoding_only_ahead_of_what_was_taken(tmp_path):
    n = 4 * CHUNK + 5
    root = write(tmp_path / "imgs", {f"{'ab'[i % 2]}/{i:04d}.png": png((i % 256,), (2, 2)) for i in range(n)})
    data = images_source.read({"image_size": [2, 2], "color": "grayscale"}, {"source": root})
    chunks = data.chunks()
    first = next(chunks)["inputs"]
    # The last chunk's files change after the first chunk is handed out: what comes out is
    # the new content, so the pipeline had not decoded them yet.
    _, files, _ = images_source.scan(root, "")
    for path in files[-5:]:
        path.write_bytes(png((255,), (2, 2)))
    rest = [c["inputs"] for c in chunks]
    assert [len(first)] + [len(c) for c in rest] == [CHUNK] * 4 + [5]
    assert (rest[-1] == 1.0).all()
    # Sorted file order, and the same bytes on every pass.
    np.testing.assert_allclose(first[:3, 0, 0, 0], np.array([0, 2, 4]) / 255, atol=1e-6)  # a/0000, a/0002, ...
    again = everything(data)
    assert again.tobytes() == np.concatenate([first, *rest]).tobytes() == everything(data).tobytes()


def test_an_undecodable_image_is_named(tmp_path):
    root = write(tmp_path / "imgs", {"a/ok.png": png((1, 2, 3)), "b/broken.png": b"not an image", "b/ok.png": png((9, 9, 9))})
    data = images_source.read({"image_size": [4, 4], "color": "rgb"}, {"source": root})
    with pytest.raises(DataError) as info:
        everything(data)
    assert str(info.value) == (f"data.path {root}: b/broken.png cannot be decoded as an image "
                               f"(Unknown image file format. One of JPEG, PNG, GIF, BMP required.)")


# --- TFRecords ----------------------------------------------------------------------------

def example(i: int) -> bytes:
    def floats(*v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def ints(*v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    return tf.train.Example(features=tf.train.Features(feature={
        "pixels": floats(*(i + k / 10 for k in range(6))), "age": floats(i / 2), "kind": ints(i % 3),
        "price": floats(i * 1.5, -i),
    })).SerializeToString()


SPEC = {"pixels": {"dtype": "float32", "shape": [2, 3]}, "age": {"dtype": "float32", "shape": []},
        "kind": {"dtype": "int64", "shape": []}, "price": {"dtype": "float32", "shape": [2]}}


def records(path: Path, items: list[bytes], gzip: bool = False) -> Path:
    with tf.io.TFRecordWriter(str(path), options="GZIP" if gzip else None) as writer:
        for item in items:
            writer.write(item)
    return path


@pytest.fixture
def shards(tmp_path) -> dict[str, Path]:
    """300 records in three files, given as a glob gives them."""
    return {f"source.{k}": records(tmp_path / f"part-{k}.tfrecord", [example(100 * k + i) for i in range(100)])
            for k in range(3)}


def test_tfrecord_labels_and_inputs_by_name(shards):
    data = tfrecord_source.read({"spec": SPEC, "label": ["kind", "price"], "path": "part-*.tfrecord"}, shards)
    assert data.count == 300 and data.description == "data.path part-*.tfrecord"
    assert {n: s.shape for n, s in data.inputs.items()} == {"pixels": (2, 3), "age": (1,)}
    np.testing.assert_array_equal(data.targets["kind"], np.arange(300) % 3)
    assert data.targets["kind"].dtype == np.int64 and data.targets["price"].shape == (300, 2)
    chunks = list(data.chunks())
    assert [len(c["age"]) for c in chunks] == [CHUNK, CHUNK, 300 - 2 * CHUNK]
    age = np.concatenate([c["age"] for c in chunks])
    np.testing.assert_allclose(age[:, 0], np.arange(300) / 2)
    pixels = np.concatenate([c["pixels"] for c in chunks])
    np.testing.assert_allclose(pixels[201], [[201, 201.1, 201.2], [201.3, 201.4, 201.5]], rtol=1e-6)
    assert pixels.tobytes() == np.concatenate([c["pixels"] for c in data.chunks()]).tobytes()


def test_tfrecord_feature_lists_and_dicts(shards, tmp_path):
    one = tfrecord_source.read({"spec": SPEC, "label": "kind", "features": ["price"]}, shards)
    assert list(one.inputs) == ["inputs"] and one.inputs["inputs"].shape == (2,)
    joined = tfrecord_source.read({"spec": SPEC, "label": "kind", "features": {"tab": ["age", "price"]}}, shards)
    assert joined.inputs["tab"].shape == (3,)
    np.testing.assert_allclose(next(joined.chunks())["tab"][4], [2, 6, -4])
    packed = {"source": records(tmp_path / "p.tfrecord.gz", [example(i) for i in range(3)], gzip=True)}
    assert tfrecord_source.read({"spec": SPEC, "label": "kind"}, packed).count == 3


def bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "bad.tfrecord"
    if kind == "truncated":
        whole = records(tmp_path / "whole.tfrecord", [example(i) for i in range(20)]).read_bytes()
        path.write_bytes(whole[: len(whole) * 3 // 4 + 20])  # inside record 15
    elif kind == "text":
        path.write_text("kind,price\n1,2\n")
    elif kind == "empty":
        records(path, [])
    elif kind == "foreign":
        records(path, [example(0), example(1), b"\x01\x02 not an Example"])
    elif kind == "missing":
        record = tf.train.Example(features=tf.train.Features(feature={}))
        records(path, [example(0), record.SerializeToString()])
    return path


@pytest.mark.parametrize(
    "kind, spec, expected",
    [
        ("truncated", SPEC, "record 15 cannot be read: the file is corrupt or not TFRecords (truncated record at "),
        ("text", SPEC, "record 0 cannot be read: the file is corrupt or not TFRecords ("),
        ("empty", SPEC, "holds no records"),
        ("foreign", SPEC, "record 2 does not parse as data.spec says (Could not parse example input, value: "),
        ("missing", SPEC, "record 1 does not parse as data.spec says (Feature: age (data type: float) is required but "
                          "could not be found.)"),
        ("ok", {**SPEC, "price": {"dtype": "float32", "shape": [3]}},
         "record 0 does not parse as data.spec says (Key: price, Index: 0. Number of float values != expected. "
         "Values size: 2 but output shape: [3])"),
        ("ok", {**SPEC, "kind": {"dtype": "float32", "shape": []}},
         "record 0 does not parse as data.spec says (Key: kind, Index: 0. Data types don't match. Data type: int64 but "
         "expected type: float)"),
    ],
)
def test_tfrecord_records_that_cannot_be_read(tmp_path, kind, spec, expected):
    path = bad_file(tmp_path, kind) if kind != "ok" else records(tmp_path / "ok.tfrecord", [example(i) for i in range(3)])
    with pytest.raises(DataError) as info:
        tfrecord_source.read({"spec": spec, "label": "kind"}, {"source": path})
    message = str(info.value)
    assert message.startswith(f"data.path {path}: {expected}") and "\n" not in message


def test_a_bad_record_in_the_second_file_of_a_glob_names_the_file(shards, tmp_path):
    shards["source.1"] = records(tmp_path / "part-1.tfrecord", [example(0), example(1), b"junk"])
    with pytest.raises(DataError) as info:
        tfrecord_source.read({"spec": SPEC, "label": "kind", "path": "part-*"}, shards)
    assert str(info.value).startswith(f"data.path part-*: record 2 of {shards['source.1']} does not parse as data.spec says")


# --- image-shape preprocessing ------------------------------------------------------------

def test_digits_become_mobilenet_sized_colour_images():
    rng = np.random.RandomState(0)
    digits = rng.rand(5, 8, 8, 1).astype(np.float32)
    out = apply_image_shape(digits, [32, 32], 3)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.float32
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    expected = tf.image.resize(digits, (32, 32), method="bilinear").numpy()[..., 0]
    np.testing.assert_array_equal(out[..., 0], expected)
    flat = apply_image_shape(rng.rand(2, 8, 8).astype(np.float64), [4, 4], None)  # (H, W) samples gain a channel
    assert flat.shape == (2, 4, 4, 1) and flat.dtype == np.float32


def test_colour_to_gray_and_nothing_asked():
    colour = np.full((2, 3, 3, 3), [1.0, 0.5, 0.0], np.float32)
    np.testing.assert_allclose(apply_image_shape(colour, None, 1), np.full((2, 3, 3, 1), LUMA[0] + LUMA[1] / 2), rtol=1e-6)
    assert apply_image_shape(colour, [3, 3], 3) is not None and apply_image_shape(colour, [3, 3], 3).tobytes() == colour.tobytes()
    with pytest.raises(DataError, match=r"^data.image_size: samples of shape \(13,\) are not images"):
        apply_image_shape(np.zeros((4, 13), np.float32), [32, 32], 3)
