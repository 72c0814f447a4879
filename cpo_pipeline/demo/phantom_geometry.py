"""The chest phantom's drawing surface: a posed pixel grid, the anti-aliased shapes drawn on it and
the smooth noise its textures are made of.

Lengths are anatomical units, in which the shorter image side spans -1..1 before the patient's
scale, shift and rotation; every shape is a float32 array over the grid (or drawn into one).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Anatomical coordinates of every working pixel and the pose that maps them."""

    x: np.ndarray
    y: np.ndarray
    edge: float  # width of an anti-aliased edge, in anatomical units
    pixels_per_unit: float
    shift: tuple[float, float]
    rotation: float

    def pixel_of(self, x: float, y: float) -> tuple[float, float]:
        """Working (row, column) of an anatomical point: the inverse of the grid's pose."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        xs, ys = (
            (x + self.shift[0]) * self.pixels_per_unit,
            (y + self.shift[1]) * self.pixels_per_unit,
        )
        rows, cols = self.x.shape
        return sin * xs + cos * ys + rows / 2 - 0.5, cos * xs - sin * ys + cols / 2 - 0.5


def posed_grid(
    shape: tuple[int, int], *, scale: float, shift: tuple[float, float], rotation: float
) -> Grid:
    """The grid of a (rows, cols) working image of a patient `scale` times the unit size,
    shifted by `shift` and turned by `rotation` radians."""
    rows, cols = shape
    unit = min(rows, cols) / 2
    u = (np.arange(cols, dtype=np.float32) + 0.5 - cols / 2) / unit
    v = (np.arange(rows, dtype=np.float32) + 0.5 - rows / 2) / unit
    cos, sin = math.cos(rotation), math.sin(rotation)
    x = (cos * u[None, :] + sin * v[:, None]) / scale - shift[0]
    y = (-sin * u[None, :] + cos * v[:, None]) / scale - shift[1]
    pixels_per_unit = unit * scale
    return Grid(
        x=x,
        y=y,
        edge=2.0 / pixels_per_unit,
        pixels_per_unit=pixels_per_unit,
        shift=shift,
        rotation=rotation,
    )


def inside(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased membership: 1 well inside (positive distance), 0 outside, a ramp across."""
    return np.clip(signed_distance * (1.0 / edge) + 0.5, 0.0, 1.0)


def ellipse(grid: Grid, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """An axis-aligned filled ellipse, 1 inside, with an anti-aliased rim."""
    q = ((grid.x - centre[0]) / radii[0]) ** 2 + ((grid.y - centre[1]) / radii[1]) ** 2
    # (1 - q) * r / 2 approximates the signed distance to the rim, which is all the edge needs.
    return inside((1.0 - q) * (min(radii) / 2), grid.edge)


def blob(
    grid: Grid,
    centre: tuple[float, float],
    radius: float | np.ndarray,
    hardness: float,
) -> np.ndarray:
    """A round patch peaking at 1; hardness < 1 flattens the top and sharpens the margin.

    An array `radius` (a radius per pixel) makes the margin irregular.
    """
    q = ((grid.x - centre[0]) ** 2 + (grid.y - centre[1]) ** 2) / radius**2
    return np.clip(1.0 - q, 0.0, 1.0) ** hardness


def resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
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


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise: a lattice of (cells + 2)**2 standard normal values, upsampled bilinearly."""
    coarse = rng.standard_normal((cells + 2, cells + 2), dtype=np.float32)
    return resize_bilinear(coarse, shape)


def radial_streaks(
    grid: Grid, centre: tuple[float, float], rng: np.random.Generator, spokes: int = 96
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


def stroke(
    layer: np.ndarray,
    grid: Grid,
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
        np.maximum(layer[box], density * inside(width / 2 - distance, grid.edge), out=layer[box])


def curve(points: list[tuple[float, float]], samples: int = 16) -> list[tuple[float, float]]:
    """Sample a Bezier curve through its control points (De Casteljau)."""
    control = np.asarray(points, dtype=float)
    sampled = []
    for t in np.linspace(0.0, 1.0, samples):
        level = control
        while len(level) > 1:
            level = level[:-1] * (1 - t) + level[1:] * t
        sampled.append((float(level[0, 0]), float(level[0, 1])))
    return sampled
