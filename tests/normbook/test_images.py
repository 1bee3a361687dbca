"""Tests for normbook.images: the sample photos and the picture helpers."""
import numpy as np
import pytest

from normbook.images import PHOTO_NAMES, channel_affine, load_photos, standardized_picture, to_picture


@pytest.fixture(scope="module")
def photos():
    return load_photos(32, 48)


def test_load_photos_shape_dtype_and_range(photos):
    assert photos.shape == (len(PHOTO_NAMES), 3, 32, 48)
    assert photos.dtype == np.float32
    assert photos.min() >= 0.0 and photos.max() <= 1.0


def test_load_photos_is_deterministic(photos):
    np.testing.assert_array_equal(load_photos(32, 48), photos)


def test_load_photos_dtype_argument():
    assert load_photos(8, 12, dtype=np.float64).dtype == np.float64


def test_load_photos_box_filter_keeps_the_mean_colour(photos):
    from sklearn.datasets import load_sample_images

    full = np.stack(load_sample_images().images).astype(np.float64) / 255.0  # (2, 427, 640, 3)
    full_mean = full.mean(axis=(1, 2))
    # a box filter averages areas, so the mean colour barely moves
    np.testing.assert_allclose(photos.mean(axis=(2, 3)), full_mean, atol=0.01)


def test_the_two_photos_differ(photos):
    assert np.abs(photos[0] - photos[1]).mean() > 0.1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_load_photos_rejects_bad_size(bad):
    with pytest.raises(ValueError, match=r"load_photos: height must be a positive integer"):
        load_photos(bad, 10)


def test_channel_affine_per_channel():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    y = channel_affine(x, [1.0, 2.0, 0.5], [0.0, -1.0, 3.0])
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y[:, 0], x[:, 0])
    np.testing.assert_allclose(y[:, 1], 2 * x[:, 1] - 1)
    np.testing.assert_allclose(y[:, 2], 0.5 * x[:, 2] + 3)


def test_channel_affine_accepts_one_image():
    x = np.ones((3, 2, 2))
    np.testing.assert_allclose(channel_affine(x, [1, 2, 3], [0, 0, 1])[:, 0, 0], [1, 2, 4])


def test_channel_affine_rejects_wrong_lengths():
    with pytest.raises(ValueError, match=r"expected gain of shape \[3\], got gain of shape \[2\]"):
        channel_affine(np.ones((3, 2, 2)), [1, 2], [0, 0, 0])
    with pytest.raises(ValueError, match=r"expected offset of shape \[3\]"):
        channel_affine(np.ones((3, 2, 2)), [1, 2, 3], [0])


def test_channel_affine_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"channel_affine: expected a \(C, H, W\) or \(N, C, H, W\) array"):
        channel_affine(np.ones((3, 4)), [1, 1, 1], [0, 0, 0])


def test_to_picture_transposes(photos):
    pic = to_picture(photos[0])
    assert pic.shape == (32, 48, 3)
    np.testing.assert_array_equal(pic[5, 7], photos[0][:, 5, 7])


def test_to_picture_refuses_to_clip():
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\], got min -0.5"):
        to_picture(np.full((3, 2, 2), -0.5))
    with pytest.raises(ValueError, match=r"expected a \(C, H, W\) array"):
        to_picture(np.zeros((2, 3, 2, 2)))


def test_standardized_picture_maps_zero_to_grey_and_clips():
    x = np.zeros((3, 2, 2))
    x[0, 0, 0] = 3.0
    x[1, 0, 0] = -10.0
    pic = standardized_picture(x, spread=3.0)
    assert pic.shape == (2, 2, 3)
    assert pic[1, 1, 2] == 0.5
    assert pic[0, 0, 0] == 1.0  # +spread -> white end
    assert pic[0, 0, 1] == 0.0  # clipped
    with pytest.raises(ValueError, match=r"spread must be > 0"):
        standardized_picture(x, spread=0)


def test_sample_photos_are_exactly_sklearns():
    from sklearn.datasets import load_sample_images

    from normbook.images import _sample_photos

    ours = _sample_photos()
    theirs = load_sample_images()
    assert [f.rsplit("/", 1)[-1] for f in theirs.filenames] == [f"{n}.jpg" for n in PHOTO_NAMES]
    assert len(ours) == len(theirs.images)
    for a, b in zip(ours, theirs.images):
        assert a.dtype == np.uint8 and a.shape == (427, 640, 3)
        np.testing.assert_array_equal(a, b)
