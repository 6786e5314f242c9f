"""The digits 0-9 as people draw them with a mouse: hand-made pen strokes, and paths along them.

`DIGIT_STROKES` is the data: for each digit, its strokes (pen down ... pen up) in the order and
direction most people draw them (a 4: a down-stroke, a crossbar, a long vertical; a 7: a top bar
and a slanted down-stroke). Each stroke lists the points the pen passes through, in percent of
a square box (x right, y down); the pen curves smoothly through them (a Catmull-Rom spline),
except at a point given twice, which is a corner. `pen_path` turns a digit into pad pixels the way
a hand would: the whole shape a little tilted, slanted, scaled and shifted, each point a bit off.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

Point = tuple[float, float]
Stroke = tuple[Point, ...]

# One line per stroke reads better than the formatter's one line per point.
# fmt: off
DIGIT_STROKES: dict[int, tuple[Stroke, ...]] = {
    0: (  # one loop, anticlockwise from the top, closing a little past where it began
        ((52, 4), (34, 10), (24, 30), (22, 55), (30, 82), (48, 96), (66, 88), (77, 64), (76, 34),
         (66, 10), (50, 4), (40, 10)),
    ),
    1: (  # one down-stroke, leaning right as most people's do
        ((58, 4), (54, 50), (48, 96)),
    ),
    2: (  # an arc over the top, a diagonal down to the left, a corner, the base to the right
        ((24, 24), (34, 9), (52, 4), (70, 12), (74, 30), (64, 48), (44, 68), (22, 92), (22, 92),
         (50, 91), (80, 93)),
    ),
    3: (  # two bumps, the pen turning back at the middle
        ((24, 13), (44, 3), (66, 8), (72, 25), (60, 41), (42, 47), (42, 47), (64, 53), (77, 70),
         (70, 88), (50, 96), (24, 88)),
    ),
    4: (
        ((40, 4), (22, 60)),  # the down-stroke
        ((22, 60), (50, 60), (82, 57)),  # the crossbar
        ((66, 22), (65, 60), (63, 97)),  # the long vertical
    ),
    5: (
        # down the left side, a corner, round the belly
        ((32, 6), (28, 44), (28, 44), (48, 38), (68, 44), (76, 64), (70, 85), (50, 96), (30, 92),
         (20, 82)),
        ((32, 6), (55, 5), (76, 4)),  # the flag on top, last
    ),
    6: (  # from the top right down the left side, round into the loop at the bottom
        ((66, 4), (46, 18), (30, 40), (23, 66), (30, 88), (50, 96), (69, 86), (74, 67), (62, 53),
         (43, 53), (28, 64)),
    ),
    7: (  # the top bar, a corner, and a slanted down-stroke, without lifting the pen
        ((22, 8), (50, 6), (78, 6), (78, 6), (60, 45), (46, 96)),
    ),
    8: (  # from the top right over the top, an S down, round the bottom, up across to the top
        ((70, 14), (50, 4), (31, 12), (32, 30), (50, 45), (70, 60), (73, 82), (52, 96), (30, 86),
         (32, 62), (50, 47), (68, 31), (70, 14)),
    ),
    9: (  # the loop anticlockwise from its right side, a corner, then straight down
        ((72, 20), (56, 5), (36, 8), (27, 26), (36, 43), (56, 44), (72, 32), (74, 14), (74, 14),
         (72, 55), (66, 97)),
    ),
}
# fmt: on

PAD_BOX = (55.0, 55.0, 170.0)  # left, top, side in the demo's 280x280 pad: a hand-sized digit


def pen_path(
    digit: int, seed: int = 0, box: tuple[float, float, float] = PAD_BOX, step: float = 3.0
) -> list[list[Point]]:
    """The strokes of `digit` in pad pixels, drawn by a slightly irregular hand.

    Args:
        digit: 0..9, a key of DIGIT_STROKES.
        seed: picks the irregularity; the same seed draws the same path.
        box: left, top and side in pixels of the square the unit box is drawn into.
        step: pixels between successive pen positions, as a mouse reports them.
    """
    rng = np.random.default_rng([seed, digit])
    shape = _hand_transform(rng)
    left, top, side = box
    paths = []
    for stroke in DIGIT_STROKES[digit]:
        points, corners = _waypoints(stroke)
        points = points / 100 + rng.normal(0.0, 0.012, points.shape)  # each point a little off
        curve = ((_curve(points, corners) - 0.5) @ shape.T + 0.5) * side + (left, top)
        paths.append([(float(x), float(y)) for x, y in _resample(curve, step)])
    return paths


def _hand_transform(rng: np.random.Generator) -> np.ndarray:
    """A 2x2 map: a small tilt, a slant, slightly different width and height."""
    angle = np.radians(rng.uniform(-6, 6))
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    slant = np.array([[1.0, -rng.uniform(0.0, 0.15)], [0.0, 1.0]])  # tops lean right
    scale = np.diag([rng.uniform(0.9, 1.08), rng.uniform(0.92, 1.04)])
    return rotate @ slant @ scale


def _waypoints(stroke: Stroke) -> tuple[np.ndarray, list[int]]:
    """The stroke's points without repeats, and the indices of those that were repeated."""
    points, corners = [stroke[0]], []
    for point in stroke[1:]:
        if point == points[-1]:
            corners.append(len(points) - 1)
        else:
            points.append(point)
    return np.array(points, float), corners


def _curve(points: np.ndarray, corners: list[int]) -> np.ndarray:
    """A smooth curve through `points`, with a sharp turn at each corner."""
    bounds = [0, *corners, len(points) - 1]
    pieces = [_catmull_rom(points[a : b + 1]) for a, b in pairwise(bounds)]
    return np.vstack([pieces[0], *(piece[1:] for piece in pieces[1:])])


def _catmull_rom(points: np.ndarray, samples: int = 20) -> np.ndarray:
    """A (uniform) Catmull-Rom spline through `points`, its ends included."""
    if len(points) == 1:
        return points
    padded = np.vstack([points[:1], points, points[-1:]])  # the curve starts and ends on them
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    pieces = [
        0.5
        * (
            2 * p1
            + (p2 - p0) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (3 * p1 - p0 - 3 * p2 + p3) * t**3
        )
        for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False)
    ]
    return np.vstack([*pieces, points[-1:]])


def _resample(curve: np.ndarray, spacing: float) -> np.ndarray:
    """Points every `spacing` along the curve, its two ends included."""
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    if lengths[-1] == 0:
        return curve[:1]
    at = np.append(np.arange(0.0, lengths[-1], spacing), lengths[-1])
    return np.column_stack([np.interp(at, lengths, axis) for axis in curve.T])
