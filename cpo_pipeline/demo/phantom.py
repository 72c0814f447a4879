"""Procedural chest radiographs with CheXpert findings painted where a radiologist would look.

`render_chest_phantom` draws a density map ("MONOCHROME2 sense": bright = dense) of a trunk, two
lungs with vascular markings, mediastinum and heart, hemidiaphragm domes, spine, clavicles and
ribs, then exposes it to counts with per-image variation in patient size, inspiration, rotation,
exposure and noise. PA and AP are frontal (patient's right on the image left; AP has a slightly
magnified heart, a higher diaphragm, lower contrast and more noise, like a portable film);
LATERAL and LL share one simpler silhouette (anterior on the image left, spine on the right).

What each finding looks like when its label is 1.0 (-1.0 paints it fainter and smaller; 0.0,
None and NaN paint nothing; No Finding paints nothing either way):

- Atelectasis: a plate-like band of density in a lower lung zone, plus volume loss shown as the
  hemidiaphragm on that side rising.
- Cardiomegaly: the heart silhouette widens to a cardiothoracic ratio above 0.5 (0.56-0.66).
- Consolidation: a dense, sharply bounded patch in one lung zone.
- Edema: bilateral perihilar haze fading toward the periphery (bat wing).
- Enlarged Cardiomediastinum: the mediastinum widens by half or more.
- Fracture: a gap across one rib, lateral to the spine.
- Lung Lesion: a round, sharply marginated nodule or mass.
- Lung Opacity: a large, hazy, soft-edged patch.
- Pleural Effusion: dense fluid filling a lung base with a meniscus climbing the lateral wall,
  blunting the costophrenic angle (one side, sometimes both).
- Pleural Other: irregular pleural thickening along the lateral chest wall.
- Pneumonia: a patchy, mottled airspace density, usually mid or lower zone.
- Pneumothorax: a dark rim without lung markings along the apex and upper lateral wall of one
  lung, bounded by a thin bright visceral pleural line.
- Support Devices: thin bright tubes and lines (endotracheal tube, nasogastric tube, central
  line, ECG leads), sometimes a pacemaker box with its lead.

`placements` (label -> `radiology.placement.Placement`) paints a finding where its report puts
it; a field left None, or a finding without a placement, keeps the random choice above.

- side is the patient's: on a frontal view "right" paints the image-left lung (or rib cage),
  "left" the image-right one and "bilateral" both (a one-sided finding such as a nodule or a
  pneumothorax once in each lung). A lateral view superimposes the lungs into one field, so side
  changes nothing there. Edema is always bilateral; Cardiomegaly, Enlarged Cardiomediastinum and
  Support Devices have no side.
- zone is the band of lung height (apex 0, sulcus 1) the finding is centred in: upper 0.05-0.35,
  middle 0.35-0.65, lower 0.62-0.92; for a fracture, which ribs break (upper 1-3, middle 4-6,
  lower 7-8). Pneumothorax stays apical, effusion basal and edema perihilar whatever the zone.
- extent fixes the size otherwise drawn at random (the cardiothoracic ratio and mediastinal
  widening too): 1 ("large", "severe") paints the top of the random range, smaller words shrink
  it linearly, a "trace" to a little over half. The amplitude stays the label's.

Every random choice comes from streams split off `rng` in a fixed order, so the same seed gives
the same patient whatever the labels: toggling one finding changes only that finding's pixels. A
placement overrides a value only after it has been drawn, so a finding without one draws, and
paints, exactly what it would with no placements at all; a second lung painted for "bilateral"
draws after the first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from cpo_pipeline.radiology.placement import (
    BILATERAL,
    LEFT,
    LOWER,
    MIDDLE,
    RIGHT,
    SIDES,
    UPPER,
    ZONES,
    Placement,
)

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")

# Finer detail than this is invisible to the downstream model; larger images are upsampled.
_MAX_WORKING_SIDE = 768
_LUNG_AIR = 0.36  # density a full lung air column removes from the soft tissue in front of it
_PLEURAL_AIR = 0.07  # extra darkness of a pneumothorax over aerated lung
_NORMAL_MEDIASTINUM = 0.14

_UNPLACED = Placement()
# Which lung (or rib cage) a patient's side is on a frontal view: `_Lung.side` and `_Ribs.side`.
_IMAGE_SIDE = {RIGHT: -1, LEFT: 1}
# Bands of lung height, 0 at the apex to 1 at the sulcus; lower overlaps middle a little so a
# basal finding is not pushed below the domes, where little open lung is left to hold it.
_ZONE_HEIGHTS = {UPPER: (0.05, 0.35), MIDDLE: (0.35, 0.65), LOWER: (0.62, 0.92)}
# Posterior ribs (counted from 0 at the top) whose lateral arcs cross each band: [first, last).
_ZONE_RIBS = {UPPER: (1, 4), MIDDLE: (4, 7), LOWER: (7, 9)}


@dataclass(frozen=True)
class _Severity:
    """How strongly to paint: a positive label paints in full, an uncertain one fainter/smaller."""

    amplitude: float
    size: float


_POSITIVE = _Severity(amplitude=1.0, size=1.0)
_UNCERTAIN = _Severity(amplitude=0.55, size=0.7)


@dataclass(frozen=True)
class _Body:
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
class _Exposure:
    """How densities become normalised counts: black level, white level, contrast, grain."""

    black: float
    white: float
    gamma: float
    heel: float
    grain: float


@dataclass(frozen=True)
class _Grid:
    """Anatomical coordinates of every working pixel and the pose that maps them."""

    x: np.ndarray
    y: np.ndarray
    edge: float  # width of an anti-aliased edge, in anatomical units
    pixels_per_unit: float
    body: _Body

    def pixel_of(self, x: float, y: float) -> tuple[float, float]:
        """Working (row, column) of an anatomical point: the inverse of the grid's pose."""
        b = self.body
        cos, sin = math.cos(b.rotation), math.sin(b.rotation)
        xs, ys = (x + b.shift[0]) * self.pixels_per_unit, (y + b.shift[1]) * self.pixels_per_unit
        rows, cols = self.x.shape
        return sin * xs + cos * ys + rows / 2 - 0.5, cos * xs - sin * ys + cols / 2 - 0.5


@dataclass(frozen=True)
class _Lung:
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
class _Ribs:
    """One side's rib cage: which rib each pixel belongs to and its bone density."""

    side: int  # as `_Lung.side`: +1 draws on the image right
    along: np.ndarray  # side-relative x
    index: np.ndarray  # rib number, counted from the top; outside the cage where density is 0
    density: np.ndarray


@dataclass(frozen=True)
class _Landmarks:
    """Where devices run: anatomical points each view places differently."""

    neck: tuple[float, float]
    carina: tuple[float, float]
    superior_vena_cava: tuple[float, float]
    right_atrium: tuple[float, float]
    right_ventricle: tuple[float, float]
    stomach: tuple[float, float]
    subclavian: tuple[tuple[float, float], tuple[float, float]]  # image-left, image-right


@dataclass(frozen=True)
class _Anatomy:
    grid: _Grid
    density: np.ndarray  # soft tissue and bone, before lung air is taken away
    air: np.ndarray  # lung air column, 0..1, already hidden behind heart and mediastinum
    markings: np.ndarray  # vascular markings, shown only where the lung holds air
    mottle: np.ndarray  # smooth unit-variance noise findings borrow for texture
    lungs: tuple[_Lung, ...]
    ribs: tuple[_Ribs, ...]
    landmarks: _Landmarks


@dataclass
class _Film:
    """What findings add over the anatomy; painters accumulate into these in place."""

    opacity: np.ndarray  # fraction of the lung air column replaced by fluid, pus or collapse
    lucency: np.ndarray  # fraction of pleural air without lung behind it (pneumothorax)
    overlay: np.ndarray  # density added outright (devices, pleural line); negative removes bone


def render_chest_phantom(
    findings: Mapping[str, float | None],
    view: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    *,
    bits_stored: int = 12,
    placements: Mapping[str, Placement] | None = None,
) -> np.ndarray:
    """Render a synthetic chest radiograph as uint16 (rows, cols), bright = dense, 0..2**bits-1.

    `placements` (label -> side, zone, extent) paints those findings where their report puts
    them; see the module docstring.
    """
    if view not in FRONTAL_VIEWS + LATERAL_VIEWS:
        raise ValueError(f"view {view!r}: expected one of {FRONTAL_VIEWS + LATERAL_VIEWS}")
    if not 12 <= bits_stored <= 16:
        raise ValueError(f"bits_stored {bits_stored}: expected 12..16")
    rows, cols = size
    if rows < 16 or cols < 16:
        raise ValueError(f"size {size}: expected at least 16 x 16 pixels")
    severities = _severities(findings)
    placed = _placements(placements or {})

    body_seed, texture_seed, exposure_seed, *finding_seeds = rng.integers(
        0, 2**63, size=3 + len(_PAINTERS) + len(_RESHAPERS)
    )
    finding_rngs = {
        name: np.random.default_rng(seed)
        for name, seed in zip((*_RESHAPERS, *_PAINTERS), finding_seeds, strict=True)
    }
    body = _sample_body(view, np.random.default_rng(body_seed))
    for name, reshape in _RESHAPERS.items():
        if name in severities:
            body = reshape(body, severities[name], finding_rngs[name], placed[name])

    factor = min(1.0, _MAX_WORKING_SIDE / max(rows, cols))
    grid = _grid((max(16, round(rows * factor)), max(16, round(cols * factor))), body)
    build = _frontal_anatomy if view in FRONTAL_VIEWS else _lateral_anatomy
    anatomy = build(grid, body, np.random.default_rng(texture_seed))

    film = _Film(*(np.zeros_like(grid.x) for _ in range(3)))
    for name, paint in _PAINTERS.items():
        if name in severities:
            paint(anatomy, film, severities[name], finding_rngs[name], placed[name])

    exposure_rng = np.random.default_rng(exposure_seed)
    exposure = _sample_exposure(view, exposure_rng)
    signal = _expose(_composite(anatomy, film), grid, exposure)
    return _digitise(signal, (rows, cols), exposure.grain, exposure_rng, 2**bits_stored - 1)


def _severities(findings: Mapping[str, float | None]) -> dict[str, _Severity]:
    known = set(_PAINTERS) | set(_RESHAPERS) | {"No Finding"}
    severities = {}
    for name, value in findings.items():
        if name not in known:
            raise ValueError(f"finding {name!r}: expected a CheXpert label, one of {sorted(known)}")
        blank = value is None or (isinstance(value, float) and math.isnan(value))
        if blank or value == 0.0 or name == "No Finding":
            continue
        if value not in (1.0, -1.0):
            raise ValueError(f"finding {name!r} = {value!r}: expected 1.0, 0.0, -1.0 or None")
        severities[name] = _POSITIVE if value == 1.0 else _UNCERTAIN
    return severities


def _placements(placements: Mapping[str, Placement]) -> dict[str, Placement]:
    """Every painted finding's placement, `_UNPLACED` where none is given; bad values rejected
    here, by label, rather than as a KeyError deep inside a painter."""
    known = set(_PAINTERS) | set(_RESHAPERS) | {"No Finding"}
    for name, placement in placements.items():
        if name not in known:
            raise ValueError(
                f"placement {name!r}: expected a CheXpert label, one of {sorted(known)}"
            )
        extent = placement.extent
        if (
            placement.side not in (*SIDES, None)
            or placement.zone not in (*ZONES, None)
            or (extent is not None and not 0.0 < extent <= 1.0)
        ):
            raise ValueError(
                f"placement {name!r} = {placement!r}: expected side in {SIDES}, zone in {ZONES}"
                " and extent in (0, 1], each or None"
            )
    return {name: placements.get(name, _UNPLACED) for name in (*_RESHAPERS, *_PAINTERS)}


def _sample_body(view: str, rng: np.random.Generator) -> _Body:
    portable = view == "AP"
    return _Body(
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


def _sample_exposure(view: str, rng: np.random.Generator) -> _Exposure:
    portable = view == "AP"
    return _Exposure(
        black=rng.uniform(0.02, 0.07),
        white=rng.uniform(0.7, 0.84) if portable else rng.uniform(0.84, 0.95),
        gamma=rng.uniform(0.75, 1.0) if portable else rng.uniform(0.85, 1.15),
        heel=rng.uniform(-0.04, 0.04),
        grain=rng.uniform(0.014, 0.026) if portable else rng.uniform(0.006, 0.014),
    )


def _digitise(
    signal: np.ndarray, shape: tuple[int, int], grain: float, rng: np.random.Generator, top: int
) -> np.ndarray:
    """Upsample to the detector size, add grain there (so it stays pixel-fine), quantise to 0..top."""
    if signal.shape != shape:
        signal = _resize_bilinear(signal, shape)
    # In place: at detector size every temporary array costs tens of milliseconds.
    counts = rng.standard_normal(shape, dtype=np.float32)
    counts *= grain
    counts += signal
    counts *= top
    np.clip(counts, 0, top, out=counts)
    np.rint(counts, out=counts)
    return counts.astype(np.uint16)


def _grid(shape: tuple[int, int], body: _Body) -> _Grid:
    rows, cols = shape
    unit = min(rows, cols) / 2
    u = (np.arange(cols, dtype=np.float32) + 0.5 - cols / 2) / unit
    v = (np.arange(rows, dtype=np.float32) + 0.5 - rows / 2) / unit
    cos, sin = math.cos(body.rotation), math.sin(body.rotation)
    x = (cos * u[None, :] + sin * v[:, None]) / body.scale - body.shift[0]
    y = (-sin * u[None, :] + cos * v[:, None]) / body.scale - body.shift[1]
    pixels_per_unit = unit * body.scale
    return _Grid(x=x, y=y, edge=2.0 / pixels_per_unit, pixels_per_unit=pixels_per_unit, body=body)


def _inside(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased membership: 1 well inside (positive distance), 0 outside, a ramp across."""
    return np.clip(signed_distance * (1.0 / edge) + 0.5, 0.0, 1.0)


def _ellipse(grid: _Grid, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    q = ((grid.x - centre[0]) / radii[0]) ** 2 + ((grid.y - centre[1]) / radii[1]) ** 2
    # (1 - q) * r / 2 approximates the signed distance to the rim, which is all the edge needs.
    return _inside((1.0 - q) * (min(radii) / 2), grid.edge)


def _blob(
    grid: _Grid,
    centre: tuple[float, float],
    radius: float | np.ndarray,
    hardness: float,
) -> np.ndarray:
    """A round patch peaking at 1; hardness < 1 flattens the top and sharpens the margin.

    An array `radius` (a radius per pixel) makes the margin irregular.
    """
    q = ((grid.x - centre[0]) ** 2 + (grid.y - centre[1]) ** 2) / radius**2
    return np.clip(1.0 - q, 0.0, 1.0) ** hardness


def _resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Separable bilinear resampling with pixel centres aligned, float32 in and out."""
    for axis, target in enumerate(shape):
        source = image.shape[axis]
        position = np.clip((np.arange(target) + 0.5) * (source / target) - 0.5, 0, source - 1)
        lower = np.minimum(position.astype(np.intp), source - 2)
        weight = (position - lower).astype(np.float32)
        if axis == 0:
            weight = weight[:, None]
        below, above = np.take(image, lower, axis), np.take(image, lower + 1, axis)
        above -= below
        above *= weight
        above += below
        image = above
    return image


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells + 2, cells + 2), dtype=np.float32)
    return _resize_bilinear(coarse, shape)


def _stroke(
    layer: np.ndarray,
    grid: _Grid,
    points: list[tuple[float, float]],
    width: float,
    density: float,
) -> None:
    """Draw a polyline of the given width into `layer`, keeping the brighter value where it crosses.

    Each segment is measured only inside its pixel bounding box, so thin devices cost little.
    """
    rows, cols = layer.shape
    margin = width * grid.pixels_per_unit + 3
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        (r0, c0), (r1, c1) = grid.pixel_of(x0, y0), grid.pixel_of(x1, y1)
        top, bottom = max(0, int(min(r0, r1) - margin)), min(rows, int(max(r0, r1) + margin) + 1)
        left, right = max(0, int(min(c0, c1) - margin)), min(cols, int(max(c0, c1) + margin) + 1)
        if top >= bottom or left >= right:
            continue
        box = (slice(top, bottom), slice(left, right))
        dx, dy = x1 - x0, y1 - y0
        along = ((grid.x[box] - x0) * dx + (grid.y[box] - y0) * dy) / max(dx * dx + dy * dy, 1e-12)
        along = np.clip(along, 0.0, 1.0)
        gx, gy = grid.x[box] - (x0 + along * dx), grid.y[box] - (y0 + along * dy)
        distance = np.sqrt(gx * gx + gy * gy)
        np.maximum(layer[box], density * _inside(width / 2 - distance, grid.edge), out=layer[box])


def _curve(points: list[tuple[float, float]], samples: int = 16) -> list[tuple[float, float]]:
    """Sample a Bezier curve through its control points (De Casteljau)."""
    control = np.asarray(points, dtype=float)
    curve = []
    for t in np.linspace(0.0, 1.0, samples):
        level = control
        while len(level) > 1:
            level = level[:-1] * (1 - t) + level[1:] * t
        curve.append((float(level[0, 0]), float(level[0, 1])))
    return curve


def _trunk(grid: _Grid, half_width: float, centre_x: float, shoulder_y: float) -> np.ndarray:
    """Soft tissue: thickest mid-line, thinning to the skin, narrowing to the neck above the shoulders."""
    x = grid.x - centre_x
    shoulder = np.sqrt(np.clip((grid.y - shoulder_y) / 0.3 + 1.0, 0.0, 1.0))
    width = 0.3 + (half_width - 0.3) * shoulder
    depth = np.sqrt(np.clip(1.0 - (x / width) ** 2, 0.0, 1.0))
    return 0.3 * _inside(width - np.abs(x), grid.edge) + 0.3 * depth


def _lung(
    grid: _Grid,
    side: int,
    *,
    medial: np.ndarray | float,
    wall: np.ndarray,
    floor: np.ndarray,
    hilum: tuple[float, float],
    apex_y: float,
    sulcus_y: float,
    extent: tuple[float, float],
) -> _Lung:
    along = side * grid.x
    wall_gap, floor_gap = wall - along, floor - grid.y
    inside = np.minimum(
        np.minimum(wall_gap, floor_gap), np.minimum(along - medial, grid.y - apex_y)
    )
    return _Lung(
        side=side,
        mask=_inside(inside, grid.edge),
        wall_gap=wall_gap,
        floor_gap=floor_gap,
        hilum=hilum,
        apex_y=apex_y,
        sulcus_y=sulcus_y,
        medial_x=extent[0],
        lateral_x=extent[1],
    )


def _lung_profile(grid: _Grid, apex_y: float, sulcus_y: float) -> np.ndarray:
    """0 at the apex, rising quickly, 1 at the base: how far a lung has widened at each height."""
    reach = np.clip((grid.y - apex_y) / (sulcus_y - apex_y), 0.0, 1.0)
    return np.sqrt(1.0 - (1.0 - reach) ** 3)


def _rib_cage(
    grid: _Grid,
    side: int,
    *,
    first_y: float,
    spacing: float,
    bend: tuple[float, float],
    span: tuple[float, float],
    density: float,
    visibility: np.ndarray,
) -> _Ribs:
    """Ten ribs as one periodic band: rib k runs along y = first_y + k*spacing - a*x + b*x**3.

    `bend` is (a, b) in side-relative x; `visibility` fades ribs where no lung is behind them.
    """
    along = side * grid.x
    centre_line = first_y - bend[0] * along + bend[1] * (along * along * along)
    phase = (grid.y - centre_line) / spacing
    index = np.floor(phase)
    band = _inside(0.021 / spacing - np.abs(phase - index - 0.5), grid.edge / spacing)
    within = (index >= 0) & (index < 10)
    lateral = _inside(np.minimum(along - span[0], span[1] - along), 4 * grid.edge)
    return _Ribs(
        side=side,
        along=along,
        index=index,
        density=density * band * within * lateral * visibility,
    )


def _radial_streaks(
    grid: _Grid, centre: tuple[float, float], rng: np.random.Generator, spokes: int = 96
) -> np.ndarray:
    """Smooth noise stretched along rays from `centre`: vessel-like streaks that break up outward."""
    rings, reach = 8, 0.9
    dx, dy = grid.x - centre[0], grid.y - centre[1]
    angle = np.clip((np.arctan2(dy, dx) + math.pi) * (spokes / (2 * math.pi)), 0.0, spokes - 1e-3)
    radius = np.clip(np.sqrt(dx * dx + dy * dy) * (rings / reach), 0.0, rings - 1.001)
    coarse = rng.standard_normal((spokes + 1) * rings, dtype=np.float32)
    coarse[spokes * rings :] = coarse[:rings]  # the angle wraps around
    a0, r0 = np.floor(angle), np.floor(radius)
    wa, wr = angle - a0, radius - r0
    # One flat take is several times faster than 2-D fancy indexing.
    corner = (a0 * rings + r0).astype(np.intp)
    near = coarse.take(corner) * (1 - wr) + coarse.take(corner + 1) * wr
    far = coarse.take(corner + rings) * (1 - wr) + coarse.take(corner + rings + 1) * wr
    return near * (1 - wa) + far * wa


def _vascular_markings(
    grid: _Grid, lungs: tuple[_Lung, ...], mottle: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Vessels fanning out of each hilum and fading toward the periphery, over a fine texture."""
    markings = 0.025 * mottle
    for lung in lungs:
        dx, dy = grid.x - lung.hilum[0], grid.y - lung.hilum[1]
        distance = np.sqrt(dx * dx + dy * dy)
        vessels = np.clip(_radial_streaks(grid, lung.hilum, rng), 0.0, None) ** 2
        # Vessels emerge from under the hilar shadow rather than converging to a visible point.
        vessels *= (
            0.06 * np.exp(distance * (-1 / 0.45)) * np.clip((distance - 0.05) / 0.2, 0.0, 1.0)
        )
        hilar_shadow = 0.14 * _blob(grid, lung.hilum, 0.13, 1.5)
        markings = markings + (vessels + hilar_shadow) * lung.mask
    return markings


def _frontal_anatomy(grid: _Grid, body: _Body, rng: np.random.Generator) -> _Anatomy:
    x, y = grid.x, grid.y
    half_width, medial = body.thorax_half_width, body.mediastinum_half_width
    magnification = 1.08 if body.view == "AP" else 1.0
    heart_half_width = body.cardiothoracic_ratio * half_width * magnification
    heart_centre = (0.3 * heart_half_width, body.dome_y - 0.06)
    # Growing about a point inside it, a larger heart always covers the smaller one.
    heart = _ellipse(grid, heart_centre, (heart_half_width, 0.9 * heart_half_width))
    aortic_knob = _ellipse(grid, (medial - 0.02, body.apex_y + 0.45), (0.07, 0.06))
    lungs = _frontal_lungs(grid, body)
    lung_field = lungs[0].mask + lungs[1].mask
    ribs, bone = _frontal_skeleton(grid, body, visibility=0.4 + 0.6 * lung_field)

    carina_y = lungs[0].hilum[1] - 0.12
    trachea = _inside(0.035 - np.abs(x), grid.edge) * _inside(carina_y - y, grid.edge)
    stomach = (0.45 * half_width, body.dome_y + 0.13)
    bubble = _ellipse(grid, stomach, (0.1, 0.055)) if body.gastric_bubble else 0.0
    soft_tissue = _trunk(grid, half_width + 0.3, 0.0, body.apex_y)
    mottle = _smooth_noise(rng, x.shape, 40)
    clavicle_y = _clavicle_y(body)
    return _Anatomy(
        grid=grid,
        density=soft_tissue + bone - 0.1 * trachea - 0.12 * bubble,
        air=lung_field * (1.0 - 0.88 * np.maximum(heart, aortic_knob)),
        markings=_vascular_markings(grid, lungs, mottle, rng),
        mottle=mottle,
        lungs=lungs,
        ribs=ribs,
        landmarks=_Landmarks(
            neck=(0.0, -1.3),
            carina=(0.0, carina_y),
            superior_vena_cava=(-0.7 * medial, body.apex_y + 0.5),
            right_atrium=(heart_centre[0] - 0.7 * heart_half_width, heart_centre[1] - 0.05),
            right_ventricle=(heart_centre[0] + 0.4 * heart_half_width, heart_centre[1] + 0.1),
            stomach=stomach,
            subclavian=((-0.55, clavicle_y + 0.08), (0.55, clavicle_y + 0.08)),
        ),
    )


def _frontal_lungs(grid: _Grid, body: _Body) -> tuple[_Lung, _Lung]:
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


def _clavicle_y(body: _Body) -> float:
    # AP films project the clavicles higher (lordotic tilt of the beam).
    return body.apex_y + (0.16 if body.view == "PA" else 0.08)


def _frontal_skeleton(
    grid: _Grid, body: _Body, visibility: np.ndarray
) -> tuple[tuple[_Ribs, _Ribs], np.ndarray]:
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
    bone += 0.05 * _inside(0.06 - np.abs(grid.x), grid.edge) * vertebrae
    clavicle_y = _clavicle_y(body)
    for side in (-1, 1):
        sternal_end, shaft = (side * 0.06, clavicle_y + 0.06), (side * 0.4, clavicle_y)
        acromial_end = (side * 0.8, clavicle_y - 0.1)
        _stroke(bone, grid, _curve([sternal_end, shaft, acromial_end]), 0.055, 0.1)
    return posterior, bone


def _lateral_anatomy(grid: _Grid, body: _Body, rng: np.random.Generator) -> _Anatomy:
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
    heart = _ellipse(grid, heart_centre, (heart_depth, 1.1 * heart_depth))

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
    spine = _inside(0.1 - np.abs(x - half_depth - 0.16), grid.edge) * vertebrae
    spine *= _inside(y - body.apex_y + 0.2, grid.edge)  # the neck is narrower than the chest
    sternum = _inside(0.025 - np.abs(x + half_depth + 0.06), grid.edge)
    sternum *= _inside(np.minimum(y - body.apex_y - 0.25, body.dome_y - y), grid.edge)
    stomach = (-0.1, body.dome_y + 0.22)
    bubble = _ellipse(grid, stomach, (0.1, 0.05)) if body.gastric_bubble else 0.0
    soft_tissue = _trunk(grid, half_depth + 0.35, 0.08, body.apex_y)
    mottle = _smooth_noise(rng, x.shape, 40)
    return _Anatomy(
        grid=grid,
        density=soft_tissue + ribs.density + 0.13 * spine + 0.08 * sternum - 0.12 * bubble,
        air=lung.mask * (1.0 - 0.88 * heart),
        markings=_vascular_markings(grid, (lung,), mottle, rng),
        mottle=mottle,
        lungs=(lung,),
        ribs=(ribs,),
        landmarks=_Landmarks(
            neck=(-0.2, -1.3),
            carina=(0.05, hilum[1] - 0.08),
            superior_vena_cava=(-0.15, body.apex_y + 0.5),
            right_atrium=(heart_centre[0] + 0.2, heart_centre[1] - 0.1),
            right_ventricle=(heart_centre[0] - 0.3 * heart_depth, heart_centre[1] + 0.1),
            stomach=stomach,
            subclavian=((-0.5, body.apex_y + 0.2), (-0.45, body.apex_y + 0.25)),
        ),
    )


def _composite(anatomy: _Anatomy, film: _Film) -> np.ndarray:
    aerated = anatomy.air * (1.0 - np.clip(film.opacity, 0.0, 1.0))
    visible_markings = anatomy.markings * aerated * (1.0 - film.lucency)
    return (
        anatomy.density
        + film.overlay
        + visible_markings
        - _LUNG_AIR * aerated
        - _PLEURAL_AIR * film.lucency
    )


def _expose(density: np.ndarray, grid: _Grid, exposure: _Exposure) -> np.ndarray:
    contrast = np.clip(density, 0.0, 1.2) ** exposure.gamma
    level = exposure.black + (exposure.white - exposure.black) * contrast
    return level * (1.0 + exposure.heel * grid.y)


def _pick_lung(anatomy: _Anatomy, rng: np.random.Generator) -> _Lung:
    return anatomy.lungs[int(rng.integers(len(anatomy.lungs)))]


_Sided = TypeVar("_Sided", _Lung, _Ribs)


def _on_sides(
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


def _heights(default: tuple[float, float], placement: Placement) -> tuple[float, float]:
    """The band of lung heights to centre a finding in: the placement's zone, else the
    finding's own."""
    return _ZONE_HEIGHTS.get(placement.zone, default)


def _extent_factor(placement: Placement) -> float:
    """How much of its largest size a finding is painted at: 1 unless the report's extent is
    smaller (a trace, extent 0.35, paints at a little over half)."""
    return 1.0 if placement.extent is None else 0.3 + 0.7 * placement.extent


def _sized(drawn: float, largest: float, placement: Placement) -> float:
    """A randomly drawn size, or, when the report states the extent, `largest` scaled by it.

    The draw is made either way so the finding's later random choices stay where they were."""
    return drawn if placement.extent is None else largest * _extent_factor(placement)


def _lung_point(
    anatomy: _Anatomy, lung: _Lung, heights: tuple[float, float], rng: np.random.Generator
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


def _enlarge_heart(
    body: _Body, severity: _Severity, rng: np.random.Generator, placement: Placement
) -> _Body:
    ratio = 0.5 + severity.amplitude * _sized(rng.uniform(0.06, 0.16), 0.16, placement)
    return replace(body, cardiothoracic_ratio=ratio)


def _widen_mediastinum(
    body: _Body, severity: _Severity, rng: np.random.Generator, placement: Placement
) -> _Body:
    factor = 1.0 + severity.amplitude * _sized(rng.uniform(0.5, 0.85), 0.85, placement)
    return replace(body, mediastinum_half_width=body.mediastinum_half_width * factor)


def _paint_atelectasis(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    grid = anatomy.grid
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        cx, cy = _lung_point(anatomy, lung, _heights((0.6, 0.85), placement), rng)
        angle = rng.uniform(-0.35, 0.35)
        length = _sized(rng.uniform(0.16, 0.26), 0.26, placement) * severity.size
        thickness = 0.035 * _extent_factor(placement) * severity.size
        dx, dy = grid.x - cx, grid.y - cy
        along = dx * math.cos(angle) + dy * math.sin(angle)
        across = dy * math.cos(angle) - dx * math.sin(angle)
        # Lens-shaped: thickest at the middle, tapering to the ends.
        taper = np.clip(1.0 - (along / length) ** 2, 0.0, 1.0)
        band = _inside(thickness * taper - np.abs(across), grid.edge)
        # Volume loss raises that side's hemidiaphragm, whichever zone the band is in.
        rise = _sized(rng.uniform(0.05, 0.08), 0.08, placement) * severity.size
        volume_loss = _inside(rise - lung.floor_gap, grid.edge)
        film.opacity += severity.amplitude * (0.9 * band + volume_loss) * lung.mask


def _paint_consolidation(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        centre = _lung_point(anatomy, lung, _heights((0.25, 0.85), placement), rng)
        radius = (
            _sized(rng.uniform(0.15, 0.24), 0.24, placement)
            * severity.size
            * (1.0 + 0.2 * anatomy.mottle)
        )
        patch = _blob(anatomy.grid, centre, radius, 0.35)
        texture = 0.9 + 0.1 * anatomy.mottle
        film.opacity += severity.amplitude * 0.85 * patch * texture * lung.mask


def _paint_pneumonia(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        centre = _lung_point(anatomy, lung, _heights((0.45, 0.9), placement), rng)
        radius = (
            _sized(rng.uniform(0.18, 0.28), 0.28, placement)
            * severity.size
            * (1.0 + 0.25 * anatomy.mottle)
        )
        patch = _blob(anatomy.grid, centre, radius, 0.6)
        patchy = np.clip(0.55 + 0.6 * anatomy.mottle, 0.2, 1.0)
        film.opacity += severity.amplitude * 0.8 * patch * patchy * lung.mask


def _paint_lung_opacity(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        centre = _lung_point(anatomy, lung, _heights((0.2, 0.85), placement), rng)
        radius = _sized(rng.uniform(0.22, 0.32), 0.32, placement) * severity.size
        haze = _blob(anatomy.grid, centre, radius, 1.5)
        film.opacity += severity.amplitude * 0.55 * haze * lung.mask


def _paint_edema(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Both lungs around the hila, always: a side or zone in the report changes nothing."""
    radius = _sized(rng.uniform(0.42, 0.55), 0.55, placement) * severity.size
    for lung in anatomy.lungs:
        haze = _blob(anatomy.grid, lung.hilum, radius, 1.2) * (0.8 + 0.2 * anatomy.mottle)
        film.opacity += severity.amplitude * 0.55 * haze * lung.mask


def _paint_lung_lesion(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        centre = _lung_point(anatomy, lung, _heights((0.1, 0.8), placement), rng)
        radius = _sized(rng.uniform(0.04, 0.09), 0.09, placement) * severity.size
        nodule = _blob(anatomy.grid, centre, radius, 0.15)
        film.opacity += severity.amplitude * 0.9 * nodule * lung.mask


def _paint_pleural_effusion(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Basal by nature: the report's zone changes nothing, its extent sets the depth."""
    bilateral = len(anatomy.lungs) > 1 and rng.random() < 0.3
    drawn = anatomy.lungs if bilateral else (_pick_lung(anatomy, rng),)
    for lung in _on_sides(anatomy.lungs, drawn, placement):
        depth = _sized(rng.uniform(0.12, 0.3), 0.3, placement) * severity.size
        # The fluid climbs the lateral wall: a meniscus rising toward wall_gap = 0.
        climb = np.clip(1.0 - lung.wall_gap / 0.3, 0.0, 1.0) ** 2
        meniscus = 0.12 * _extent_factor(placement) * severity.size * climb
        fluid = _inside(anatomy.grid.y - (lung.sulcus_y - depth - meniscus), 2 * anatomy.grid.edge)
        film.opacity += severity.amplitude * fluid * lung.mask


def _paint_pleural_other(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    grid = anatomy.grid
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        height = lung.sulcus_y - lung.apex_y
        start = rng.uniform(0.15, 0.35)
        length = _sized(rng.uniform(0.35, 0.5), 0.5, placement)
        if placement.zone is not None:  # the stretch of wall centred on the report's zone
            low, high = _ZONE_HEIGHTS[placement.zone]
            start = (low + high - length) / 2
        top = lung.apex_y + start * height
        bottom = top + length * height
        thickness = (0.045 + 0.02 * anatomy.mottle) * (severity.size * _extent_factor(placement))
        stretch = _inside(np.minimum(grid.y - top, bottom - grid.y), 0.06)
        rind = _inside(thickness - lung.wall_gap, grid.edge) * stretch * lung.mask
        film.opacity += severity.amplitude * rind


def _paint_pneumothorax(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Apical by nature: the report's zone changes nothing, its extent sets the rim's width."""
    grid = anatomy.grid
    for lung in _on_sides(anatomy.lungs, (_pick_lung(anatomy, rng),), placement):
        gap = _sized(rng.uniform(0.07, 0.14), 0.14, placement) * severity.size
        upper = np.clip((lung.hilum[1] + 0.1 - grid.y) / 0.3, 0.0, 1.0)
        pleural_air = _inside(gap - lung.wall_gap, grid.edge) * upper * lung.mask
        np.maximum(film.lucency, severity.amplitude * pleural_air, out=film.lucency)
        pleural_line = _inside(0.006 - np.abs(lung.wall_gap - gap), grid.edge) * upper * lung.mask
        film.overlay += 0.12 * severity.amplitude * pleural_line


def _paint_fracture(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    drawn = anatomy.ribs[int(rng.integers(len(anatomy.ribs)))]
    for ribs in _on_sides(anatomy.ribs, (drawn,), placement):
        rib = int(rng.integers(3, 8))
        if placement.zone is not None:
            first, stop = _ZONE_RIBS[placement.zone]
            rib = first + (rib - 3) % (stop - first)
        # The break sits over the lateral half of the same side's lung, in side-relative x.
        lung = next(lung for lung in anatomy.lungs if lung.side == ribs.side)
        at = lung.medial_x + rng.uniform(0.45, 0.8) * (lung.lateral_x - lung.medial_x)
        gap = 0.035 * _extent_factor(placement) * severity.size
        broken = (ribs.index == rib) * _inside(gap - np.abs(ribs.along - at), anatomy.grid.edge)
        film.overlay -= severity.amplitude * ribs.density * broken


def _paint_support_devices(
    anatomy: _Anatomy,
    film: _Film,
    severity: _Severity,
    rng: np.random.Generator,
    placement: Placement,
) -> None:
    """Devices run where anatomy puts them: a placement changes nothing."""
    grid, marks = anatomy.grid, anatomy.landmarks
    brightness = 0.35 * severity.amplitude
    wanted = rng.random(5) < (0.55, 0.45, 0.55, 0.2, 0.3)
    if not wanted.any():
        wanted[rng.integers(5)] = True
    if severity == _UNCERTAIN:  # only the first of the devices, fainter
        wanted[np.argmax(wanted) + 1 :] = False
    endotracheal, nasogastric, central_line, pacemaker, ecg = wanted
    devices = np.zeros_like(grid.x)
    if endotracheal:
        tip = (marks.carina[0], marks.carina[1] - rng.uniform(0.08, 0.2))
        _stroke(devices, grid, _curve([marks.neck, tip]), 0.022, brightness)
    if nasogastric:
        neck = (marks.neck[0] - 0.04, marks.neck[1])
        below = (marks.carina[0] - 0.05, marks.stomach[1] - 0.1)
        _stroke(devices, grid, _curve([neck, below, marks.stomach]), 0.012, brightness)
    if central_line:
        entry = marks.subclavian[int(rng.integers(2))]
        bend = (0.5 * entry[0], entry[1] + 0.02)
        tip = (marks.superior_vena_cava[0], marks.superior_vena_cava[1] + rng.uniform(0.0, 0.2))
        _stroke(
            devices, grid, _curve([entry, bend, marks.superior_vena_cava, tip]), 0.01, brightness
        )
    if pacemaker:
        pocket = marks.subclavian[1]
        box = (pocket[0] + 0.05, pocket[1] + 0.02)
        devices = np.maximum(devices, 2 * brightness * _ellipse(grid, box, (0.09, 0.06)))
        lead = [box, marks.superior_vena_cava, marks.right_atrium, marks.right_ventricle]
        _stroke(devices, grid, _curve(lead), 0.012, 1.5 * brightness)
    if ecg:
        for _ in range(int(rng.integers(2, 5))):
            electrode = (rng.uniform(-0.7, 0.7), rng.uniform(-0.8, -0.3))
            ring = _ellipse(grid, electrode, (0.035, 0.035)) - _ellipse(
                grid, electrode, (0.02, 0.02)
            )
            devices = np.maximum(devices, brightness * ring)
            wire_end = (electrode[0] + rng.uniform(-0.4, 0.4), -1.3)
            _stroke(
                devices,
                grid,
                _curve([electrode, (electrode[0], -1.0), wire_end]),
                0.006,
                0.6 * brightness,
            )
    film.overlay += devices


_Reshaper = Callable[[_Body, _Severity, np.random.Generator, Placement], _Body]
_Painter = Callable[[_Anatomy, _Film, _Severity, np.random.Generator, Placement], None]

# Findings that change the anatomy itself, applied before the body is drawn.
_RESHAPERS: dict[str, _Reshaper] = {
    "Cardiomegaly": _enlarge_heart,
    "Enlarged Cardiomediastinum": _widen_mediastinum,
}
# The order fixes which random stream each finding draws from: append, never reorder.
_PAINTERS: dict[str, _Painter] = {
    "Atelectasis": _paint_atelectasis,
    "Consolidation": _paint_consolidation,
    "Edema": _paint_edema,
    "Fracture": _paint_fracture,
    "Lung Lesion": _paint_lung_lesion,
    "Lung Opacity": _paint_lung_opacity,
    "Pleural Effusion": _paint_pleural_effusion,
    "Pleural Other": _paint_pleural_other,
    "Pneumonia": _paint_pneumonia,
    "Pneumothorax": _paint_pneumothorax,
    "Support Devices": _paint_support_devices,
}
