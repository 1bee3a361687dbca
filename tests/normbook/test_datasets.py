"""normbook.datasets reads scikit-learn's files and gives what scikit-learn's loaders give."""
import subprocess
import sys

import numpy as np
import pytest

from normbook import datasets

sk = pytest.importorskip("sklearn.datasets")


def test_load_digits_equals_scikit_learn():
    ours, theirs = datasets.load_digits(), sk.load_digits()
    for name in ("data", "target", "images"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    X, y = datasets.load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, theirs.data)
    np.testing.assert_array_equal(y, theirs.target)


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_load_sample_image_equals_scikit_learn(name):
    ours, theirs = datasets.load_sample_image(name), sk.load_sample_image(name)
    assert ours.dtype == theirs.dtype == np.uint8 and ours.shape == theirs.shape == (427, 640, 3)
    np.testing.assert_array_equal(ours, theirs)


def test_unknown_sample_image_raises():
    with pytest.raises(Exception):
        datasets.load_sample_image("nothing.jpg")


def test_loading_does_not_import_scikit_learn():
    probe = ("import sys; from normbook.datasets import load_digits, load_sample_image; "
             "load_digits(); load_sample_image('china.jpg'); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
