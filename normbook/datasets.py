"""scikit-learn's bundled data, read from its files without importing scikit-learn.

Importing ``sklearn.datasets`` takes about 1.2 s (it imports SciPy), a quarter
of a chapter's start-up, to read one gzipped CSV file or one JPEG.  These
functions read the same files that scikit-learn ships, in the same way, and
return the same arrays (``tests/normbook/test_datasets.py`` compares them with
scikit-learn's own loaders).  If the files are not where scikit-learn has always
kept them, they fall back to scikit-learn's loaders.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["load_digits", "load_sample_image"]


def _sklearn_datasets_folder() -> Path:
    """``sklearn/datasets`` of the installed scikit-learn, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("normbook.datasets: scikit-learn is required for its bundled data")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets"


def load_digits(*, return_X_y: bool = False):
    """The 1,797 handwritten digits of ``sklearn.datasets.load_digits``: 8×8 pixels, values 0 … 16.

    Returns ``(data, target)`` with ``return_X_y``: ``data`` float64 ``(1797, 64)``,
    ``target`` int ``(1797,)``; otherwise an object with ``data``, ``target`` and
    ``images`` (``data`` as ``(1797, 8, 8)``), as scikit-learn's ``Bunch`` has.
    """
    path = _sklearn_datasets_folder() / "data" / "digits.csv.gz"
    if not path.is_file():  # pragma: no cover - scikit-learn moved its data
        from sklearn.datasets import load_digits as sklearn_load_digits

        return sklearn_load_digits(return_X_y=return_X_y)
    table = np.loadtxt(path, delimiter=",")  # 64 pixels, then the label, per row
    data, target = table[:, :-1], table[:, -1].astype(int)
    if return_X_y:
        return data, target
    return SimpleNamespace(data=data, target=target, images=data.reshape(-1, 8, 8))


def load_sample_image(name: str) -> np.ndarray:
    """``sklearn.datasets.load_sample_image(name)``: ``"china.jpg"`` or ``"flower.jpg"``, (427, 640, 3) uint8."""
    from PIL import Image

    path = _sklearn_datasets_folder() / "images" / name
    if not path.is_file():
        from sklearn.datasets import load_sample_image as sklearn_load_sample_image

        return sklearn_load_sample_image(name)  # raises for an unknown name, as scikit-learn does
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
