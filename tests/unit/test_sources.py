"""Data source readers that need no TensorFlow: scikit-learn's sets, .npz and CSV files, and
image-shape planning. Real files in tmp_path; each error is one line naming the file or key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbuild.datasets.preprocess import image_shape_after
from tfbuild.datasets.source import CHUNK
from tfbuild.datasets.sources import csv as csv_source
from tfbuild.datasets.sources import images as images_source
from tfbuild.datasets.sources import npz as npz_source
from tfbuild.datasets.sources import sklearn as sklearn_source
from tfbuild.datasets.sources import tfrecord as tfrecord_source
from tfbuild.errors import ConfigError, DataError


def stream(data) -> dict[str, np.ndarray]:
    """All chunks of a source joined, after checking each is a full CHUNK but the last."""
    chunks = list(data.chunks())
    assert [len(next(iter(c.values()))) for c in chunks[:-1]] == [CHUNK] * (len(chunks) - 1)
    assert all(set(c) == set(data.inputs) for c in chunks)
    joined = {name: np.concatenate([c[name] for c in chunks]) for name in data.inputs}
    for name, spec in data.inputs.items():
        assert joined[name].shape == (data.count, *spec.shape) and joined[name].dtype == np.float32
    return joined


# --- scikit-learn -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(sklearn_source.READERS))
def test_sklearn_sets_equal_what_scikit_learn_loads(name):
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    data = sklearn_source.read({"source": "sklearn", "name": name}, {})
    x = stream(data)["inputs"]
    expected = bunch.data / 16.0 if name == "digits" else bunch.data
    np.testing.assert_allclose(x.reshape(len(x), -1), expected.astype(np.float32), rtol=1e-6, atol=1e-9)
    targets = np.stack(list(data.targets.values()), axis=1)
    np.testing.assert_array_equal(targets, bunch.target.reshape(len(x), -1))
    if name in ("digits", "iris", "wine", "breast_cancer"):
        assert list(data.targets) == ["label"] and data.targets["label"].dtype == np.int64
        assert data.class_names["label"] == [str(n) for n in bunch.target_names]
    else:
        assert all(t.dtype == np.float32 and t.shape == (data.count,) for t in data.targets.values())
    assert data.images == (name == "digits") and data.description == f"sklearn {name}"


def test_sklearn_names_and_shapes():
    digits = sklearn_source.read({"name": "digits"}, {})
    assert (digits.count, digits.inputs["inputs"].shape) == (1797, (8, 8, 1))
    assert list(sklearn_source.read({"name": "diabetes"}, {}).targets) == ["progression"]
    linnerud = sklearn_source.read({"name": "linnerud"}, {})
    assert list(linnerud.targets) == ["Weight", "Waist", "Pulse"] and linnerud.inputs["inputs"].shape == (3,)


def test_an_unknown_sklearn_set_is_refused_with_a_suggestion():
    with pytest.raises(DataError, match=r"^data.name 'digit' is not one of scikit-learn's bundled sets tfbuild reads "
                                        r"\(digits, iris, .*\) \(did you mean 'digits'\?\)$"):
        sklearn_source.read({"name": "digit"}, {})


# --- npz ----------------------------------------------------------------------------------

def npz(tmp_path: Path, compressed: bool = False, **arrays) -> dict[str, Path]:
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return {"source": path}


X = np.arange(300 * 6, dtype=np.float64).reshape(300, 3, 2) / 10
Y = np.arange(300) % 3


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_defaults_x_and_y_stream_in_chunks(tmp_path, compressed):
    data = npz_source.read({"features": None, "label": None}, npz(tmp_path, compressed, x=X, y=Y, other=np.zeros(2)))
    assert data.count == 300 and data.inputs["inputs"].shape == (3, 2) and data.description.startswith("data.path ")
    np.testing.assert_array_equal(stream(data)["inputs"], X.astype(np.float32))
    np.testing.assert_array_equal(data.targets["label"], Y)


def test_npz_named_arrays_make_named_inputs_and_targets(tmp_path):
    paths = npz(tmp_path, a=X, b=np.ones((300,), bool), c=np.ones((300, 4), np.int8), y1=Y, y2=X[:, 0, 0])
    data = npz_source.read({"features": ["a", "b"], "label": ["y1", "y2"]}, paths)
    assert {n: s.shape for n, s in data.inputs.items()} == {"a": (3, 2), "b": (1,)}  # a per-sample scalar gets an axis
    assert list(data.targets) == ["y1", "y2"]
    np.testing.assert_array_equal(stream(data)["b"], np.ones((300, 1), np.float32))
    one = npz_source.read({"features": ["c"], "label": "y1"}, paths)  # one input is "inputs"
    assert list(one.inputs) == ["inputs"] and list(one.targets) == ["y1"]
    joined = npz_source.read({"features": {"tab": ["b", "c"]}, "label": "y1"}, paths)
    assert joined.inputs["tab"].shape == (5,) and stream(joined)["tab"].shape == (300, 5)


def test_npz_stream_is_the_same_twice(tmp_path):
    data = npz_source.read({}, npz(tmp_path, x=X, y=Y))
    assert [c["inputs"].tobytes() for c in data.chunks()] == [c["inputs"].tobytes() for c in data.chunks()]


def test_npz_fortran_order_arrays_are_read_too(tmp_path):
    data = npz_source.read({}, npz(tmp_path, x=np.asfortranarray(X[:, :, 0]), y=Y))
    np.testing.assert_array_equal(stream(data)["inputs"], X[:, :, 0].astype(np.float32))


def write_bytes(tmp_path: Path, content: bytes) -> dict[str, Path]:
    (tmp_path / "d.npz").write_bytes(content)
    return {"source": tmp_path / "d.npz"}


def truncated(tmp_path: Path) -> dict[str, Path]:
    paths = npz(tmp_path, x=X, y=Y)
    content = paths["source"].read_bytes()
    return write_bytes(tmp_path, content[: len(content) // 2])


@pytest.mark.parametrize(
    "arrays, params, expected",
    [
        ({"x": X}, {}, "has no array named y (it has x); save x (samples) and y (labels), or name your arrays "
                       "with data.features and data.label"),
        ({"a": X, "y": Y}, {"features": ["x"]}, "has no array 'x' (named by data.features; it has a, y)"),
        ({"x": X, "lab": Y}, {"label": "labl"}, "has no array 'labl' (named by data.label; it has x, lab) (did you mean 'lab'?)"),
        ({"a": X, "y": Y}, {"label": "y"}, "has no array 'x' (named by data.features, null meaning 'x'; it has a, y)"),
        ({"x": X, "b": Y}, {"features": ["x"]}, "has no array 'y' (named by data.label, null meaning 'y'; it has x, b)"),
        ({"x": X, "y": Y}, {"features": {"p": ["x"], "q": ["z"]}}, "has no array 'z' (named by data.features.q; it has x, y)"),
        ({"x": np.array([{}] * 300), "y": Y}, {}, "array 'x' holds Python objects (dtype object); save numeric arrays"),
        ({"x": X, "y": Y[:10]}, {}, "array 'x' has 300 samples but 'y' has 10"),
        ({"x": np.float32(1), "y": Y}, {}, "array 'x' is a single value (a 0-d array); it must hold one entry per sample"),
        ({"x": np.array(["a"] * 300), "y": Y}, {}, "array 'x' must hold real numbers (integers, floats or booleans), got dtype <U1"),
        ({"x": X, "y": Y}, {"features": ["x", "y"], "label": "y"}, "'y' is both a label (data.label) and a feature (data.features); a model must not read its own target"),
        ({"x": X, "z": Y, "y": Y}, {"features": {"p": ["x", "z"]}},
         "data.features.p joins arrays whose shapes differ before the last axis (x (3, 2), z (1,)); they are "
         "joined on the last axis"),
    ],
)
def test_npz_errors(tmp_path, arrays, params, expected):
    paths = npz(tmp_path, **arrays)
    with pytest.raises(DataError) as info:
        npz_source.read({"features": None, "label": None, **params}, paths)
    assert str(info.value) == f"data.path {paths['source']}: {expected}"


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"label": 3}, "data.label must be a name or a non-empty list of names, got 3"),
        ({"label": []}, "data.label must be a name or a non-empty list of names, got []"),
        ({"features": ["x", "x"]}, "data.features names 'x' twice"),
        ({"features": {}}, "data.features is an empty mapping; give {input name: [names]} or null"),
        ({"features": {"a": [1]}}, "data.features.a must be a name or a non-empty list of names, got [1]"),
    ],
)
def test_ill_formed_label_and_features_keys(tmp_path, params, expected):
    with pytest.raises(DataError) as info:
        npz_source.read({"features": None, "label": None, **params}, npz(tmp_path, x=X, y=Y))
    assert str(info.value) == expected


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda t: write_bytes(t, b"not a zip"), "not a .npz file NumPy can read (File is not a zip file)"),
        (lambda t: {"source": t / "missing.npz"}, "no such file"),
        (lambda t: {"source": t}, "is a folder, not a .npz file"),
        (truncated, "not a .npz file NumPy can read ("),
    ],
)
def test_unreadable_npz_files(tmp_path, make, expected):
    paths = make(tmp_path)
    with pytest.raises(DataError) as info:
        data = npz_source.read({}, paths)
        list(data.chunks())
    assert str(info.value).startswith(f"data.path {paths['source']}: {expected}") and "\n" not in str(info.value)


# --- csv ----------------------------------------------------------------------------------

def table(tmp_path: Path, text: str) -> dict[str, Path]:
    (tmp_path / "t.csv").write_text(text)
    return {"source": tmp_path / "t.csv"}


def numbers_csv(tmp_path: Path, rows: int = 2 * CHUNK + 7) -> dict[str, Path]:
    lines = ["a,b,c,y,z"] + [f"{i},{i * 0.5},{-i},{i % 2},{i / 4}" for i in range(rows)]
    return table(tmp_path, "\n".join(lines) + "\n")


def test_csv_label_and_the_other_columns_as_one_input(tmp_path):
    data = csv_source.read({"label": "y"}, numbers_csv(tmp_path))
    assert data.count == 2 * CHUNK + 7 and data.inputs["inputs"].shape == (4,)
    x = stream(data)["inputs"]
    np.testing.assert_array_equal(x[3], [3, 1.5, -3, 0.75])
    np.testing.assert_array_equal(data.targets["y"], np.arange(data.count) % 2)
    assert data.targets["y"].dtype == np.float64


def test_csv_feature_lists_and_dicts_and_several_labels(tmp_path):
    paths = numbers_csv(tmp_path)
    listed = csv_source.read({"label": ["y", "z"], "features": ["c", "a"]}, paths)
    assert list(listed.targets) == ["y", "z"] and list(listed.inputs) == ["inputs"]
    np.testing.assert_array_equal(stream(listed)["inputs"][5], [-5, 5])
    named = csv_source.read({"label": "y", "features": {"left": ["a"], "right": ["b", "c"]}}, paths)
    assert {n: s.shape for n, s in named.inputs.items()} == {"left": (1,), "right": (2,)}
    np.testing.assert_array_equal(stream(named)["right"][4], [2, -4])


def test_csv_quirks_that_are_fine(tmp_path):
    # A byte-order mark, quoted fields, spaces around numbers, CRLF line ends, a blank line.
    paths = table(tmp_path, '\ufeff"a", b ,y\r\n" 1 ",2,0\r\n\r\n3, 4 ,1\r\n')
    data = csv_source.read({"label": "y"}, paths)
    np.testing.assert_array_equal(stream(data)["inputs"], [[1, 2], [3, 4]])


def test_csv_stream_is_the_same_twice(tmp_path):
    data = csv_source.read({"label": "y"}, numbers_csv(tmp_path))
    assert [c["inputs"].tobytes() for c in data.chunks()] == [c["inputs"].tobytes() for c in data.chunks()]


@pytest.mark.parametrize(
    "text, params, expected",
    [
        ("", {"label": "y"}, "is empty; a CSV needs a header row of column names, then one row per sample"),
        ("a,y\n", {"label": "y"}, "has a header row but no data rows"),
        ("1,2\n3,4\n", {"label": "y"}, "the first row (1, 2) is numbers; a CSV needs a header row of column names"),
        ("a,b,y\n1,2,3\n", {}, "data.label is required for source=csv: the target column, or a list of them (the file has a, b, y)"),
        ("age,y\n1,2\n", {"label": "yy"}, "has no column 'yy' (named by data.label; it has age, y) (did you mean 'y'?)"),
        ("age,y\n1,2\n", {"label": "y", "features": ["agee"]},
         "has no column 'agee' (named by data.features; it has age, y) (did you mean 'age'?)"),
        ("age,y\n1,2\n", {"label": "y", "features": {"m": ["height"]}}, "has no column 'height' (named by data.features.m; it has age, y)"),
        ("a,y\n1,0\n2,x1\n", {"label": "y"}, "line 3, column 'y': 'x1' is not a number"),
        ("a,y\n1,0\n,1\n", {"label": "y"}, "line 3, column 'a': '' is not a number (the value is empty)"),
        ("a,y\n1,0\nnan,1\n", {"label": "y"}, "line 3, column 'a': 'nan' is not a finite number"),
        ("a,b,y\n1,2,0\n1,2\n", {"label": "y"}, "line 3 has 2 values but the header has 3 columns"),
        ("a,y,a\n1,2,3\n", {"label": "y"}, "column 'a' appears twice in the header row"),
        ("a,,y\n1,2,3\n", {"label": "y"}, "column 2 has no name in the header row"),
        ("y\n1\n", {"label": "y"}, "every column is a label (data.label); there are no feature columns left"),
        ("a,y\n1,2\n", {"label": "y", "features": ["a", "y"]}, "'y' is both a label (data.label) and a feature (data.features); a model must not read its own target"),
        ('a,y\n"1,2\n', {"label": "y"}, "line 2 has 1 value but the header has 2 columns"),  # an open quote runs to the end
        ("a,y\n" + "1" * 200_000 + ",1\n", {"label": "y"},
         "not a CSV file tfbuild can read (line 2: field larger than field limit (131072))"),
    ],
)
def test_csv_errors(tmp_path, text, params, expected):
    paths = table(tmp_path, text)
    with pytest.raises(DataError) as info:
        csv_source.read(params, paths)
    assert str(info.value) == f"data.path {paths['source']}: {expected}"


def test_csv_files_that_are_not_text_or_not_there(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"a,y\n\xff\xfe,1\n")
    for path, expected in [(tmp_path / "t.csv", "not a CSV file tfbuild can read (not UTF-8 text)"),
                           (tmp_path / "no.csv", "no such file"), (tmp_path, "is a folder, not a CSV file")]:
        with pytest.raises(DataError) as info:
            csv_source.read({"label": "y"}, {"source": path})
        assert str(info.value) == f"data.path {path}: {expected}"


# --- image shapes, planned without TensorFlow ---------------------------------------------

@pytest.mark.parametrize(
    "shape, size, channels, expected",
    [
        ((8, 8, 1), [32, 32], 3, (32, 32, 3)),
        ((8, 8), [16, 12], None, (16, 12, 1)),
        ((8, 8, 3), None, 1, (8, 8, 1)),
        ((8, 8, 3), None, None, (8, 8, 3)),
        ((13,), None, None, (13,)),  # nothing asked: any shape passes
    ],
)
def test_image_shape_after(shape, size, channels, expected):
    assert image_shape_after(shape, size, channels) == expected


@pytest.mark.parametrize(
    "shape, size, channels, expected",
    [
        ((13,), [32, 32], None, "data.image_size: samples of shape (13,) are not images ((height, width) or (height, width, channels))"),
        ((2, 3, 4, 5), None, 3, "data.channels: samples of shape (2, 3, 4, 5) are not images"),
        ((8, 8, 2), None, 3, "data.channels: samples with 2 channels cannot be converted to 3 (only 1 <-> 3)"),
        ((8, 8, 1), [32], None, "data.image_size must be [height, width] (two positive integers), got [32]"),
        ((8, 8, 1), [0, 4], None, "data.image_size must be [height, width] (two positive integers), got [0, 4]"),
        ((8, 8, 1), None, 2, "data.channels must be 1 or 3, got 2"),
    ],
)
def test_image_shape_after_refuses(shape, size, channels, expected):
    with pytest.raises(DataError) as info:
        image_shape_after(shape, size, channels)
    assert str(info.value).startswith(expected)
    with pytest.raises(ConfigError):  # planning passes the error it raises
        image_shape_after(shape, size, channels, error=ConfigError)


# --- image folders and TFRecord specs: what is refused before TensorFlow is imported -------

def image_folder(tmp_path: Path, layout: dict[str, bytes]) -> Path:
    """Files named by relative path; contents need not decode (nothing here decodes)."""
    root = tmp_path / "imgs"
    root.mkdir()
    for name, content in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/"):
            (root / name).write_bytes(content)
    return root


def test_image_folder_scan_orders_classes_and_files_and_skips_hidden_ones(tmp_path):
    root = image_folder(tmp_path, {
        "dog/b.PNG": b"", "dog/a.jpeg": b"", "cat/z/1.gif": b"", "cat/0.bmp": b"", "cat/.DS_Store": b"",
        ".cache/x.txt": b"", "cat/.thumbs/t.txt": b"", "README.md": b"",
    })
    classes, files, labels = images_source.scan(root, "src")
    assert classes == ["cat", "dog"] and labels == [0, 0, 1, 1]
    assert [str(f.relative_to(root)) for f in files] == ["cat/0.bmp", "cat/z/1.gif", "dog/a.jpeg", "dog/b.PNG"]
    data = images_source.read({"image_size": [5, 6], "color": "grayscale"}, {"source": root})
    assert data.inputs["inputs"].shape == (5, 6, 1) and data.images and data.class_names == {"label": ["cat", "dog"]}
    assert data.targets["label"].dtype == np.int64 and data.count == 4


@pytest.mark.parametrize(
    "layout, params, expected",
    [
        (None, {}, "{root}: no such folder"),
        ({"a.png": b""}, {}, "{root}/a.png: is a file; source=images needs a folder with one subfolder of images per class"),
        ({"a.png": b"", ".hidden/b.png": b""}, {}, "{root}: has no class subfolders; put each class's images in a "
                                                    "subfolder named after the class (imgs/cat/1.png, imgs/dog/2.png)"),
        ({"cat/a.png": b""}, {}, "{root}: has one class subfolder ('cat'); a classifier needs 2 or more"),
        ({"cat/a.png": b"", "dog/.DS_Store": b""}, {}, "{root}: class folder 'dog' holds no images (png, jpg, jpeg, bmp, gif)"),
        ({"cat/a.png": b"", "dog/notes.txt": b""}, {},
         "{root}: dog/notes.txt is not an image tfbuild reads (png, jpg, jpeg, bmp, gif); move it out of the folder"),
        ({"cat/a.png": b"", "dog/b.png": b""}, {"image_size": None},
         "data.image_size is required for source=images: the [height, width] every image is resized to"),
        ({"cat/a.png": b"", "dog/b.png": b""}, {"image_size": [32, -1]},
         "data.image_size must be [height, width] (two positive integers), got [32, -1]"),
        ({"cat/a.png": b"", "dog/b.png": b""}, {"color": "rgba"}, "data.color must be one of rgb, grayscale, got 'rgba'"),
    ],
)
def test_image_folders_refused_before_decoding(tmp_path, layout, params, expected):
    root = image_folder(tmp_path, layout) if layout is not None else tmp_path / "imgs"
    path = root / "a.png" if "is a file" in expected else root
    with pytest.raises(DataError) as info:
        images_source.read({"image_size": [8, 8], "color": "rgb", **params}, {"source": path})
    assert str(info.value) == expected.replace("{root}", f"data.path {root}")


SPEC = {"x": {"dtype": "float32", "shape": [3]}, "y": {"dtype": "int64", "shape": []}}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"spec": {}}, "data.spec is required for source=tfrecord: {feature: {dtype: float32|int64, shape: [...]}} for "
                       "every feature and label"),
        ({"spec": {"x": "float32"}}, "data.spec.x must be {dtype: float32|int64, shape: [...]}, got 'float32'"),
        ({"spec": {"x": {"dtype": "float64", "shape": [3]}}}, "data.spec.x.dtype must be one of float32, int64, got 'float64' "
                                                              "(did you mean 'float32'?)"),
        ({"spec": {"x": {"dtype": "string", "shape": []}}}, "data.spec.x.dtype must be one of float32, int64, got 'string'"),
        ({"spec": {"x": {"dtyp": "int64", "shape": []}}}, "data.spec.x has an unknown key 'dtyp' (allowed: dtype, shape) "
                                                          "(did you mean 'dtype'?)"),
        ({"spec": {"x": {"dtype": "int64"}}}, "data.spec.x.shape must be a list of positive sizes ([] for one value per record), got None"),
        ({"spec": {"x": {"dtype": "int64", "shape": [0]}}}, "data.spec.x.shape must be a list of positive sizes ([] for one "
                                                            "value per record), got [0]"),
        ({"label": None}, "data.label is required for source=tfrecord: the label feature(s) (data.spec has x, y)"),
        ({"label": "yy"}, "data.label names 'yy', which is not in data.spec (it has x, y) (did you mean 'y'?)"),
        ({"features": ["x", "z"]}, "data.features names 'z', which is not in data.spec (it has x, y)"),
        ({"features": {"a": ["w"]}}, "data.features.a names 'w', which is not in data.spec (it has x, y)"),
        ({"label": ["x", "y"]}, "data.spec has only labels (x, y); add the input features to it"),
    ],
)
def test_tfrecord_specs_refused_before_reading(tmp_path, params, expected):
    with pytest.raises(DataError) as info:
        tfrecord_source.read({"spec": SPEC, "label": "y", **params}, {"source": tmp_path / "never-read.tfrecord"})
    assert str(info.value) == expected


def test_tfrecord_files_come_in_glob_order():
    paths = {f"source.{i}": Path(f"f{i}") for i in (10, 2, 0, 1)}
    assert tfrecord_source.record_files(paths) == [Path("f0"), Path("f1"), Path("f2"), Path("f10")]
    with pytest.raises(DataError, match=r"^data.path is required for source=tfrecord"):
        tfrecord_source.record_files({})


def test_reading_and_refusing_import_no_tensorflow(tmp_path):
    """Planning and config errors stay fast: only decoding and parsing import TensorFlow."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tfbuild.datasets.sources import csv, images, npz, sklearn, tfrecord\n"
        "from tfbuild.datasets import preprocess\n"
        "from tfbuild.errors import DataError\n"
        "sklearn.read({'name': 'digits'}, {})\n"
        "try:\n"
        "    tfrecord.read({'spec': {}, 'label': 'y'}, {'source': Path('f')})\n"
        "except DataError:\n"
        "    pass\n"
        "preprocess.image_shape_after((8, 8, 1), [32, 32], 3)\n"
        "assert 'tensorflow' not in sys.modules and 'sklearn' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def test_an_image_class_folder_that_links_elsewhere_is_refused_since_the_key_would_not_cover_it(tmp_path):
    from tfbuild.datasets.sources.images import scan
    from tfbuild.errors import DataError

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "1.png").write_bytes(b"")
    (tmp_path / "pics" / "cat").mkdir(parents=True)
    (tmp_path / "pics" / "cat" / "1.png").write_bytes(b"")
    (tmp_path / "pics" / "dog").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="class folder 'dog' is a link to a folder"):
        scan(tmp_path / "pics", "data.path pics")
