"""Tests of normbook.plotting: the cube picture shades exactly the set S the arithmetic uses."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from matplotlib.text import Text  # noqa: E402
from mpl_toolkits.mplot3d import proj3d  # noqa: E402

from normbook.plotting import PALETTE, REST, SHADE, cube_colors, cube_sets, draw_cube, draw_cubes, set_caption  # noqa: E402
from normlib.sets import batch_set, group_set, instance_set, layer_set  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ax():
    return plt.figure().add_subplot(projection="3d")


def test_cube_sets_names_the_four_methods_with_the_requested_groups():
    sets = cube_sets(3)
    assert list(sets) == ["Batch Norm", "Layer Norm", "Instance Norm", "Group Norm"]
    assert sets["Group Norm"] == group_set(3)
    assert sets["Layer Norm"] == layer_set(2)


def test_draw_cube_returns_the_mask_of_the_set_of_the_index():
    shape, index = (3, 4, 2), (1, 3, 0)
    mask = draw_cube(_ax(), group_set(2), shape, index)
    expected = np.zeros(shape, dtype=bool)
    expected[1, 2:4, :] = True  # sample 1, the second group of 2 channels, every position
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    "S, expected_size",
    [(batch_set(), 4 * 5), (layer_set(2), 6 * 5), (instance_set(), 5), (group_set(3), 2 * 5)],
)
def test_default_cube_masks_have_the_size_of_S(S, expected_size):
    mask = draw_cube(_ax(), S)
    assert mask.shape == (4, 6, 5)
    assert int(mask.sum()) == expected_size == S.set_size((4, 6, 5))


def test_draw_cubes_returns_one_mask_per_method_equal_to_the_set_masks():
    fig, masks = draw_cubes(shape=(2, 4, 3), index=(1, 1, 2))
    assert len(fig.axes) == 4
    for name, S in cube_sets().items():
        np.testing.assert_array_equal(masks[name], S.mask((2, 4, 3), (1, 1, 2)))


def test_group_norm_cube_with_one_group_is_layer_norm_and_with_C_groups_is_instance_norm():
    _, masks = draw_cubes({"G=1": group_set(1), "G=C": group_set(6), "LN": layer_set(2), "IN": instance_set()})
    np.testing.assert_array_equal(masks["G=1"], masks["LN"])
    np.testing.assert_array_equal(masks["G=C"], masks["IN"])


def test_partition_colours_every_group_of_the_sample_and_keeps_the_mask():
    shape = (2, 6, 2)
    plain_mask, plain = cube_colors(group_set(3), shape)
    mask, rgba = cube_colors(group_set(3), shape, partition=True)
    np.testing.assert_array_equal(mask, plain_mask)
    np.testing.assert_array_equal(rgba[mask], plain[mask])
    rgb = lambda c: to_rgba(c)[:3]  # noqa: E731
    np.testing.assert_allclose(rgba[0, 0:2, :, :3], np.broadcast_to(rgb(SHADE), (2, 2, 3)))
    np.testing.assert_allclose(rgba[0, 2:4, :, :3], np.broadcast_to(rgb(PALETTE[0]), (2, 2, 3)))
    np.testing.assert_allclose(rgba[0, 4:6, :, :3], np.broadcast_to(rgb(PALETTE[1]), (2, 2, 3)))
    # the other sample stays grey, as without partition
    np.testing.assert_array_equal(rgba[1], plain[1])
    np.testing.assert_allclose(rgba[1, ..., :3], np.broadcast_to(rgb(REST), (6, 2, 3)))


def test_draw_cube_draws_one_voxel_face_set_per_entry_in_the_cube_colours():
    ax = _ax()
    draw_cube(ax, group_set(2), (1, 2, 1), partition=True)
    assert len(ax.collections) == 2  # one voxel per entry of a 1 x 2 x 1 cube


def test_captions_state_the_size_of_S():
    assert set_caption(batch_set(), (4, 6, 5)) == "|S| = 20 over N, H×W"
    assert set_caption(layer_set(2), (4, 6, 5)) == "|S| = 30 over C, H×W"
    assert set_caption(group_set(3), (4, 6, 5)) == "|S| = 10 over C/G, H×W"
    fig, _ = draw_cubes(captions=True)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "|S| = 5 over H×W" in texts


def _assert_axis_names_inside(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_text() in ("C", "N", "H, W")]
        assert sorted(t.get_text() for t in labels) == ["C", "H, W", "N"]
        for t in labels:
            # where the 3-D text lands on the canvas once projected
            xs, ys, _ = proj3d.proj_transform(t._x, t._y, t._z, ax.get_proj())
            t2 = Text(xs, ys, t.get_text(), ha=t.get_ha(), va=t.get_va(), fontsize=t.get_fontsize(),
                      transform=ax.transData, figure=fig)
            ext = t2.get_window_extent(renderer)
            assert box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1, t.get_text()


@pytest.mark.parametrize(
    "shape, one, figsize",
    [((4, 6, 5), False, None), ((2, 16, 4), False, None), ((3, 4, 2), True, None), ((3, 4, 2), True, (3.6, 3.0)),
     ((3, 4, 2), True, (6.0, 4.0)), ((4, 6, 5), False, (6.4, 2.0))],
)
def test_axis_names_are_drawn_inside_the_figure_of_draw_cubes(shape, one, figsize):
    fig, _ = draw_cubes(sets={"GN": group_set(2)} if one else None, shape=shape, figsize=figsize, captions=True)
    _assert_axis_names_inside(fig)


@pytest.mark.parametrize("figsize", [(6.4, 4.0), (4.2, 3.6), (3.0, 3.0)])
def test_axis_names_are_drawn_inside_a_figure_with_one_cube(figsize):
    fig = plt.figure(figsize=figsize)
    draw_cube(fig.add_subplot(projection="3d"), group_set(2), (3, 4, 2), title="GN", caption="|S| = 4")
    _assert_axis_names_inside(fig)


@pytest.mark.parametrize(
    "shape, index, match",
    [
        ((4, 6), (0, 0, 0), r"expected a cube shape \(N, C, H\*W\) of three positive sizes, got \[4, 6\]"),
        ((4, 0, 5), (0, 0, 0), r"got \[4, 0, 5\]"),
        ((4, 6, 5), (4, 0, 0), r"index \[4, 0, 0\] is not an entry of a cube of shape \[4, 6, 5\]"),
    ],
)
def test_draw_cube_rejects_bad_shapes_and_indices(shape, index, match):
    with pytest.raises(ValueError, match=match):
        draw_cube(_ax(), batch_set(), shape, index)


def test_draw_cube_passes_on_the_error_of_groups_that_do_not_divide_C():
    with pytest.raises(ValueError, match="divisible by num_groups, but got input of shape \\[4, 6, 5\\] and num_groups=4"):
        draw_cube(_ax(), group_set(4))


def test_draw_cubes_rejects_an_empty_mapping():
    with pytest.raises(ValueError, match="expected at least one set to draw"):
        draw_cubes({})


@given(
    n=st.integers(1, 3),
    g=st.integers(1, 3),
    per=st.integers(1, 2),
    p=st.integers(1, 3),
    data=st.data(),
)
def test_group_mask_is_one_sample_and_one_contiguous_channel_group(n, g, per, p, data):
    shape = (n, g * per, p)
    index = tuple(data.draw(st.integers(0, s - 1)) for s in shape)
    mask, rgba = cube_colors(group_set(g), shape, index)
    lo = (index[1] // per) * per
    expected = np.zeros(shape, dtype=bool)
    expected[index[0], lo : lo + per, :] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_allclose(rgba[mask][:, :3], np.broadcast_to(to_rgba(SHADE)[:3], (int(mask.sum()), 3)))


def test_draw_cubes_lays_cubes_out_in_ncols_columns():
    fig, masks = draw_cubes(ncols=2, captions=True)
    assert len(masks) == 4
    geometry = sorted({ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes})
    assert geometry == [(2, 2)]
    fig, _ = draw_cubes()  # default: one row
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(1, 4)}


def test_draw_cubes_rejects_a_non_positive_ncols():
    with pytest.raises(ValueError, match="ncols must be a positive integer, got 0"):
        draw_cubes(ncols=0)
