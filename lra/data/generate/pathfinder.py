"""Pathfinder images in the spirit of Linsley et al. 2018, written in the LRA release's layout.

The task: two dots and several dashed curved paths; label 1 when both dots lie on one path, 0 when they
lie on two different paths. LRA used images made by github.com/drewlinsley/pathfinder (``snakes2.py``);
this module redraws the same stimulus with its own, batched numpy code.

What is kept from the public stimulus code (``snakes2_wrapper.py`` and the parameters that LRA's
``lra_benchmarks/data/pathfinder.py`` docstrings list per resolution; see ``STYLES``):

* a path is a chain of ``contour_length`` paddles (short line segments): 6, 9 or 14 for ``curv_baseline``
  (easy), ``curv_contour_length_9`` (intermediate) and ``curv_contour_length_14`` (hard);
* paddle ``k`` runs from ``v_k + m*u_k`` to ``v_k + (m + L)*u_k`` and the next pivot is
  ``v_{k+1} = v_k + (L + 2m)*u_k`` (``snakes.extend_snake``): dashes of length ``L`` with gaps ``2m``;
* a turn ``d`` between paddles is drawn with weight ``cos(min(|d| * continuity, pi/2))**2``
  (``snakes.get_coords_cmf``), i.e. turns stay below ``90 deg / continuity``; a paddle may not come near
  any paddle already drawn other than its predecessor;
* two target paths start ``seed_distance`` apart, the first within ``2*seed_distance`` of no border
  (``initialize_two_seeds``); one dot sits on the start of target path X, the other on the far end of
  X (label 1) or of the other target path (label 0), so the dots are about as far apart either way;
* ``num_distractor_snakes = budget // distractor_length`` distractor paths of ``contour_length // 3``
  paddles, each dropped after 4 failed tries (``make_many_snakes(..., allow_incomplete=True)``); no
  single-paddle clutter (the wrapper's ``use_single_paddles = False``).

Our own choices:

* paths grow for a whole batch of images at once: one vectorised step per paddle, 16 jittered candidate
  turns per step, occupancy on a grid of at most ``clearance/4`` cells stamped from precomputed tables;
* "near" is made exact: paddles not adjacent on one path keep ``2m + thickness/2`` between centrelines
  (``clearance``), more than any gap along a path (``<= 2m``), so a chain of dashes never jumps paths;
  distractors also keep clear of the dots;
* a paddle is only chosen if the path could still turn away from the border afterwards
  (``_room_to_turn``); snakes2 instead redraws paths that run into it, which most long ones at 64 px and
  above do;
* strokes and dots are anti-aliased by their exact pixel coverage across the line (no Lanczos ringing);
* labels are exactly balanced within every chunk.

Layout written (that of the LRA release, read by ``lra.data.pathfinder``)::

    <out_root>/pathfinder<R>/<difficulty dir>/imgs/<chunk>/sample_<i>.png      8-bit grayscale
    <out_root>/pathfinder<R>/<difficulty dir>/metadata/<chunk>.npy             text rows, as released:
        "imgs/<chunk> sample_<i>.png <i> <label> <continuity> <contour_length> <distractor_length>
         <paddle_length> <paddle_thickness> <margin> 1"
    <out_root>/pathfinder<R>/<difficulty dir>/generator.json     settings; "complete": true at the end

Chunk ``c`` holds images ``1000c .. 1000c+999`` (``images_per_chunk``), drawn from the random stream
``(seed, R, difficulty, c)`` only, so the output does not depend on the number of worker processes. A
chunk's images are written to a hidden folder renamed into place, and its metadata file is renamed into
place last: a chunk is complete exactly when its metadata file exists, and an interrupted run resumes
with the missing chunks.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lra.data.cache import locked, remove_dead_partials
from lra.data.errors import DataError

GENERATOR_VERSION = 1
IMAGES_PER_CHUNK = 1000
DIFFICULTY_DIRS = {
    "easy": "curv_baseline",
    "intermediate": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}
CONTOUR_LENGTHS = {"easy": 6, "intermediate": 9, "hard": 14}
SETTINGS_FILE = "generator.json"

TURN_CANDIDATES = 16  # candidate turns per paddle and image
SEED_CANDIDATES = 16  # candidate start points per path try
PATH_TRIES = 4  # snakes2 max_target_contour_retrial / max_distractor_contour_retrial
MAX_ROUNDS = 50  # redraws of an image whose target paths never fit
ANGLE_BINS = 128  # precomputed stamp directions
SUBCELL_BINS = 8  # precomputed stamp offsets per grid cell and axis


@dataclass(frozen=True)
class Style:
    """The look of one resolution: LRA's per-resolution arguments to ``snakes2`` (lengths in pixels)."""

    paddle_length: float
    paddle_thickness: float
    margins: tuple[int, ...]  # one drawn per image; gaps between paddles are twice this
    marker_radius: float
    seed_distance: float
    padding: float  # no paddle within this distance of the border
    continuity: float  # turns stay below 90 deg / continuity
    distractor_budget: int  # num_distractor_snakes = budget // distractor_length
    contrast: float  # stroke intensity for full pixel coverage (snake x paddle contrast), clipped at 1


# lra_benchmarks/data/pathfinder.py docstrings; values they leave out are snakes2_wrapper.Args defaults
# (paddle_length 5, padding 22, seed_distance 27, paddle contrast 1.0). Their "22 / distractor_length"
# divisions are integer ones: snakes2 ran on Python 2, and a float count of paddles would not run.
STYLES = {
    32: Style(2, 0.5, (1,), 1.5, 7, 1, 1.0, 20, 2 * 0.75),
    64: Style(5, 1.0, (1,), 2.5, 12, 1, 1.8, 22, 0.8),
    128: Style(5, 1.5, (2, 3), 3.0, 20, 1, 1.8, 35, 0.9),
    256: Style(5, 2.0, (3,), 5.0, 27, 22, 1.8, 30, 1.0),
}


@dataclass(frozen=True)
class Settings:
    resolution: int
    difficulty: str
    style: Style = field(init=False)

    def __post_init__(self) -> None:
        if self.resolution not in STYLES:
            raise ValueError(f"pathfinder resolution {self.resolution}; valid: {', '.join(map(str, STYLES))}")
        if self.difficulty not in DIFFICULTY_DIRS:
            valid = ", ".join(DIFFICULTY_DIRS)
            raise ValueError(f"pathfinder difficulty {self.difficulty!r}; valid: {valid}")
        object.__setattr__(self, "style", STYLES[self.resolution])

    @property
    def contour_length(self) -> int:
        return CONTOUR_LENGTHS[self.difficulty]

    @property
    def distractor_length(self) -> int:
        return self.contour_length // 3

    @property
    def num_distractors(self) -> int:
        return self.style.distractor_budget // self.distractor_length


@dataclass
class Chunk:
    """Drawn images with the generator's own record of what it drew.

    ``paths[i][p]`` holds path ``p`` of image ``i`` as paddles ``(n, 4)``: ``y0, x0, y1, x1`` in pixels
    (pixel ``(r, c)`` covers ``[r, r+1) x [c, c+1)``); paths 0 and 1 are the targets, the rest distractors.
    ``dots[i]`` are the two dot centres and ``dot_paths[i]`` the path each lies on.
    """

    images: np.ndarray  # (n, R, R) uint8
    labels: np.ndarray  # (n,) int8
    margins: np.ndarray  # (n,) the margin drawn for each image
    paths: list[list[np.ndarray]]
    dots: np.ndarray  # (n, 2, 2) float: (dot, yx)
    dot_paths: np.ndarray  # (n, 2) int


def clearance(margin: np.ndarray | float, style: Style) -> np.ndarray | float:
    """Least distance between the centrelines of two paddles not adjacent on one path.

    Consecutive paddles of a path are at most ``2m`` apart; anything else keeps ``2m + thickness/2``, so
    gaps along a path are always the smaller ones.
    """
    return 2 * margin + style.paddle_thickness / 2


def marker_clearance(margin: np.ndarray | float, style: Style) -> np.ndarray | float:
    """Least distance from a dot's centre to a distractor paddle's centreline."""
    return style.marker_radius + clearance(margin, style) / 2


def _segment_distance(py, px, ay, ax, by, bx):
    """Distance from points to segments (broadcast)."""
    dy, dx = by - ay, bx - ax
    t = np.clip(((py - ay) * dy + (px - ax) * dx) / np.maximum(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    return np.hypot(py - (ay + t * dy), px - (ax + t * dx))


@functools.cache
def _footprints(length: float, radius: float, scale: int, coverage: bool) -> np.ndarray:
    """Footprints of a segment of ``length`` around its midpoint, per direction and sub-cell offset.

    Shape ``(ANGLE_BINS, SUBCELL_BINS, SUBCELL_BINS, S, S)`` with ``S = 2*half + 1`` cells: the cells within
    ``radius`` of the segment (``coverage=False``), or, for a stroke of width ``2*radius``, the fraction of
    each pixel it covers across the line (``coverage=True``, ``scale`` 1). Quantising the angle to 2.8 deg
    and the midpoint to 1/8 cell moves a stroke by under 0.1 px; computing each stamp exactly costs 3x more.
    """
    half = _half_window(length, radius + (0.5 if coverage else 0.0), scale)
    cells = np.arange(-half, half + 1) + 0.5
    fraction = (np.arange(SUBCELL_BINS) + 0.5) / SUBCELL_BINS
    angle = ((np.arange(ANGLE_BINS) + 0.5) / ANGLE_BINS * 2 - 1) * np.pi
    py = (cells[None, None, None, :, None] - fraction[None, :, None, None, None]) / scale
    px = (cells[None, None, None, None, :] - fraction[None, None, :, None, None]) / scale
    ay = (-length / 2 * np.sin(angle))[:, None, None, None, None]
    ax = (-length / 2 * np.cos(angle))[:, None, None, None, None]
    distance = _segment_distance(py, px, ay, ax, -ay, -ax)
    if coverage:
        covered = np.minimum(distance + 0.5, radius) - np.maximum(distance - 0.5, -radius)
        return np.clip(covered, 0, 1).astype(np.float32)
    return distance <= radius


def _half_window(length: float, reach: float, scale: int) -> int:
    return math.ceil((length / 2 + reach) * scale) + 1


def _placement(seg: np.ndarray, footprints: np.ndarray, scale: int, offset: int):
    """The footprint of each segment (n, S, S) and the top-left (row, column) of its window in a grid."""
    half = footprints.shape[-1] // 2
    my = (seg[:, 0] + seg[:, 2]) * (scale / 2)
    mx = (seg[:, 1] + seg[:, 3]) * (scale / 2)
    top, left = np.floor(my), np.floor(mx)
    qy = np.minimum(((my - top) * SUBCELL_BINS).astype(np.int64), SUBCELL_BINS - 1)
    qx = np.minimum(((mx - left) * SUBCELL_BINS).astype(np.int64), SUBCELL_BINS - 1)
    angle = np.arctan2(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    bins = np.floor((angle / np.pi + 1) / 2 * ANGLE_BINS).astype(np.int64) % ANGLE_BINS
    corner = offset - half
    return footprints[bins, qy, qx], top.astype(np.int64) + corner, left.astype(np.int64) + corner


def _windows(grid: np.ndarray, size: int) -> np.ndarray:
    """Writable view of every ``size`` x ``size`` window of each image: (n, rows, cols, size, size)."""
    return np.lib.stride_tricks.sliding_window_view(grid, (size, size), axis=(1, 2), writeable=True)


class _Canvas:
    """A batch of pictures being drawn: an occupancy grid (where no new paddle may go) and the pixels.

    The grid has ``scale`` cells per pixel and a border of ``offset`` cells, so stamps never need clipping.
    """

    def __init__(self, settings: Settings, margins: np.ndarray):
        style, n = settings.style, len(margins)
        self.settings = settings
        self.margin = margins.astype(np.float64)
        self.step = style.paddle_length + 2 * self.margin
        self.clearance = clearance(self.margin, style)
        self.scale = max(1, math.ceil(4 / float(self.clearance.min())))  # cells of at most clearance / 4
        # Stamps reach further than the distance they guarantee by what the grid and the stamp tables can
        # miss: half a cell diagonal, half the spacing of the test points, the tables' quantisation.
        slack = ((math.sqrt(2) / 2 + 0.25 + math.sqrt(2) / (2 * SUBCELL_BINS)) / self.scale
                 + style.paddle_length / 2 * math.sin(np.pi / ANGLE_BINS))
        self.exclusion = self.clearance + slack
        self.marker_exclusion = marker_clearance(self.margin, style) + slack
        reach = max(float(self.exclusion.max()), float(self.marker_exclusion.max()))
        self.offset = _half_window(style.paddle_length, reach, self.scale) + 2
        cells = settings.resolution * self.scale + 2 * self.offset
        self.occupied = np.zeros((n, cells, cells), dtype=bool)
        stroke = max(style.paddle_thickness / 2, style.marker_radius) + 0.5
        self.pixel_offset = _half_window(style.paddle_length, stroke, 1) + 2
        size = settings.resolution + 2 * self.pixel_offset
        self.pixels = np.zeros((n, size, size), dtype=np.float32)
        self.low = style.padding
        self.high = settings.resolution - style.padding

    def stamp(self, images: np.ndarray, seg: np.ndarray, reach: np.ndarray) -> None:
        """Occupy the cells within ``reach`` of each segment (``seg`` (n, 4), one per image in ``images``)."""
        length = float(np.hypot(seg[0, 2] - seg[0, 0], seg[0, 3] - seg[0, 1])) if len(images) else 0.0
        for value in np.unique(reach):  # 1 or 2 margins per resolution
            chosen = reach == value
            footprints = _footprints(round(length, 6), float(value), self.scale, False)
            footprint, top, left = _placement(seg[chosen], footprints, self.scale, self.offset)
            windows = _windows(self.occupied, footprints.shape[-1])
            index = (images[chosen], top, left)
            windows[index] = windows[index] | footprint

    def paint(self, images: np.ndarray, seg: np.ndarray, width: float, intensity: float) -> None:
        """Draw anti-aliased strokes: a pixel's value is the stroke's coverage of it across the line."""
        if not len(images):
            return
        length = float(np.hypot(seg[0, 2] - seg[0, 0], seg[0, 3] - seg[0, 1]))
        footprints = _footprints(round(length, 6), width / 2, 1, True)
        footprint, top, left = _placement(seg, footprints, 1, self.pixel_offset)
        windows = _windows(self.pixels, footprints.shape[-1])
        index = (images, top, left)
        windows[index] = np.maximum(windows[index], np.minimum(footprint * intensity, 1.0))

    def free(self, images: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """Whether candidate paddles (``seg`` (n, k, 4)) lie inside the padding and on no occupied cell."""
        inside = np.all((seg >= self.low) & (seg <= self.high), axis=-1)
        points = math.ceil(2 * self.settings.style.paddle_length * self.scale) + 1  # 1/(2 scale) px apart
        t = np.linspace(0.0, 1.0, points)
        py = seg[..., 0, None] + t * (seg[..., 2, None] - seg[..., 0, None])
        px = seg[..., 1, None] + t * (seg[..., 3, None] - seg[..., 1, None])
        cells = self.occupied.shape[1]
        rows = np.clip(np.floor(py * self.scale).astype(np.int64) + self.offset, 0, cells - 1)
        cols = np.clip(np.floor(px * self.scale).astype(np.int64) + self.offset, 0, cells - 1)
        flat = (images[:, None, None] * cells + rows) * cells + cols
        hit = self.occupied.ravel().take(flat).any(axis=-1)
        return inside & ~hit


def _paddles(vy, vx, theta, margin, length):
    """Paddle from pivot ``v`` along ``theta``: ``v + m*u`` to ``v + (m + L)*u`` as ``(..., 4)``."""
    uy, ux = np.sin(theta), np.cos(theta)
    far = margin + length
    return np.stack([vy + margin * uy, vx + margin * ux, vy + far * uy, vx + far * ux], axis=-1)


def _room_to_turn(canvas: _Canvas, vy, vx, theta, step, max_turn: float) -> np.ndarray:
    """Whether a path heading ``theta`` from pivot ``v`` can still circle inside the padding.

    Turning at most ``max_turn`` per step of ``step``, a path follows circles no tighter than the one
    through its pivots of radius ``step / (2 sin(max_turn / 2))``; one of the two such circles tangent at
    the next pivot must lie inside, or the path runs into the border however it turns. Without this
    look-ahead most long paths of the larger resolutions hit the border and are drawn again (snakes2
    redraws them until one fits, which is slow).
    """
    radius = step / (2 * np.sin(max_turn / 2))
    ny, nx = vy + step * np.sin(theta), vx + step * np.cos(theta)
    room = np.zeros(theta.shape, dtype=bool)
    for side in (-1, 1):
        cy, cx = ny + side * radius * np.cos(theta), nx - side * radius * np.sin(theta)
        room |= ((np.minimum(cy, cx) - radius >= canvas.low) & (np.maximum(cy, cx) + radius <= canvas.high))
    return room


def _first_valid(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return valid.any(axis=1), valid.argmax(axis=1)


def _grow(canvas: _Canvas, rng: np.random.Generator, images: np.ndarray, first: np.ndarray, count: int):
    """Extend paths whose first paddles are ``first`` (n, 4) to ``count`` paddles; return (ok, paddles).

    Each paddle enters the occupancy grid one step late, so that its successor may come near it; a path
    that fails leaves its stamps behind (the caller restores the grid).
    """
    style = canvas.settings.style
    n = len(images)
    paddles = np.full((n, count, 4), np.nan)
    paddles[:, 0] = first
    theta = np.arctan2(first[:, 2] - first[:, 0], first[:, 3] - first[:, 1])
    margin, step = canvas.margin[images], canvas.step[images]
    vy, vx = first[:, 0] - margin * np.sin(theta), first[:, 1] - margin * np.cos(theta)
    max_turn = min(np.pi, np.pi / 2 / style.continuity)
    spacing = 2 * max_turn / TURN_CANDIDATES
    grid_turns = -max_turn + spacing * (np.arange(TURN_CANDIDATES) + 0.5)
    alive = np.arange(n)
    for k in range(1, count):
        if k >= 2:
            canvas.stamp(images[alive], paddles[alive, k - 2], canvas.exclusion[images[alive]])
        vy[alive] += step[alive] * np.sin(theta[alive])
        vx[alive] += step[alive] * np.cos(theta[alive])
        turns = grid_turns + rng.uniform(-spacing / 2, spacing / 2, size=(len(alive), TURN_CANDIDATES))
        candidates = theta[alive, None] + turns
        pivot_y, pivot_x = vy[alive, None], vx[alive, None]
        segs = _paddles(pivot_y, pivot_x, candidates, margin[alive, None], style.paddle_length)
        weight = np.cos(np.minimum(np.abs(turns) * style.continuity, np.pi / 2)) ** 2
        weight = weight * canvas.free(images[alive], segs)
        if k < count - 1:
            weight = weight * _room_to_turn(canvas, pivot_y, pivot_x, candidates, step[alive, None], max_turn)
        total = weight.sum(axis=1)
        ok = total > 0
        threshold = rng.uniform(size=len(alive))[:, None] * total[:, None]
        pick = (np.cumsum(weight, axis=1) > threshold).argmax(axis=1)
        alive, pick = alive[ok], pick[ok]
        theta[alive] = candidates[ok, pick]
        paddles[alive, k] = segs[ok, pick]
    for k in range(max(count - 2, 0), count):
        canvas.stamp(images[alive], paddles[alive, k], canvas.exclusion[images[alive]])
    done = np.zeros(n, dtype=bool)
    done[alive] = True
    return done, paddles


def _draw_paths(canvas, rng, images, count, sample_starts):
    """Draw one path of ``count`` paddles in each image, with up to ``PATH_TRIES`` tries.

    ``sample_starts(images)`` gives candidate path starts and angles ``(y, x, theta)``, each
    ``(n, SEED_CANDIDATES)``.
    """
    style = canvas.settings.style
    drawn = np.zeros(len(images), dtype=bool)
    paths = np.full((len(images), count, 4), np.nan)
    pending = np.arange(len(images))
    for _ in range(PATH_TRIES):
        if not len(pending):
            break
        before = canvas.occupied[images[pending]]
        vy, vx, theta = sample_starts(images[pending])
        # a path's start (the dot's place) is the start of its first paddle: pivot + margin
        margin = canvas.margin[images[pending], None]
        pivot_y, pivot_x = vy - margin * np.sin(theta), vx - margin * np.cos(theta)
        first = _paddles(pivot_y, pivot_x, theta, margin, style.paddle_length)
        seeded, choice = _first_valid(canvas.free(images[pending], first))
        grown = np.zeros(len(pending), dtype=bool)
        starts = first[seeded, choice[seeded]]
        grown[seeded], paddles = _grow(canvas, rng, images[pending[seeded]], starts, count)
        canvas.occupied[images[pending[~grown]]] = before[~grown]
        finished = pending[grown]
        paths[finished] = paddles[grown[seeded]]
        drawn[finished] = True
        for k in range(count):
            canvas.paint(images[finished], paths[finished, k], style.paddle_thickness, style.contrast)
        pending = pending[~grown]
    return drawn, paths


def _uniform_starts(rng, low, high):
    def sample(images):
        shape = (len(images), SEED_CANDIDATES)
        return rng.uniform(low, high, shape), rng.uniform(low, high, shape), rng.uniform(-np.pi, np.pi, shape)

    return sample


def _starts_around(rng, centres, distance):
    """Starts at ``distance`` from each image's ``centres`` (n_batch, 2), in a random direction."""

    def sample(images):
        shape = (len(images), SEED_CANDIDATES)
        angle = rng.uniform(-np.pi, np.pi, shape)
        y = centres[images, 0, None] + distance * np.sin(angle)
        x = centres[images, 1, None] + distance * np.cos(angle)
        return y, x, rng.uniform(-np.pi, np.pi, shape)

    return sample


def _draw_batch(settings: Settings, rng: np.random.Generator, labels: np.ndarray) -> Chunk:
    style, size = settings.style, settings.resolution
    n = len(labels)
    margins = rng.choice(np.asarray(style.margins), size=n)
    images = np.zeros((n, size, size), dtype=np.uint8)
    paths: list[list[np.ndarray]] = [[] for _ in range(n)]
    dots = np.zeros((n, 2, 2))
    dot_paths = np.zeros((n, 2), dtype=np.int64)
    todo = np.arange(n)
    for _ in range(MAX_ROUNDS):
        if not len(todo):
            break
        canvas = _Canvas(settings, margins[todo])
        rows = np.arange(len(todo))
        centre = _uniform_starts(rng, 2 * style.seed_distance, size - 2 * style.seed_distance)
        ok_a, path_a = _draw_paths(canvas, rng, rows, settings.contour_length, centre)
        starts = np.full((len(todo), 2), np.nan)
        starts[:, 0], starts[:, 1] = path_a[:, 0, 0], path_a[:, 0, 1]
        around = _starts_around(rng, starts, style.seed_distance)
        ok_b = np.zeros(len(todo), dtype=bool)
        path_b = np.full_like(path_a, np.nan)
        ok_b[ok_a], path_b[ok_a] = _draw_paths(canvas, rng, rows[ok_a], settings.contour_length, around)
        done = rows[ok_a & ok_b]
        # dot 0 on the start of target X, dot 1 on the end of X (label 1) or of the other target (label 0)
        origin = rng.integers(0, 2, size=len(done))
        other = np.where(labels[todo[done]] == 1, origin, 1 - origin)
        targets = np.stack([path_a[done], path_b[done]], axis=1)
        picked = np.arange(len(done))
        dot_yx = np.stack([targets[picked, origin, 0, :2], targets[picked, other, -1, 2:]], axis=1)
        dot_segments = [np.concatenate([dot_yx[:, d], dot_yx[:, d]], axis=1) for d in range(2)]
        for segment in dot_segments:
            canvas.stamp(done, segment, canvas.marker_exclusion[done])
        distractors = []
        anywhere = _uniform_starts(rng, style.padding, size - style.padding)
        for _ in range(settings.num_distractors):
            drawn, path = _draw_paths(canvas, rng, done, settings.distractor_length, anywhere)
            distractors.append((drawn, path))
        for segment in dot_segments:
            canvas.paint(done, segment, 2 * style.marker_radius, 1.0)
        inner = slice(canvas.pixel_offset, canvas.pixel_offset + size)
        crop = canvas.pixels[done, inner, inner]
        images[todo[done]] = np.rint(crop * 255).astype(np.uint8)
        for j, i in enumerate(todo[done]):
            paths[i] = [targets[j, 0], targets[j, 1]] + [path[j] for drawn, path in distractors if drawn[j]]
            dots[i], dot_paths[i] = dot_yx[j], (origin[j], other[j])
        todo = todo[~(ok_a & ok_b)]
    if len(todo):
        raise RuntimeError(f"{len(todo)} pathfinder images found no room for their two target paths "
                           f"in {MAX_ROUNDS} rounds")
    return Chunk(images, labels.astype(np.int8), margins, paths, dots, dot_paths)


def batch_size(resolution: int) -> int:
    """Images drawn at once: a few MiB of grids per batch, whatever the resolution."""
    return max(16, min(1000, 2**22 // resolution**2))


def chunk_rng(settings: Settings, seed: int, chunk: int) -> np.random.Generator:
    difficulty = list(DIFFICULTY_DIRS).index(settings.difficulty)
    return np.random.default_rng(np.random.SeedSequence([seed, settings.resolution, difficulty, chunk]))


def generate_chunk(settings: Settings, seed: int, chunk: int, count: int = IMAGES_PER_CHUNK) -> Chunk:
    """The ``count`` images of chunk ``chunk``, labels balanced to within one."""
    rng = chunk_rng(settings, seed, chunk)
    labels = rng.permutation(np.arange(count) % 2)
    parts = [_draw_batch(settings, rng, labels[i : i + batch_size(settings.resolution)])
             for i in range(0, count, batch_size(settings.resolution))]
    return Chunk(
        images=np.concatenate([p.images for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        margins=np.concatenate([p.margins for p in parts]),
        paths=[path for p in parts for path in p.paths],
        dots=np.concatenate([p.dots for p in parts]),
        dot_paths=np.concatenate([p.dot_paths for p in parts]),
    )


def metadata_rows(settings: Settings, chunk: int, drawn: Chunk) -> str:
    """The release's metadata text for one chunk (``snakes2.accumulate_meta`` fields)."""
    style = settings.style
    return "".join(
        f"imgs/{chunk} sample_{i}.png {i} {int(label)} {style.continuity} {settings.contour_length} "
        f"{settings.distractor_length} {style.paddle_length:g} {style.paddle_thickness:g} {int(margin)} 1\n"
        for i, (label, margin) in enumerate(zip(drawn.labels, drawn.margins, strict=True))
    )


def _write_chunk(directory: Path, settings: Settings, seed: int, chunk: int, count: int) -> int:
    """Draw and write one chunk: images into a hidden folder renamed into place, then its metadata file."""
    drawn = generate_chunk(settings, seed, chunk, count)
    final = directory / "imgs" / str(chunk)
    staging = directory / "imgs" / f".{chunk}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for i, image in enumerate(drawn.images):
        Image.fromarray(image, mode="L").save(staging / f"sample_{i}.png", compress_level=1)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    metadata = directory / "metadata" / f"{chunk}.npy"
    staging_metadata = directory / "metadata" / f".{chunk}.npy.partial-{os.getpid()}"
    staging_metadata.write_text(metadata_rows(settings, chunk, drawn))
    os.replace(staging_metadata, metadata)
    return count


def save_montage(path: Path, resolution: int = 32, difficulty: str = "hard", seed: int = 0, count: int = 32,
                 columns: int = 8, zoom: int = 4) -> Path:
    """A PNG grid of the first ``count`` images of chunk 0, framed white (label 1) or grey (label 0)."""
    drawn = generate_chunk(Settings(resolution, difficulty), seed, 0, count)
    block = np.ones((zoom, zoom), dtype=np.uint8)
    tiles = [np.pad(np.kron(image, block), 2, constant_values=255 if label else 90)
             for image, label in zip(drawn.images, drawn.labels, strict=True)]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}")
    Image.fromarray(np.concatenate(rows, axis=0), mode="L").save(staging, format="PNG")
    os.replace(staging, path)
    return path


def _write_settings(directory: Path, record: dict[str, object]) -> None:
    staging = directory / f".{SETTINGS_FILE}.partial-{os.getpid()}"
    staging.write_text(json.dumps(record, indent=1))
    os.replace(staging, directory / SETTINGS_FILE)


def read_settings(directory: Path) -> dict[str, object] | None:
    """The ``generator.json`` of a generated difficulty folder, or None if it has none."""
    path = directory / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: unreadable ({error}); delete {directory} to regenerate") from None


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for numpy/PIL work: forked on Linux, where a spawned worker would first import
    lra.data and with it Lightning (seconds each); the workers never touch torch, so forking is safe."""
    start_method = "fork" if sys.platform == "linux" else "spawn"
    return ProcessPoolExecutor(workers, mp_context=get_context(start_method))


def _chunk_sizes(num_images: int, images_per_chunk: int) -> list[int]:
    full, rest = divmod(num_images, images_per_chunk)
    return [images_per_chunk] * full + ([rest] if rest else [])


def generate_dataset(out_root: Path, resolution: int, difficulty: str, num_images: int, seed: int,
                     workers: int | None = None, progress: bool = True,
                     images_per_chunk: int = IMAGES_PER_CHUNK) -> Path:
    """Generate (or finish generating) a Pathfinder set under ``out_root``; return its difficulty folder.

    ``out_root`` plays the part of the ``lra_release`` root: the set lands in
    ``out_root/pathfinder<resolution>/<difficulty dir>/``. ``workers``: processes (None or 0: all cores).
    The images depend on (resolution, difficulty, seed, images_per_chunk) only. Processes started together
    generate under a lock (``lra.data.cache.locked``): one draws, the others wait and find the set complete.
    """
    settings = Settings(resolution, difficulty)
    if num_images < 2:
        raise ValueError(f"num_images must be at least 2, not {num_images}")
    directory = Path(out_root) / f"pathfinder{resolution}" / DIFFICULTY_DIRS[difficulty]
    with locked(directory):
        return _generate_locked(directory, settings, num_images, seed, workers, progress, images_per_chunk)


def _generate_locked(directory: Path, settings: Settings, num_images: int, seed: int, workers: int | None,
                     progress: bool, images_per_chunk: int) -> Path:
    resolution, difficulty = settings.resolution, settings.difficulty
    identity = {"generator": __name__, "version": GENERATOR_VERSION, "resolution": resolution,
                "difficulty": difficulty, "num_images": num_images, "seed": seed,
                "images_per_chunk": images_per_chunk}
    existing = read_settings(directory)
    if existing is not None and {k: existing.get(k) for k in identity} != identity:
        raise DataError(f"{directory} holds a Pathfinder set generated with other settings "
                        f"({SETTINGS_FILE}: {existing}); delete it or generate elsewhere")
    if existing is not None and existing.get("complete"):
        return directory
    for sub in ("imgs", "metadata"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
        remove_dead_partials(directory / sub, ".*.partial-*")  # from an interrupted run
    remove_dead_partials(directory, ".*.partial-*")
    _write_settings(directory, {**identity, "style": asdict(settings.style), "complete": False})
    sizes = _chunk_sizes(num_images, images_per_chunk)
    missing = [c for c in range(len(sizes)) if not (directory / "metadata" / f"{c}.npy").is_file()]
    workers = min(workers or os.cpu_count() or 1, max(len(missing), 1))
    started = time.perf_counter()
    bar = tqdm(total=num_images, initial=num_images - sum(sizes[c] for c in missing), unit="img",
               desc=f"pathfinder{resolution} {difficulty}", disable=not progress)
    if workers == 1:
        for c in missing:
            bar.update(_write_chunk(directory, settings, seed, c, sizes[c]))
    else:
        with process_pool(workers) as pool:
            jobs = [pool.submit(_write_chunk, directory, settings, seed, c, sizes[c]) for c in missing]
            for job in as_completed(jobs):
                bar.update(job.result())
    bar.close()
    _write_settings(directory, {**identity, "style": asdict(settings.style), "complete": True,
                                "seconds": round(time.perf_counter() - started, 1), "workers": workers})
    return directory
