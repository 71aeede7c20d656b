"""What a data source must hold to be trained on: checked on NumPy arrays, no TensorFlow."""

import numpy as np
import pytest

from tfbuild.datasets.checks import MANY_CLASSES, check_samples, split_sizes
from tfbuild.errors import DataError

PARAMS = {"seed": 0, "validation_fraction": 0.1, "test_fraction": 0.2, "limit": None}
X = np.random.RandomState(0).rand(60, 4).astype(np.float32)
Y = np.arange(60) % 3


def refused(x, y, params=PARAMS):
    with pytest.raises(DataError) as info:
        check_samples(x, y, params, "d.npz")
    return str(info.value)


def test_good_samples_pass_and_labels_come_back_as_int64():
    assert check_samples(X, Y.astype(np.int8), PARAMS, "d.npz").dtype == np.int64
    check_samples(X > 0.5, Y, PARAMS, "d.npz")  # 0/1 features
    check_samples(X, Y[:, None], PARAMS, "d.npz")  # one label per row, as a column


@pytest.mark.parametrize(
    "x, y, expected",
    [
        (np.where(np.arange(60)[:, None] == 7, np.inf, X), Y,
         "d.npz: x holds NaN or infinity in 1 of 60 samples (the first at index 7)"),
        (np.full_like(X, np.nan), Y, "d.npz: x holds NaN or infinity in 60 of 60 samples (the first at index 0)"),
        (X, np.zeros(60, np.int64), "d.npz: y has a single class (0); a classifier needs 2 or more"),
        (X, Y - 1, "d.npz: y holds negative labels (the smallest is -1)"),
        (X, np.where(np.arange(60) == 3, 10**9, Y), "d.npz: the largest label is 1000000000, which would make a "
                                                    "1000000001-unit output layer for 60 samples"),
        (X.astype(np.complex64), Y, "d.npz: x must hold real numbers (integers, floats or booleans), got complex numbers"),
        (np.array(["a"] * 60), Y, "d.npz: x must hold real numbers (integers, floats or booleans), got text"),
        (np.array([None] * 60, dtype=object), Y, "d.npz: x must hold real numbers (integers, floats or booleans), got Python objects"),
        (X, Y.astype(np.float32), "d.npz: y must hold integer class labels 0..K-1, got dtype float32"),
        (X, Y.astype(bool), "d.npz: y must hold integer class labels 0..K-1, got booleans"),
        (X, np.stack([Y, Y], axis=1), "d.npz: y must hold one integer class label per sample (shape (60,)), got shape (60, 2)"),
        (X, Y[:50], "d.npz: x has 60 samples but y has 50"),
        (np.float32(1), Y, "d.npz: x is a single value (a 0-d array)"),
        (X, np.int64(1), "d.npz: y is a single value (a 0-d array)"),
        (X[:8], np.arange(8) % 6, "d.npz: 8 samples leave 5 for training (validation 1, test 2), fewer than the 6 classes"),
    ],
)
def test_samples_that_cannot_make_a_classifier_are_refused(x, y, expected):
    assert refused(x, y).startswith(expected)


def test_many_classes_need_as_many_samples():
    n = MANY_CLASSES + 1
    x, y = np.zeros((2 * n, 1), np.float32), np.arange(2 * n) % (n + 1)
    check_samples(x, y, PARAMS, "d.npz")  # 10,002 classes over 20,002 samples: a large but real label space
    assert "data.limit" in refused(X, Y, {**PARAMS, "limit": 10, "test_fraction": 0.4, "validation_fraction": 0.4})


def test_split_sizes_follow_the_fractions_and_the_limit():
    assert split_sizes(100, PARAMS) == {"train": 70, "validation": 10, "test": 20}
    assert split_sizes(100, {**PARAMS, "limit": 10}) == {"train": 7, "validation": 1, "test": 2}
    assert split_sizes(3, PARAMS) == {"train": 1, "validation": 1, "test": 1}, "each split gets one at least"
