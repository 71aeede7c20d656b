"""What a data source must hold to be trained on: checked on NumPy arrays, no TensorFlow."""

import numpy as np
import pytest

from tfbuild.datasets.checks import MANY_CLASSES, check_classes_fit, check_input_chunk, check_target, split_sizes
from tfbuild.errors import DataError

PARAMS = {"seed": 0, "validation_fraction": 0.1, "test_fraction": 0.2, "limit": None}
X = np.random.RandomState(0).rand(60, 4).astype(np.float32)
Y = np.arange(60) % 3
SIZES = split_sizes(60, PARAMS)


def refused(call, *args):
    with pytest.raises(DataError) as info:
        call(*args)
    return str(info.value)


def test_good_targets_come_back_as_the_task_wants_them():
    labels, spec = check_target("label", Y.astype(np.int8), "classification", 60, "d.npz")
    assert labels.dtype == np.int64 and spec.classes == 3 and spec.shape == ()
    labels, _ = check_target("label", Y.astype(np.float64), "classification", 60, "d.csv")  # CSV numbers are floats
    assert labels.dtype == np.int64
    assert check_target("label", Y[:, None], "classification", 60, "d.npz")[0].shape == (60,)
    values, spec = check_target("price", X[:, 0].astype(np.float64), "regression", 60, "d.csv")
    assert values.shape == (60, 1) and values.dtype == np.float32 and spec.shape == (1,)
    assert check_target("pose", X, "regression", 60, "d.npz")[1].shape == (4,)
    assert check_input_chunk("x", X > 0.5, "d.npz").dtype == np.float32  # 0/1 features


@pytest.mark.parametrize(
    "name, y, task, expected",
    [
        ("y", Y - 1, "classification", "d.npz: y holds negative labels (the smallest is -1)"),
        ("y", Y + 0.5, "classification", "d.npz: y must hold integer class labels 0..K-1, got fractional values"),
        ("y", Y.astype(bool), "classification", "d.npz: y must hold integer class labels 0..K-1, got booleans"),
        ("y", np.stack([Y, Y], axis=1), "classification", "d.npz: y must hold one integer class label per sample (shape (60,)), got shape (60, 2)"),
        ("y", Y[:50], "classification", "d.npz: the inputs have 60 samples but y has 50"),
        ("y", np.int64(1), "classification", "d.npz: y is a single value (a 0-d array)"),
        ("y", np.array(["a"] * 60), "classification", "d.npz: y must hold numbers, got text"),
        ("y", Y, "regression", "d.npz: y holds integer class labels (dtype int64) but its task is regression"),
        ("y", np.where(np.arange(60) == 4, np.nan, 1.5), "regression", "d.npz: y holds NaN or infinity in 1 samples (the first at index 4)"),
    ],
)
def test_targets_that_do_not_fit_their_task_are_refused(name, y, task, expected):
    assert refused(check_target, name, y, task, 60, "d.npz").startswith(expected)


@pytest.mark.parametrize(
    "x, expected",
    [
        (np.where(np.arange(60)[:, None] == 7, np.inf, X), "d.npz: x holds NaN or infinity in 1 of 60 samples read (the first at index 107)"),
        (X.astype(np.complex64), "d.npz: x must hold real numbers (integers, floats or booleans), got complex numbers"),
        (np.array(["a"] * 60), "d.npz: x must hold real numbers (integers, floats or booleans), got text"),
        (np.array([None] * 60, dtype=object), "d.npz: x must hold real numbers (integers, floats or booleans), got Python objects"),
        (np.float32(1), "d.npz: x is a single value (a 0-d array)"),
    ],
)
def test_inputs_that_cannot_be_trained_on_are_refused_naming_the_sample(x, expected):
    assert refused(check_input_chunk, "x", x, "d.npz", 100).startswith(expected)


@pytest.mark.parametrize(
    "labels, sizes, expected",
    [
        (np.zeros(60, np.int64), SIZES, "d.npz: y has a single class (0); a classifier needs 2 or more"),
        (np.where(np.arange(60) == 3, 10**9, Y), SIZES, "d.npz: the largest y is 1000000000, which would make a 1000000001-unit output layer for 60 samples"),
        (np.arange(8) % 6, split_sizes(8, PARAMS), "d.npz: 8 samples leave 5 for training (validation 1, test 2), fewer than the 6 classes of y"),
    ],
)
def test_label_spaces_that_cannot_make_a_classifier_are_refused(labels, sizes, expected):
    assert refused(check_classes_fit, "y", labels, sizes, "d.npz", False).startswith(expected)


def test_many_classes_need_as_many_samples():
    n = MANY_CLASSES + 1
    labels = np.arange(2 * n) % (n + 1)
    check_classes_fit("y", labels, split_sizes(2 * n, PARAMS), "d.npz", False)  # a large but real label space
    small = {**PARAMS, "limit": 10, "test_fraction": 0.4, "validation_fraction": 0.4}
    assert "data.limit" in refused(check_classes_fit, "y", Y, split_sizes(60, small), "d.npz", True)


def test_split_sizes_follow_the_fractions_and_the_limit():
    assert split_sizes(100, PARAMS) == {"train": 70, "validation": 10, "test": 20}
    assert split_sizes(100, {**PARAMS, "limit": 10}) == {"train": 7, "validation": 1, "test": 2}
    assert split_sizes(3, PARAMS) == {"train": 1, "validation": 1, "test": 1}, "each split gets one at least"
