"""Where on the phantom a finding lands: the report's side, zone and extent read on the anatomy.

A `radiology.placement.Placement` field left None keeps the finding's own random choice; these
helpers make that choice's draw either way, so a placement never moves a finding's later draws.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from cpo_pipeline.demo.phantom_anatomy import Anatomy, Lung, Ribs
from cpo_pipeline.radiology.placement import BILATERAL, LEFT, LOWER, MIDDLE, RIGHT, UPPER, Placement

# Which lung (or rib cage) a patient's side is on a frontal view: `Lung.side` and `Ribs.side`.
_IMAGE_SIDE = {RIGHT: -1, LEFT: 1}
# Bands of lung height, 0 at the apex to 1 at the sulcus; lower overlaps middle a little so a
# basal finding is not pushed below the domes, where little open lung is left to hold it.
ZONE_HEIGHTS = {UPPER: (0.05, 0.35), MIDDLE: (0.35, 0.65), LOWER: (0.62, 0.92)}
# Posterior ribs (counted from 0 at the top) whose lateral arcs cross each band: [first, last).
ZONE_RIBS = {UPPER: (1, 4), MIDDLE: (4, 7), LOWER: (7, 9)}


def pick_lung(anatomy: Anatomy, rng: np.random.Generator) -> Lung:
    """One of the anatomy's lungs at random, drawn even when a lateral view has only one."""
    return anatomy.lungs[int(rng.integers(len(anatomy.lungs)))]


_Sided = TypeVar("_Sided", Lung, Ribs)


def on_sides(
    parts: tuple[_Sided, ...], drawn: tuple[_Sided, ...], placement: Placement
) -> tuple[_Sided, ...]:
    """The lungs (or rib cages) to paint in: those drawn, or those the placement's side names.

    `parts` is all of them; a lateral view has only one, superimposing both sides, so there the
    side changes nothing. "bilateral" returns both in the anatomy's order (image left first), so
    the first is painted with the values the drawn one would have been.
    """
    if placement.side is None or len(parts) == 1:
        return drawn
    if placement.side == BILATERAL:
        return parts
    return tuple(part for part in parts if part.side == _IMAGE_SIDE[placement.side])

def lungs_to_paint(anatomy: Anatomy, rng: np.random.Generator, placement: Placement
                   ) -> tuple[Lung, ...]:
    """The lungs a one-lung finding is painted in: a lung drawn at random (always drawn, so the
    random stream is the same whatever the placement), or those the placement's side names."""
    return on_sides(anatomy.lungs, (pick_lung(anatomy, rng),), placement)



def height_band(default: tuple[float, float], placement: Placement) -> tuple[float, float]:
    """The band of lung heights to centre a finding in: the placement's zone, else the
    finding's own."""
    return ZONE_HEIGHTS.get(placement.zone, default)


def extent_factor(placement: Placement) -> float:
    """How much of its largest size a finding is painted at: 1 unless the report's extent is
    smaller (a trace, extent 0.35, paints at a little over half)."""
    return 1.0 if placement.extent is None else 0.3 + 0.7 * placement.extent


def sized(drawn: float, largest: float, placement: Placement) -> float:
    """A randomly drawn size, or, when the report states the extent, `largest` scaled by it.

    The draw is made either way so the finding's later random choices stay where they were."""
    return drawn if placement.extent is None else largest * extent_factor(placement)


def lung_point(
    anatomy: Anatomy, lung: Lung, heights: tuple[float, float], rng: np.random.Generator
) -> tuple[float, float]:
    """A random point of open lung, not hidden by heart or mediastinum, in a band of heights.

    Heights run from 0 at the apex to 1 at the sulcus. Falls back to the hilum when the pose hides
    the band (the caller still paints, only less conspicuously).
    """
    grid = anatomy.grid
    rows, cols = grid.x.shape
    for _ in range(64):
        x = lung.side * rng.uniform(lung.medial_x, lung.lateral_x)
        y = lung.apex_y + rng.uniform(*heights) * (lung.sulcus_y - lung.apex_y)
        row, col = (round(v) for v in grid.pixel_of(x, y))
        if (
            0 <= row < rows
            and 0 <= col < cols
            and lung.mask[row, col] * anatomy.air[row, col] > 0.9
        ):
            return x, y
    return lung.hilum
