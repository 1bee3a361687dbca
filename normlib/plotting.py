"""Pictures of the set S on the N, C, H×W cube (as in Wu & He 2018, Figure 2).

The shading comes from :meth:`normlib.sets.StatSet.mask`, the same description
of S that computes the numbers, so the picture cannot disagree with the
arithmetic.  Spatial positions H×W are flattened into one axis of the cube.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .sets import StatSet, batch_set, group_set, instance_set, layer_set

__all__ = ["cube_sets", "draw_cube", "draw_cubes"]

SHADE = "#4C72B0"
REST = "#DDDDDD"


def cube_sets(num_groups: int = 2) -> dict[str, StatSet]:
    """The four methods' sets S for a cube-shaped input (N, C, H×W)."""
    return {
        "Batch Norm": batch_set(),
        "Layer Norm": layer_set(2),  # (C, H×W) of one sample
        "Instance Norm": instance_set(),
        "Group Norm": group_set(num_groups),
    }


def draw_cube(
    ax,
    S: StatSet,
    shape: Sequence[int] = (4, 6, 5),
    index: Sequence[int] = (0, 0, 0),
    title: str | None = None,
    color: str = SHADE,
) -> np.ndarray:
    """Draw the (N, C, H×W) cube on a 3-D axis and shade the set S of entry ``index``.

    Returns the boolean mask that was shaded (shape ``shape``), so a caller can
    assert what the picture shows.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"draw_cube: expected a cube shape (N, C, H*W), got {shape}")
    mask = S.mask(shape, tuple(index))
    # voxel grid axes: x = C, y = N, z = H×W (positions drawn upward)
    filled = np.ones((shape[1], shape[0], shape[2]), dtype=bool)
    shaded = np.transpose(mask, (1, 0, 2))
    colors = np.where(shaded[..., None], np.array(_rgba(color, 0.9)), np.array(_rgba(REST, 0.25)))
    ax.voxels(filled, facecolors=colors, edgecolors=_rgba("#555555", 0.35), linewidth=0.4)
    ax.set_xlabel("C")
    ax.set_ylabel("N")
    ax.set_zlabel("H, W")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])
    ax.set_box_aspect((shape[1], shape[0], shape[2]))
    ax.view_init(elev=22, azim=-58)
    ax.grid(False)
    if title:
        ax.set_title(title)
    return mask


def draw_cubes(
    sets: Mapping[str, StatSet] | None = None,
    shape: Sequence[int] = (4, 6, 5),
    index: Sequence[int] = (0, 0, 0),
    figsize: tuple[float, float] | None = None,
):
    """One cube per method side by side; returns ``(fig, {name: mask})``."""
    sets = dict(cube_sets() if sets is None else sets)
    k = len(sets)
    fig = plt.figure(figsize=figsize or (3.2 * k, 3.4))
    masks = {}
    for i, (name, S) in enumerate(sets.items()):
        ax = fig.add_subplot(1, k, i + 1, projection="3d")
        masks[name] = draw_cube(ax, S, shape, index, title=name)
    fig.tight_layout()
    return fig, masks


def _rgba(color: str, alpha: float) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgba

    return to_rgba(color, alpha)
