"""Real photographs for the chapters, prepared as small ``(N, C, H, W)`` arrays.

The two photos that scikit-learn ships (``china.jpg`` and ``flower.jpg``, both
427×640 RGB, CC BY 2.0, the images :func:`sklearn.datasets.load_sample_images`
returns, read with Pillow) are downsampled with a box filter so that a chapter runs in
milliseconds and its figures stay small.  Helpers turn an ``(C, H, W)`` array
back into an ``(H, W, C)`` picture for ``imshow`` and apply a per-channel
contrast/brightness change.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from normlib._checks import check_positive_int

__all__ = ["PHOTO_NAMES", "load_photos", "channel_affine", "to_picture", "standardized_picture"]

PHOTO_NAMES = ("china", "flower")  # the order of load_sample_images()


def load_photos(height: int = 64, width: int = 96, dtype=np.float32) -> np.ndarray:
    """The two scikit-learn sample photos as an array of shape ``(2, 3, height, width)`` in [0, 1].

    Each 427×640 photo is resized with Pillow's box filter (every output pixel
    is the area-weighted mean of the input pixels it covers), then scaled from
    0..255 to ``x / 255``.  Order: :data:`PHOTO_NAMES`.

    Raises ``ValueError`` for a size < 1, ``TypeError`` for a non-integer size, and
    ``ImportError`` (naming the missing package) when scikit-learn or Pillow is
    not installed.
    """
    height = check_positive_int(height, "height", "load_photos")
    width = check_positive_int(width, "width", "load_photos")
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_photos: Pillow is required to read scikit-learn's sample photos") from exc
    out = np.empty((len(PHOTO_NAMES), 3, height, width), dtype=dtype)
    for i, img in enumerate(_sample_photos()):
        small = Image.fromarray(img).resize((width, height), Image.Resampling.BOX)
        out[i] = np.transpose(np.asarray(small, dtype=np.float64) / 255.0, (2, 0, 1))
    return out


def _sample_photos() -> list[np.ndarray]:
    """The (427, 640, 3) uint8 photos of :data:`PHOTO_NAMES`, as ``load_sample_images().images``
    (read by :func:`normbook.datasets.load_sample_image`, without importing scikit-learn)."""
    from .datasets import load_sample_image

    return [load_sample_image(f"{name}.jpg") for name in PHOTO_NAMES]


def channel_affine(x: np.ndarray, gain: Sequence[float], offset: Sequence[float]) -> np.ndarray:
    """Change contrast and brightness per channel: ``y[..., c, :, :] = gain[c] * x[..., c, :, :] + offset[c]``.

    Shapes: ``x`` is ``(C, H, W)`` or ``(N, C, H, W)``; ``gain`` and ``offset``
    have length C.  Returns a new array of ``x``'s dtype.  Raises
    ``ValueError`` when ``x`` is not 3-D or 4-D or when ``gain``/``offset`` do
    not have C entries.
    """
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"channel_affine: expected a (C, H, W) or (N, C, H, W) array, got shape {list(x.shape)}")
    C = x.shape[-3]
    g = np.asarray(gain, dtype=np.float64)
    b = np.asarray(offset, dtype=np.float64)
    for name, p in (("gain", g), ("offset", b)):
        if p.shape != (C,):
            raise ValueError(
                f"channel_affine: expected {name} of shape [{C}], got {name} of shape "
                f"{list(p.shape)} for input of shape {list(x.shape)}"
            )
    y = g[:, None, None] * x + b[:, None, None]
    return y.astype(x.dtype, copy=False)


def to_picture(x: np.ndarray) -> np.ndarray:
    """An ``(C, H, W)`` array with values in [0, 1] as an ``(H, W, C)`` picture for ``imshow``.

    Raises ``ValueError`` for another shape or for values outside [0, 1]
    (a picture is not clipped silently: what is shown is the array itself).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"to_picture: expected a (C, H, W) array, got shape {list(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"to_picture: values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return np.transpose(x, (1, 2, 0))


def standardized_picture(x_hat: np.ndarray, spread: float = 3.0) -> np.ndarray:
    """Show a standardized ``(C, H, W)`` array (values around 0, unit spread) as an ``(H, W, C)`` picture.

    Maps ``v`` to ``clip(0.5 + v / (2 * spread), 0, 1)``: 0 becomes mid-grey and
    ±``spread`` standard deviations become the ends of the range, the same map
    for every channel and every image, so two outputs compare by eye.  Raises
    ``ValueError`` for another shape or ``spread <= 0``.
    """
    x_hat = np.asarray(x_hat)
    if x_hat.ndim != 3:
        raise ValueError(f"standardized_picture: expected a (C, H, W) array, got shape {list(x_hat.shape)}")
    if not spread > 0:
        raise ValueError(f"standardized_picture: spread must be > 0, got spread={spread!r}")
    return np.clip(0.5 + np.transpose(x_hat, (1, 2, 0)) / (2.0 * spread), 0.0, 1.0)
