"""The CheXpert findings a chest phantom paints; `phantom`'s docstring says how each looks.

Reshapers change the body before the anatomy is drawn (a larger heart, a wider mediastinum);
painters then add to the film over the drawn anatomy. Each finding draws from its own random
stream, handed out in the order of `RESHAPERS` then `PAINTERS`. Consolidation, Pneumonia, Lung
Opacity and Lung Lesion are one patch in open lung differing only in numbers, so one painter
serves them from a table (`_PATCHES`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from cpo_pipeline.demo.phantom_anatomy import Anatomy, Body
from cpo_pipeline.demo.phantom_geometry import blob, curve, ellipse, inside, stroke
from cpo_pipeline.demo.phantom_placement import (
    ZONE_HEIGHTS,
    ZONE_RIBS,
    extent_factor,
    height_band,
    lung_point,
    lungs_to_paint,
    on_sides,
    pick_lung,
    sized,
)
from cpo_pipeline.radiology.placement import Placement


@dataclass(frozen=True)
class Severity:
    """How strongly to paint: a positive label paints in full, an uncertain one fainter/smaller."""

    amplitude: float
    size: float


POSITIVE = Severity(amplitude=1.0, size=1.0)
UNCERTAIN = Severity(amplitude=0.55, size=0.7)


@dataclass
class Film:
    """What findings add over the anatomy; painters accumulate into these in place."""

    opacity: np.ndarray  # fraction of the lung air column replaced by fluid, pus or collapse
    lucency: np.ndarray  # fraction of pleural air without lung behind it (pneumothorax)
    overlay: np.ndarray  # density added outright (devices, pleural line); negative removes bone


def _enlarge_heart(
    body: Body, severity: Severity, rng: np.random.Generator, placement: Placement
) -> Body:
    ratio = 0.5 + severity.amplitude * sized(rng.uniform(0.06, 0.16), 0.16, placement)
    return replace(body, cardiothoracic_ratio=ratio)


def _widen_mediastinum(
    body: Body, severity: Severity, rng: np.random.Generator, placement: Placement
) -> Body:
    factor = 1.0 + severity.amplitude * sized(rng.uniform(0.5, 0.85), 0.85, placement)
    return replace(body, mediastinum_half_width=body.mediastinum_half_width * factor)


def _paint_atelectasis(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    grid = anatomy.grid
    for lung in lungs_to_paint(anatomy, rng, placement):
        cx, cy = lung_point(anatomy, lung, height_band((0.6, 0.85), placement), rng)
        angle = rng.uniform(-0.35, 0.35)
        length = sized(rng.uniform(0.16, 0.26), 0.26, placement) * severity.size
        thickness = 0.035 * extent_factor(placement) * severity.size
        dx, dy = grid.x - cx, grid.y - cy
        along = dx * math.cos(angle) + dy * math.sin(angle)
        across = dy * math.cos(angle) - dx * math.sin(angle)
        # Lens-shaped: thickest at the middle, tapering to the ends.
        taper = np.clip(1.0 - (along / length) ** 2, 0.0, 1.0)
        band = inside(thickness * taper - np.abs(across), grid.edge)
        # Volume loss raises that side's hemidiaphragm, whichever zone the band is in.
        rise = sized(rng.uniform(0.05, 0.08), 0.08, placement) * severity.size
        volume_loss = inside(rise - lung.floor_gap, grid.edge)
        film.opacity += severity.amplitude * (0.9 * band + volume_loss) * lung.mask


@dataclass(frozen=True)
class _Patch:
    """What sets one patch-like finding apart: a round patch of opacity centred in open lung."""

    heights: tuple[float, float]  # band of lung heights to centre in when no zone is reported
    radius: tuple[float, float]  # range the radius is drawn from; a reported extent scales the top
    hardness: float  # `blob`'s: below 1 a flat top and sharp margin, above 1 a soft haze
    opacity: float  # fraction of the air column replaced at the centre, at full amplitude
    ragged: float = 0.0  # how far the mottle moves the margin, as a fraction of the radius
    texture: Callable[[np.ndarray], np.ndarray] | None = None  # mottle -> density across the patch


_PATCHES = {
    "Consolidation": _Patch(
        heights=(0.25, 0.85),
        radius=(0.15, 0.24),
        hardness=0.35,
        opacity=0.85,
        ragged=0.2,
        texture=lambda mottle: 0.9 + 0.1 * mottle,
    ),
    "Lung Lesion": _Patch(heights=(0.1, 0.8), radius=(0.04, 0.09), hardness=0.15, opacity=0.9),
    "Lung Opacity": _Patch(heights=(0.2, 0.85), radius=(0.22, 0.32), hardness=1.5, opacity=0.55),
    "Pneumonia": _Patch(
        heights=(0.45, 0.9),
        radius=(0.18, 0.28),
        hardness=0.6,
        opacity=0.8,
        ragged=0.25,
        # Mottled: the texture leaves pockets of air inside the airspace density.
        texture=lambda mottle: np.clip(0.55 + 0.6 * mottle, 0.2, 1.0),
    ),
}


def _paint_patch(
    patch: _Patch,
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    # Multiplied in the order the four painters this replaced used: the same floats, bit for bit.
    for lung in lungs_to_paint(anatomy, rng, placement):
        centre = lung_point(anatomy, lung, height_band(patch.heights, placement), rng)
        smallest, largest = patch.radius
        radius = sized(rng.uniform(smallest, largest), largest, placement) * severity.size
        if patch.ragged:
            radius = radius * (1.0 + patch.ragged * anatomy.mottle)
        shade = (
            severity.amplitude * patch.opacity * blob(anatomy.grid, centre, radius, patch.hardness)
        )
        if patch.texture is not None:
            shade = shade * patch.texture(anatomy.mottle)
        film.opacity += shade * lung.mask


def _paint_edema(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Both lungs around the hila, always: a side or zone in the report changes nothing."""
    radius = sized(rng.uniform(0.42, 0.55), 0.55, placement) * severity.size
    for lung in anatomy.lungs:
        haze = blob(anatomy.grid, lung.hilum, radius, 1.2) * (0.8 + 0.2 * anatomy.mottle)
        film.opacity += severity.amplitude * 0.55 * haze * lung.mask


def _paint_pleural_effusion(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Basal by nature: the report's zone changes nothing, its extent sets the depth."""
    bilateral = len(anatomy.lungs) > 1 and rng.random() < 0.3
    drawn = anatomy.lungs if bilateral else (pick_lung(anatomy, rng),)
    for lung in on_sides(anatomy.lungs, drawn, placement):
        depth = sized(rng.uniform(0.12, 0.3), 0.3, placement) * severity.size
        # The fluid climbs the lateral wall: a meniscus rising toward wall_gap = 0.
        climb = np.clip(1.0 - lung.wall_gap / 0.3, 0.0, 1.0) ** 2
        meniscus = 0.12 * extent_factor(placement) * severity.size * climb
        fluid = inside(anatomy.grid.y - (lung.sulcus_y - depth - meniscus), 2 * anatomy.grid.edge)
        film.opacity += severity.amplitude * fluid * lung.mask


def _paint_pleural_other(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    grid = anatomy.grid
    for lung in lungs_to_paint(anatomy, rng, placement):
        height = lung.sulcus_y - lung.apex_y
        start = rng.uniform(0.15, 0.35)
        length = sized(rng.uniform(0.35, 0.5), 0.5, placement)
        if placement.zone is not None:  # the stretch of wall centred on the report's zone
            low, high = ZONE_HEIGHTS[placement.zone]
            start = (low + high - length) / 2
        top = lung.apex_y + start * height
        bottom = top + length * height
        thickness = (0.045 + 0.02 * anatomy.mottle) * (severity.size * extent_factor(placement))
        stretch = inside(np.minimum(grid.y - top, bottom - grid.y), 0.06)
        rind = inside(thickness - lung.wall_gap, grid.edge) * stretch * lung.mask
        film.opacity += severity.amplitude * rind


# The rim of pleural air between chest wall and lung edge, in anatomical units (half the image's
# shorter side): 5-10% of the image's width, 2-4 cm on a 43-cm detector, a moderate
# pneumothorax. At half this width it was 1-2 px on the 32-px model and still faint at 64 px.
PNEUMOTHORAX_GAP = (0.10, 0.20)


def _paint_pneumothorax(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Apical by nature: the report's zone changes nothing, its extent sets the rim's width."""
    grid = anatomy.grid
    for lung in lungs_to_paint(anatomy, rng, placement):
        gap = sized(rng.uniform(*PNEUMOTHORAX_GAP), PNEUMOTHORAX_GAP[1], placement) * severity.size
        upper = np.clip((lung.hilum[1] + 0.1 - grid.y) / 0.3, 0.0, 1.0)
        pleural_air = inside(gap - lung.wall_gap, grid.edge) * upper * lung.mask
        np.maximum(film.lucency, severity.amplitude * pleural_air, out=film.lucency)
        pleural_line = inside(0.006 - np.abs(lung.wall_gap - gap), grid.edge) * upper * lung.mask
        film.overlay += 0.12 * severity.amplitude * pleural_line


def _paint_fracture(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    drawn = anatomy.ribs[int(rng.integers(len(anatomy.ribs)))]
    for ribs in on_sides(anatomy.ribs, (drawn,), placement):
        rib = int(rng.integers(3, 8))
        if placement.zone is not None:
            first, stop = ZONE_RIBS[placement.zone]
            rib = first + (rib - 3) % (stop - first)
        # The break sits over the lateral half of the same side's lung, in side-relative x.
        lung = next(lung for lung in anatomy.lungs if lung.side == ribs.side)
        at = lung.medial_x + rng.uniform(0.45, 0.8) * (lung.lateral_x - lung.medial_x)
        gap = 0.035 * extent_factor(placement) * severity.size
        broken = (ribs.index == rib) * inside(gap - np.abs(ribs.along - at), anatomy.grid.edge)
        film.overlay -= severity.amplitude * ribs.density * broken


def _paint_support_devices(
    anatomy: Anatomy,
    film: Film,
    severity: Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Devices run where anatomy puts them: a placement changes nothing."""
    grid, marks = anatomy.grid, anatomy.landmarks
    brightness = 0.35 * severity.amplitude
    wanted = rng.random(5) < (0.55, 0.45, 0.55, 0.2, 0.3)
    if not wanted.any():
        wanted[rng.integers(5)] = True
    if severity == UNCERTAIN:  # only the first of the devices, fainter
        wanted[np.argmax(wanted) + 1 :] = False
    endotracheal, nasogastric, central_line, pacemaker, ecg = wanted
    devices = np.zeros_like(grid.x)
    if endotracheal:
        tip = (marks.carina[0], marks.carina[1] - rng.uniform(0.08, 0.2))
        stroke(devices, grid, curve([marks.neck, tip]), 0.022, brightness)
    if nasogastric:
        neck = (marks.neck[0] - 0.04, marks.neck[1])
        below = (marks.carina[0] - 0.05, marks.stomach[1] - 0.1)
        stroke(devices, grid, curve([neck, below, marks.stomach]), 0.012, brightness)
    if central_line:
        entry = marks.subclavian[int(rng.integers(2))]
        bend = (0.5 * entry[0], entry[1] + 0.02)
        tip = (marks.superior_vena_cava[0], marks.superior_vena_cava[1] + rng.uniform(0.0, 0.2))
        stroke(devices, grid, curve([entry, bend, marks.superior_vena_cava, tip]), 0.01, brightness)
    if pacemaker:
        pocket = marks.subclavian[1]
        box = (pocket[0] + 0.05, pocket[1] + 0.02)
        devices = np.maximum(devices, 2 * brightness * ellipse(grid, box, (0.09, 0.06)))
        lead = [box, marks.superior_vena_cava, marks.right_atrium, marks.right_ventricle]
        stroke(devices, grid, curve(lead), 0.012, 1.5 * brightness)
    if ecg:
        for _ in range(int(rng.integers(2, 5))):
            electrode = (rng.uniform(-0.7, 0.7), rng.uniform(-0.8, -0.3))
            ring = ellipse(grid, electrode, (0.035, 0.035)) - ellipse(grid, electrode, (0.02, 0.02))
            devices = np.maximum(devices, brightness * ring)
            wire_end = (electrode[0] + rng.uniform(-0.4, 0.4), -1.3)
            stroke(
                devices,
                grid,
                curve([electrode, (electrode[0], -1.0), wire_end]),
                0.006,
                0.6 * brightness,
            )
    film.overlay += devices


_Reshaper = Callable[[Body, Severity, np.random.Generator, Placement], Body]
_Painter = Callable[[Anatomy, Film, Severity, np.random.Generator, Placement], None]

# Findings that change the anatomy itself, applied before the body is drawn.
RESHAPERS: dict[str, _Reshaper] = {
    "Cardiomegaly": _enlarge_heart,
    "Enlarged Cardiomediastinum": _widen_mediastinum,
}
# The order fixes which random stream each finding draws from: append, never reorder.
PAINTERS: dict[str, _Painter] = {
    "Atelectasis": _paint_atelectasis,
    "Consolidation": functools.partial(_paint_patch, _PATCHES["Consolidation"]),
    "Edema": _paint_edema,
    "Fracture": _paint_fracture,
    "Lung Lesion": functools.partial(_paint_patch, _PATCHES["Lung Lesion"]),
    "Lung Opacity": functools.partial(_paint_patch, _PATCHES["Lung Opacity"]),
    "Pleural Effusion": _paint_pleural_effusion,
    "Pleural Other": _paint_pleural_other,
    "Pneumonia": functools.partial(_paint_patch, _PATCHES["Pneumonia"]),
    "Pneumothorax": _paint_pneumothorax,
    "Support Devices": _paint_support_devices,
}
