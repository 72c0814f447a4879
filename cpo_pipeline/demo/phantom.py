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

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cpo_pipeline.demo.phantom_anatomy import Anatomy, chest_anatomy, sample_body
from cpo_pipeline.demo.phantom_findings import (
    PAINTERS,
    POSITIVE,
    RESHAPERS,
    UNCERTAIN,
    Film,
    Severity,
)
from cpo_pipeline.demo.phantom_geometry import Grid, posed_grid, resize_bilinear
from cpo_pipeline.mimic_layout import FRONTAL_VIEWS, LATERAL_VIEWS
from cpo_pipeline.radiology.placement import SIDES, ZONES, Placement

# Finer detail than this is invisible to the downstream model; larger images are upsampled.
_MAX_WORKING_SIDE = 768
_LUNG_AIR = 0.36  # density a full lung air column removes from the soft tissue in front of it
# Extra darkness of a pneumothorax over aerated lung: pleural air has no lung markings and no
# lung tissue in front of it. At 0.07 (and a rim half as wide) a pneumothorax was too faint for
# a 64-px model to find (held-out probe AUC 0.65 against 0.90+ for the other four findings);
# on a 512-px radiograph a moderate one is plainly seen. See benchmarks/bench_vision_probe.py.
_PLEURAL_AIR = 0.14

_UNPLACED = Placement()


@dataclass(frozen=True)
class _Exposure:
    """How densities become normalised counts: black level, white level, contrast, grain."""

    black: float
    white: float
    gamma: float
    heel: float
    grain: float


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
        0, 2**63, size=3 + len(PAINTERS) + len(RESHAPERS)
    )
    finding_rngs = {
        name: np.random.default_rng(seed)
        for name, seed in zip((*RESHAPERS, *PAINTERS), finding_seeds, strict=True)
    }
    body = sample_body(view, np.random.default_rng(body_seed))
    for name, reshape in RESHAPERS.items():
        if name in severities:
            body = reshape(body, severities[name], finding_rngs[name], placed[name])

    factor = min(1.0, _MAX_WORKING_SIDE / max(rows, cols))
    grid = posed_grid(
        (max(16, round(rows * factor)), max(16, round(cols * factor))),
        scale=body.scale,
        shift=body.shift,
        rotation=body.rotation,
    )
    anatomy = chest_anatomy(grid, body, np.random.default_rng(texture_seed))

    film = Film(*(np.zeros_like(grid.x) for _ in range(3)))
    for name, paint in PAINTERS.items():
        if name in severities:
            paint(anatomy, film, severities[name], finding_rngs[name], placed[name])

    exposure_rng = np.random.default_rng(exposure_seed)
    exposure = _sample_exposure(view, exposure_rng)
    signal = _expose(_composite(anatomy, film), grid, exposure)
    return _digitise(signal, (rows, cols), exposure.grain, exposure_rng, 2**bits_stored - 1)


def _severities(findings: Mapping[str, float | None]) -> dict[str, Severity]:
    known = set(PAINTERS) | set(RESHAPERS) | {"No Finding"}
    severities = {}
    for name, value in findings.items():
        if name not in known:
            raise ValueError(f"finding {name!r}: expected a CheXpert label, one of {sorted(known)}")
        blank = value is None or (isinstance(value, float) and math.isnan(value))
        if blank or value == 0.0 or name == "No Finding":
            continue
        if value not in (1.0, -1.0):
            raise ValueError(f"finding {name!r} = {value!r}: expected 1.0, 0.0, -1.0 or None")
        severities[name] = POSITIVE if value == 1.0 else UNCERTAIN
    return severities


def _placements(placements: Mapping[str, Placement]) -> dict[str, Placement]:
    """Every painted finding's placement, `_UNPLACED` where none is given; bad values rejected
    here, by label, rather than as a KeyError deep inside a painter."""
    known = set(PAINTERS) | set(RESHAPERS) | {"No Finding"}
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
    return {name: placements.get(name, _UNPLACED) for name in (*RESHAPERS, *PAINTERS)}


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
        signal = resize_bilinear(signal, shape)
    # In place: at detector size every temporary array costs tens of milliseconds.
    counts = rng.standard_normal(shape, dtype=np.float32)
    counts *= grain
    counts += signal
    counts *= top
    np.clip(counts, 0, top, out=counts)
    np.rint(counts, out=counts)
    return counts.astype(np.uint16)


def _composite(anatomy: Anatomy, film: Film) -> np.ndarray:
    aerated = anatomy.air * (1.0 - np.clip(film.opacity, 0.0, 1.0))
    visible_markings = anatomy.markings * aerated * (1.0 - film.lucency)
    return (
        anatomy.density
        + film.overlay
        + visible_markings
        - _LUNG_AIR * aerated
        - _PLEURAL_AIR * film.lucency
    )


def _expose(density: np.ndarray, grid: Grid, exposure: _Exposure) -> np.ndarray:
    contrast = np.clip(density, 0.0, 1.2) ** exposure.gamma
    level = exposure.black + (exposure.white - exposure.black) * contrast
    return level * (1.0 + exposure.heel * grid.y)
