"""Pictures of the set S on the N, C, H×W cube (as in Wu & He 2018, Figure 2).

The shading comes from :meth:`normlib.sets.StatSet.mask`, the same description
of S that computes the numbers, so the picture cannot disagree with the
arithmetic.  Spatial positions H×W are flattened into one axis of the cube.

* :func:`cube_sets`: the four methods' sets S for a 3-D (N, C, H×W) input.
* :func:`draw_cube`: one cube on a 3-D axis; returns the boolean mask it shaded.
* :func:`draw_cubes`: one cube per method side by side (or in ``ncols``
  columns); returns the figure and the masks.
* :func:`cube_colors`: the mask and the colour of every entry, without drawing.
* :func:`set_caption`: ``"|S| = 15 over C/G, H×W"``, the caption under a cube.

The axis names C, N and "H, W" are drawn as text next to the cube's edges
(matplotlib's 3-D axis labels were cut off), with the 3-D panes hidden.

Every function returns what it shaded, so a chapter can ``assert`` on the
picture it shows.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from normlib._checks import check_positive_int
from normlib.sets import StatSet, batch_set, group_set, instance_set, layer_set

__all__ = ["cube_colors", "cube_sets", "draw_cube", "draw_cubes", "set_caption"]

SHADE = "#4C72B0"
REST = "#DDDDDD"
# Colours for the other sets of the same sample when ``partition=True``.
PALETTE = ("#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974")


def cube_sets(num_groups: int = 2) -> dict[str, StatSet]:
    """The four methods' sets S for a cube-shaped input (N, C, H×W).

    Layer Norm is ``layer_set(2)``: the last two axes (C, H×W) of one sample,
    which is ``nn.LayerNorm([C, H, W])`` once H and W are flattened.
    """
    return {
        "Batch Norm": batch_set(),
        "Layer Norm": layer_set(2),  # (C, H×W) of one sample
        "Instance Norm": instance_set(),
        "Group Norm": group_set(num_groups),
    }


def _check_shape(shape: Sequence[int], index: Sequence[int], op: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    shape = tuple(int(s) for s in shape)
    index = tuple(int(i) for i in index)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{op}: expected a cube shape (N, C, H*W) of three positive sizes, got {list(shape)}")
    if len(index) != 3 or any(not 0 <= i < s for i, s in zip(index, shape)):
        raise ValueError(f"{op}: index {list(index)} is not an entry of a cube of shape {list(shape)}")
    return shape, index


def set_caption(S: StatSet, shape: Sequence[int]) -> str:
    """A short caption for the cube of ``S``: ``|S|`` and the axes S runs over.

    >>> set_caption(batch_set(), (4, 6, 5))
    '|S| = 20 over N, H×W'
    >>> set_caption(group_set(2), (4, 6, 5))
    '|S| = 15 over C/G, H×W'
    """
    shape, _ = _check_shape(shape, (0, 0, 0), "set_caption")
    over = S.describe(3).split(" per ")[0].replace("L", "H×W")
    return f"|S| = {S.set_size(shape)} over {over}"


def cube_colors(
    S: StatSet,
    shape: Sequence[int] = (4, 6, 5),
    index: Sequence[int] = (0, 0, 0),
    color: str = SHADE,
    *,
    partition: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The colours :func:`draw_cube` gives each entry of the (N, C, H×W) cube.

    Returns ``(mask, rgba)``: ``mask`` (shape ``shape``, bool) is the set S of
    the entry ``index``, from :meth:`~normlib.sets.StatSet.labels`; ``rgba``
    (shape ``shape + (4,)``) is ``color`` on the mask, light grey elsewhere,
    and with ``partition=True`` a colour of :data:`PALETTE` for each other set
    of the same sample.

    Raises ``ValueError`` for a shape that is not three positive sizes, an
    index outside it, or whatever ``S`` raises for the shape.
    """
    shape, index = _check_shape(shape, index, "cube_colors")
    labels = S.labels(shape)
    mask = labels == labels[index]
    rgba = np.empty(shape + (4,))
    rgba[...] = _rgba(REST, 0.18)
    if partition:
        sample = np.zeros(shape, dtype=bool)
        sample[index[0]] = True
        others = [lab for lab in np.unique(labels[sample]) if lab != labels[index]]
        for k, lab in enumerate(others):
            rgba[(labels == lab) & sample] = _rgba(PALETTE[k % len(PALETTE)], 0.75)
    rgba[mask] = _rgba(color, 0.9)
    return mask, rgba


def draw_cube(
    ax,
    S: StatSet,
    shape: Sequence[int] = (4, 6, 5),
    index: Sequence[int] = (0, 0, 0),
    title: str | None = None,
    color: str = SHADE,
    *,
    partition: bool = False,
    caption: str | None = None,
) -> np.ndarray:
    """Draw the (N, C, H×W) cube on a 3-D axis and shade the set S of entry ``index``.

    Each voxel is one entry ``(n, c, p)`` of an input of shape ``shape =
    (N, C, H*W)``; C runs to the right, N into the depth, H×W upward.  The
    voxels of ``S.mask(shape, index)`` are drawn in ``color``, the rest in
    light grey.  With ``partition=True`` the other sets of the same sample
    (e.g. the other channel groups of Group Norm) get their own colours, so
    the picture shows how S cuts the sample into pieces.  ``caption`` is
    written under the cube.

    Returns the boolean mask that was shaded in ``color`` (shape ``shape``),
    so a caller can assert what the picture shows.

    Raises ``ValueError`` if ``shape`` is not three positive sizes or
    ``index`` is not an entry of it, and whatever ``S`` raises for the shape
    (e.g. groups that do not divide C).
    """
    shape, index = _check_shape(shape, index, "draw_cube")
    N, C, P = shape
    mask, rgba = cube_colors(S, shape, index, color, partition=partition)
    # voxel grid axes: x = C (right), y = N (depth), z = H×W (up)
    filled = np.ones((C, N, P), dtype=bool)
    ax.voxels(
        filled,
        facecolors=np.transpose(rgba, (1, 0, 2, 3)),
        edgecolors=_rgba("#444444", 0.45),
        linewidth=0.4,
    )
    ax.set_box_aspect((C, N, P), zoom=0.85)
    ax.set_proj_type("ortho")
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()
    # axis names in data coordinates next to the edges of the cube (3-D axis labels get cut off)
    d = 0.08 * max(shape)
    ax.text(C / 2, -d, -d, "C", ha="center", va="top", fontsize=11)
    ax.text(C + d, N / 2, -d, "N", ha="left", va="top", fontsize=11)
    ax.text(-d, -d, P / 2, "H, W", ha="right", va="center", fontsize=11)
    if title:
        ax.set_title(title, pad=0)
    if caption:
        ax.text2D(0.5, 0.0, caption, transform=ax.transAxes, ha="center", va="top", fontsize=9)
    return mask


def draw_cubes(
    sets: Mapping[str, StatSet] | None = None,
    shape: Sequence[int] = (4, 6, 5),
    index: Sequence[int] = (0, 0, 0),
    figsize: tuple[float, float] | None = None,
    *,
    partition: bool = False,
    captions: bool = False,
    ncols: int | None = None,
):
    """One cube per method side by side; returns ``(fig, {name: mask})``.

    ``sets`` maps a title to a :class:`~normlib.sets.StatSet` (default:
    :func:`cube_sets`, the four methods of Wu & He's Figure 2).  With
    ``captions=True`` each cube carries :func:`set_caption` (``|S|`` and what
    S runs over); ``partition`` is passed to :func:`draw_cube`.  ``ncols``
    cubes go in a row (default: all in one row); ``ncols=2`` puts four cubes
    in a 2×2 grid that stays legible in a book's text column.

    Raises ``ValueError`` for an empty ``sets`` or ``ncols < 1`` (``TypeError`` for a non-integer), and whatever
    :func:`draw_cube` raises.
    """
    sets = dict(cube_sets() if sets is None else sets)
    if not sets:
        raise ValueError("draw_cubes: expected at least one set to draw, got none")
    k = len(sets)
    ncols = k if ncols is None else check_positive_int(ncols, "ncols", "draw_cubes")
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    fig = plt.figure(figsize=figsize or (2.4 * ncols, (2.8 if captions else 2.5) * nrows))
    masks = {}
    for i, (name, S) in enumerate(sets.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection="3d")
        caption = set_caption(S, shape) if captions else None
        masks[name] = draw_cube(ax, S, shape, index, title=name, partition=partition, caption=caption)
    # room on the left for the first column's "H, W" (about 0.7 inch, whatever the figure's width)
    fig.subplots_adjust(
        left=min(0.25, 0.7 / fig.get_figwidth()),
        right=0.98,
        bottom=0.1 / nrows if captions else 0.02,
        top=1 - 0.1 / nrows,
        wspace=0.05,
        hspace=0.25 if captions else 0.1,
    )
    return fig, masks


def _rgba(color: str, alpha: float) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgba

    return to_rgba(color, alpha)
