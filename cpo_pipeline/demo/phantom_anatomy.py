"""The chest a phantom's findings are painted into: the patient's build and pose, and the anatomy.

`sample_body` draws a patient (size, pose, inspiration, heart and mediastinum); `chest_anatomy`
draws, on a grid posed for that patient, the trunk, lungs with vascular markings, heart,
mediastinum, hemidiaphragm domes, spine, clavicles and ribs, and returns the lung fields, rib
cages and device landmarks the finding painters place themselves by. Frontal views put the
patient's right on the image left; lateral views superimpose both lungs into one field, anterior
on the image left and the spine on the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cpo_pipeline.demo.phantom_geometry import (
    Grid,
    blob,
    curve,
    ellipse,
    inside,
    radial_streaks,
    smooth_noise,
    stroke,
)
from cpo_pipeline.mimic_layout import FRONTAL_VIEWS

_NORMAL_MEDIASTINUM = 0.14


@dataclass(frozen=True)
class Body:
    """The patient and pose: lengths in anatomical units (the shorter image side spans -1..1)."""

    view: str
    scale: float
    shift: tuple[float, float]
    rotation: float
    thorax_half_width: float
    apex_y: float
    dome_y: float
    right_dome_rise: float
    cardiothoracic_ratio: float
    mediastinum_half_width: float
    gastric_bubble: bool


@dataclass(frozen=True)
class Lung:
    """One lung field and the distances findings are placed by (anatomical units)."""

    side: int  # +1 draws on the image right (patient's left on a frontal view)
    mask: np.ndarray
    wall_gap: np.ndarray  # inward from the lateral (lateral view: posterior) chest wall
    floor_gap: np.ndarray  # upward from the hemidiaphragm
    hilum: tuple[float, float]
    apex_y: float
    sulcus_y: float  # lowest point: costophrenic angle or posterior sulcus
    medial_x: float  # extent in side-relative x (side * x) at mid height
    lateral_x: float


@dataclass(frozen=True)
class Ribs:
    """One side's rib cage: which rib each pixel belongs to and its bone density."""

    side: int  # as `Lung.side`: +1 draws on the image right
    along: np.ndarray  # side-relative x
    index: np.ndarray  # rib number, counted from the top; outside the cage where density is 0
    density: np.ndarray


@dataclass(frozen=True)
class Landmarks:
    """Where devices run: anatomical points each view places differently."""

    neck: tuple[float, float]
    carina: tuple[float, float]
    superior_vena_cava: tuple[float, float]
    right_atrium: tuple[float, float]
    right_ventricle: tuple[float, float]
    stomach: tuple[float, float]
    subclavian: tuple[tuple[float, float], tuple[float, float]]  # image-left, image-right


@dataclass(frozen=True)
class Anatomy:
    """A drawn chest: its densities and the parts findings are placed by."""

    grid: Grid
    density: np.ndarray  # soft tissue and bone, before lung air is taken away
    air: np.ndarray  # lung air column, 0..1, already hidden behind heart and mediastinum
    markings: np.ndarray  # vascular markings, shown only where the lung holds air
    mottle: np.ndarray  # smooth unit-variance noise findings borrow for texture
    lungs: tuple[Lung, ...]
    ribs: tuple[Ribs, ...]
    landmarks: Landmarks


def sample_body(view: str, rng: np.random.Generator) -> Body:
    """A random patient and pose for `view`; AP (portable) films get a higher diaphragm."""
    portable = view == "AP"
    return Body(
        view=view,
        scale=rng.uniform(0.86, 1.0),
        shift=(rng.uniform(-0.04, 0.04), rng.uniform(-0.05, 0.05)),
        rotation=rng.uniform(-1.0, 1.0) * (0.06 if portable else 0.03),
        thorax_half_width=rng.uniform(0.74, 0.82),
        apex_y=rng.uniform(-0.86, -0.78),
        # Portable films are taken in shallower inspiration: the domes sit higher.
        dome_y=rng.uniform(0.02, 0.14) if portable else rng.uniform(0.12, 0.24),
        right_dome_rise=rng.uniform(0.02, 0.07),
        cardiothoracic_ratio=rng.uniform(0.38, 0.46),
        mediastinum_half_width=rng.uniform(0.12, _NORMAL_MEDIASTINUM + 0.02),
        gastric_bubble=bool(rng.random() < 0.7),
    )


def chest_anatomy(grid: Grid, body: Body, rng: np.random.Generator) -> Anatomy:
    """The anatomy of `body` drawn on `grid`: frontal or lateral by the body's view; `rng`
    draws the lung texture and vascular markings."""
    build = _frontal_anatomy if body.view in FRONTAL_VIEWS else _lateral_anatomy
    return build(grid, body, rng)


def _trunk(grid: Grid, half_width: float, centre_x: float, shoulder_y: float) -> np.ndarray:
    """Soft tissue: thickest mid-line, thinning to the skin, narrowing to the neck above the shoulders."""
    x = grid.x - centre_x
    shoulder = np.sqrt(np.clip((grid.y - shoulder_y) / 0.3 + 1.0, 0.0, 1.0))
    width = 0.3 + (half_width - 0.3) * shoulder
    depth = np.sqrt(np.clip(1.0 - (x / width) ** 2, 0.0, 1.0))
    return 0.3 * inside(width - np.abs(x), grid.edge) + 0.3 * depth


def _lung(
    grid: Grid,
    side: int,
    *,
    medial: np.ndarray | float,
    wall: np.ndarray,
    floor: np.ndarray,
    hilum: tuple[float, float],
    apex_y: float,
    sulcus_y: float,
    extent: tuple[float, float],
) -> Lung:
    along = side * grid.x
    wall_gap, floor_gap = wall - along, floor - grid.y
    signed_distance = np.minimum(
        np.minimum(wall_gap, floor_gap), np.minimum(along - medial, grid.y - apex_y)
    )
    return Lung(
        side=side,
        mask=inside(signed_distance, grid.edge),
        wall_gap=wall_gap,
        floor_gap=floor_gap,
        hilum=hilum,
        apex_y=apex_y,
        sulcus_y=sulcus_y,
        medial_x=extent[0],
        lateral_x=extent[1],
    )


def _lung_profile(grid: Grid, apex_y: float, sulcus_y: float) -> np.ndarray:
    """0 at the apex, rising quickly, 1 at the base: how far a lung has widened at each height."""
    reach = np.clip((grid.y - apex_y) / (sulcus_y - apex_y), 0.0, 1.0)
    return np.sqrt(1.0 - (1.0 - reach) ** 3)


def _rib_cage(
    grid: Grid,
    side: int,
    *,
    first_y: float,
    spacing: float,
    bend: tuple[float, float],
    span: tuple[float, float],
    density: float,
    visibility: np.ndarray,
) -> Ribs:
    """Ten ribs as one periodic band: rib k runs along y = first_y + k*spacing - a*x + b*x**3.

    `bend` is (a, b) in side-relative x; `visibility` fades ribs where no lung is behind them.
    """
    along = side * grid.x
    centre_line = first_y - bend[0] * along + bend[1] * (along * along * along)
    phase = (grid.y - centre_line) / spacing
    index = np.floor(phase)
    band = inside(0.021 / spacing - np.abs(phase - index - 0.5), grid.edge / spacing)
    within = (index >= 0) & (index < 10)
    lateral = inside(np.minimum(along - span[0], span[1] - along), 4 * grid.edge)
    return Ribs(
        side=side,
        along=along,
        index=index,
        density=density * band * within * lateral * visibility,
    )


def _vascular_markings(
    grid: Grid, lungs: tuple[Lung, ...], mottle: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Vessels fanning out of each hilum and fading toward the periphery, over a fine texture."""
    markings = 0.025 * mottle
    for lung in lungs:
        dx, dy = grid.x - lung.hilum[0], grid.y - lung.hilum[1]
        distance = np.sqrt(dx * dx + dy * dy)
        vessels = np.clip(radial_streaks(grid, lung.hilum, rng), 0.0, None) ** 2
        # Vessels emerge from under the hilar shadow rather than converging to a visible point.
        vessels *= (
            0.06 * np.exp(distance * (-1 / 0.45)) * np.clip((distance - 0.05) / 0.2, 0.0, 1.0)
        )
        hilar_shadow = 0.14 * blob(grid, lung.hilum, 0.13, 1.5)
        markings = markings + (vessels + hilar_shadow) * lung.mask
    return markings


def _frontal_anatomy(grid: Grid, body: Body, rng: np.random.Generator) -> Anatomy:
    x, y = grid.x, grid.y
    half_width, medial = body.thorax_half_width, body.mediastinum_half_width
    magnification = 1.08 if body.view == "AP" else 1.0
    heart_half_width = body.cardiothoracic_ratio * half_width * magnification
    heart_centre = (0.3 * heart_half_width, body.dome_y - 0.06)
    # Growing about a point inside it, a larger heart always covers the smaller one.
    heart = ellipse(grid, heart_centre, (heart_half_width, 0.9 * heart_half_width))
    aortic_knob = ellipse(grid, (medial - 0.02, body.apex_y + 0.45), (0.07, 0.06))
    lungs = _frontal_lungs(grid, body)
    lung_field = lungs[0].mask + lungs[1].mask
    ribs, bone = _frontal_skeleton(grid, body, visibility=0.4 + 0.6 * lung_field)

    carina_y = lungs[0].hilum[1] - 0.12
    trachea = inside(0.035 - np.abs(x), grid.edge) * inside(carina_y - y, grid.edge)
    stomach = (0.45 * half_width, body.dome_y + 0.13)
    bubble = ellipse(grid, stomach, (0.1, 0.055)) if body.gastric_bubble else 0.0
    soft_tissue = _trunk(grid, half_width + 0.3, 0.0, body.apex_y)
    mottle = smooth_noise(rng, x.shape, 40)
    clavicle_y = _clavicle_y(body)
    return Anatomy(
        grid=grid,
        density=soft_tissue + bone - 0.1 * trachea - 0.12 * bubble,
        air=lung_field * (1.0 - 0.88 * np.maximum(heart, aortic_knob)),
        markings=_vascular_markings(grid, lungs, mottle, rng),
        mottle=mottle,
        lungs=lungs,
        ribs=ribs,
        landmarks=Landmarks(
            neck=(0.0, -1.3),
            carina=(0.0, carina_y),
            superior_vena_cava=(-0.7 * medial, body.apex_y + 0.5),
            right_atrium=(heart_centre[0] - 0.7 * heart_half_width, heart_centre[1] - 0.05),
            right_ventricle=(heart_centre[0] + 0.4 * heart_half_width, heart_centre[1] + 0.1),
            stomach=stomach,
            subclavian=((-0.55, clavicle_y + 0.08), (0.55, clavicle_y + 0.08)),
        ),
    )


def _frontal_lungs(grid: Grid, body: Body) -> tuple[Lung, Lung]:
    """The right lung (image left) and the left lung (image right), either side of the mediastinum."""
    half_width, medial = body.thorax_half_width, body.mediastinum_half_width
    sulcus_y = body.dome_y + 0.2
    wall = medial + (half_width - medial) * _lung_profile(grid, body.apex_y, sulcus_y)
    lungs = []
    for side in (-1, 1):
        dome = body.dome_y - (body.right_dome_rise if side < 0 else 0.0)
        across = np.clip((side * grid.x - medial) / (half_width - medial), 0.0, 1.0)
        # The dome peaks just medial of mid-hemithorax and falls steeply into the costophrenic angle.
        rise = np.where(
            across > 0.45, ((across - 0.45) / 0.55) ** 2, 0.3 * ((0.45 - across) / 0.45) ** 2
        )
        hilum = (side * 0.3 * half_width, body.apex_y + 0.55 * (dome - body.apex_y) - 0.03 * side)
        lungs.append(
            _lung(
                grid,
                side,
                medial=medial,
                wall=wall,
                floor=dome + 0.2 * rise,
                hilum=hilum,
                apex_y=body.apex_y,
                sulcus_y=dome + 0.2,
                extent=(medial, half_width),
            )
        )
    return lungs[0], lungs[1]


def _clavicle_y(body: Body) -> float:
    # AP films project the clavicles higher (lordotic tilt of the beam).
    return body.apex_y + (0.16 if body.view == "PA" else 0.08)


def _frontal_skeleton(
    grid: Grid, body: Body, visibility: np.ndarray
) -> tuple[tuple[Ribs, Ribs], np.ndarray]:
    """Posterior ribs (returned for fractures), plus their bone density with anterior ribs, spine
    and clavicles."""
    half_width = body.thorax_half_width
    spacing = (body.dome_y + 0.2 - body.apex_y) / 9.0
    posterior = tuple(
        _rib_cage(
            grid,
            side,
            first_y=body.apex_y - 0.05,
            spacing=spacing,
            bend=(0.25, 0.5),
            span=(0.05, half_width + 0.05),
            density=0.075,
            visibility=visibility,
        )
        for side in (-1, 1)
    )
    bone = posterior[0].density + posterior[1].density
    for side in (-1, 1):  # anterior ribs: fainter, sloping down toward the sternum
        anterior = _rib_cage(
            grid,
            side,
            first_y=body.apex_y + 0.25,
            spacing=spacing,
            bend=(0.45, 0.0),
            span=(0.3, half_width + 0.05),
            density=0.035,
            visibility=visibility,
        )
        bone += anterior.density
    vertebrae = 0.7 + 0.3 * np.cos(grid.y * (2 * math.pi / 0.12))
    bone += 0.05 * inside(0.06 - np.abs(grid.x), grid.edge) * vertebrae
    clavicle_y = _clavicle_y(body)
    for side in (-1, 1):
        sternal_end, shaft = (side * 0.06, clavicle_y + 0.06), (side * 0.4, clavicle_y)
        acromial_end = (side * 0.8, clavicle_y - 0.1)
        stroke(bone, grid, curve([sternal_end, shaft, acromial_end]), 0.055, 0.1)
    return posterior, bone


def _lateral_anatomy(grid: Grid, body: Body, rng: np.random.Generator) -> Anatomy:
    """Both lungs superimposed into one field; anterior is image left, the spine on the right."""
    x, y = grid.x, grid.y
    half_depth = 0.8 * body.thorax_half_width
    sulcus_y = body.dome_y + 0.25
    width = half_depth * _lung_profile(grid, body.apex_y, sulcus_y)
    across = np.clip((x + half_depth) / (2 * half_depth), 0.0, 1.0)
    hilum = (0.05, body.apex_y + 0.55 * (body.dome_y - body.apex_y))
    lung = _lung(
        grid,
        1,
        # A wide mediastinum fills the retrosternal clear space.
        medial=-width + 2.5 * (body.mediastinum_half_width - _NORMAL_MEDIASTINUM),
        wall=width,
        floor=body.dome_y + 0.05 + 0.4 * (across - 0.3) ** 2,
        hilum=hilum,
        apex_y=body.apex_y,
        sulcus_y=sulcus_y,
        extent=(-half_depth, half_depth),
    )
    heart_depth = body.cardiothoracic_ratio * 1.1 * half_depth
    heart_centre = (-half_depth + 0.9 * heart_depth, body.dome_y - 0.02)
    heart = ellipse(grid, heart_centre, (heart_depth, 1.1 * heart_depth))

    ribs = _rib_cage(
        grid,
        1,
        first_y=body.apex_y + 0.1,
        spacing=(sulcus_y - body.apex_y) / 9.0,
        bend=(0.3, 0.0),
        span=(-half_depth, half_depth + 0.1),
        density=0.06,
        visibility=0.4 + 0.6 * lung.mask,
    )
    vertebrae = np.abs(np.mod(y, 0.12) - 0.06) < 0.048
    spine = inside(0.1 - np.abs(x - half_depth - 0.16), grid.edge) * vertebrae
    spine *= inside(y - body.apex_y + 0.2, grid.edge)  # the neck is narrower than the chest
    sternum = inside(0.025 - np.abs(x + half_depth + 0.06), grid.edge)
    sternum *= inside(np.minimum(y - body.apex_y - 0.25, body.dome_y - y), grid.edge)
    stomach = (-0.1, body.dome_y + 0.22)
    bubble = ellipse(grid, stomach, (0.1, 0.05)) if body.gastric_bubble else 0.0
    soft_tissue = _trunk(grid, half_depth + 0.35, 0.08, body.apex_y)
    mottle = smooth_noise(rng, x.shape, 40)
    return Anatomy(
        grid=grid,
        density=soft_tissue + ribs.density + 0.13 * spine + 0.08 * sternum - 0.12 * bubble,
        air=lung.mask * (1.0 - 0.88 * heart),
        markings=_vascular_markings(grid, (lung,), mottle, rng),
        mottle=mottle,
        lungs=(lung,),
        ribs=(ribs,),
        landmarks=Landmarks(
            neck=(-0.2, -1.3),
            carina=(0.05, hilum[1] - 0.08),
            superior_vena_cava=(-0.15, body.apex_y + 0.5),
            right_atrium=(heart_centre[0] + 0.2, heart_centre[1] - 0.1),
            right_ventricle=(heart_centre[0] - 0.3 * heart_depth, heart_centre[1] + 0.1),
            stomach=stomach,
            subclavian=((-0.5, body.apex_y + 0.2), (-0.45, body.apex_y + 0.25)),
        ),
    )
