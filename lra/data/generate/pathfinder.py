"""Pathfinder images drawn the way the official stimulus code draws them, batched; written in the LRA release's layout.

The task: two dots and several dashed curved paths; label 1 when both dots lie on one path, 0 when they
lie on two different paths. LRA's images were made by github.com/drewlinsley/pathfinder (``snakes2.py``
and ``snakes.py`` at ab9c130, run by ``snakes2_wrapper.py``) with the per-resolution settings that the
docstrings of google-research/long-range-arena ``lra_benchmarks/data/pathfinder.py`` list. This module
follows that code's flow step for step, with its own numpy code that draws a batch of images at once.

The official flow, per image (``snakes2.from_wrapper``), which ``_draw_batch`` follows:

1. the label is random (``np.random.randint(0, 2)``) and so is the margin ``m`` (from the resolution's list);
2. two target paths (``two_snakes``), redrawn from scratch until both grow to ``contour_length`` paddles:
   the first starts at a pixel where its first paddle would touch neither the padding nor a band of
   ``2 * seed_distance`` along the border (``initialize_two_seeds``); the second starts ``seed_distance``
   away from it in a random direction, unchecked; then both grow one paddle at a time, alternately;
3. ``num_distractor_snakes`` distractor paths of ``distractor_length`` paddles, each tried up to 5 times
   and dropped if it never fits (``make_many_snakes(..., allow_incomplete=True)``); no single paddles
   (``use_single_paddles = False``). The dots are not in the occupancy mask, so distractors may run
   under them, and the first target's last paddle never enters it (``two_snakes`` adds only
   ``current_segment_masks[-1]``, the second target's);
4. a dot on the start of target ``X`` and one on the end of ``X`` (label 1) or of the other target (label 0),
   each a disc drawn at ``antialias_scale`` times the size and Lanczos-downsampled (``draw_circle``);
5. the float image (strokes times contrast, max with the dots) is saved by ``scipy.misc.imsave``, which
   rescales each image's minimum..maximum to 0..255.

A paddle (``snakes.draw_line_n_mask``) is a line of width ``thickness * antialias_scale`` drawn by PIL at
``antialias_scale`` times the size on a small canvas and Lanczos-downsampled (``scipy.misc.imresize``), and
its mask is that line dilated by a disc of radius ``m * antialias_scale``, downsampled the same way. All
positions are whole pixels. A path grows (``snakes.extend_snake``) from pivot ``v`` heading ``theta``: the
next pivot is ``ceil(v + (L + 2m) u(theta))``; the candidate ends are the distinct pixels of the circle of
radius ``L + m`` around it (``get_coords_cmf``), weighted by ``cos(min(|turn| * continuity, pi/2))**2``
times one minus the occupancy mask dilated by a disc of radius ``m``; up to 3 draws of an end whose
paddle mask, added to the occupancy mask, stays below 1.8 everywhere; the previous paddle's mask enters
the occupancy mask only then. A path's first paddle goes where its mask, as a dilation kernel (pixels at
exactly 255, centred one pixel off), meets nothing above 0.3 (``seed_snake``); OpenCV's dilation gives
``-DBL_MAX`` wherever the kernel misses the image entirely, which the code reads as "no room", so first
paddles only take the orientations whose kernel reaches every corner of the image (``_kernel_reaches_corners``):
at 32 px 30 of the 360 degrees (-150 to -121), at 64 px 108.

What we read where the sources are unclear:

* LRA's docstrings set ``contour_length = 14`` where the wrapper computes ``num_distractor_snakes`` once
  (``snakes2_wrapper.py`` lines 73-74) and then loops over the difficulties, so the count is
  ``budget // (14 // 3)`` for every difficulty (Python 2 integer division, as ``snakes2`` ran on Python 2);
  the baseline keeps the wrapper's own 6 paddles and distractors of 2 (lines 69, 73, 92-93). Read
  literally, curv_baseline would be drawn like curv_contour_length_14.
* ``scipy.misc`` is gone; its ``imresize`` and ``imsave`` are redone here as they behaved (byte-scale the
  float input, PIL Lanczos in 8 bits); PIL versions that round differently can move a pixel across 255.
* The random streams are numpy's ``Generator`` rather than the legacy global state: the same distribution,
  not the same images.

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
from PIL import Image, ImageDraw
from tqdm import tqdm

from lra.data.cache import locked, remove_dead_partials
from lra.data.errors import DataError

GENERATOR_VERSION = 2  # 2: the official flow (1: our own paths, exact coverage strokes, balanced labels)
IMAGES_PER_CHUNK = 1000
DIFFICULTY_DIRS = {
    "easy": "curv_baseline",
    "intermediate": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}
SETTINGS_FILE = "generator.json"

# The official code's constants (drewlinsley/pathfinder at ab9c130).
CONTOUR_LENGTHS = {"easy": 6, "intermediate": 9, "hard": 14}  # snakes2_wrapper.py lines 69, 86
COUNT_CONTOUR_LENGTH = 14  # LRA docstrings' contour_length at snakes2_wrapper.py lines 73-74
DISTRACTOR_TRIES = 1 + 4  # make_many_snakes: retry while count <= max_distractor_contour_retrial (4)
PADDLE_TRIES = 1 + 2  # seed_snake, initialize_two_seeds, extend_snake: trial <= max_paddle_retrial (2)
STOP_WITH_AVAILABILITY = 0.01  # snakes2.from_wrapper's make_many_snakes call
OVERLAP_LIMIT = 1.8  # extend_snake: np.max(mask + m_im) < 1.8
FREE_LIMIT = 0.3  # find_available_coordinates(np.ceil(mask - 0.3)): free where the mask is <= 0.3
# Masks hold 8-bit levels k (the official float k / 255): the two tests above in levels
OVERLAP_LEVELS = math.ceil(OVERLAP_LIMIT * 255)  # mask + paddle mask < 459
FREE_LEVELS = math.floor(FREE_LIMIT * 255)  # a pixel is free at <= 76
DEAD_END = 1e-4  # get_coords_cmf: total weight below this is a dead end
SEED_ORIENTATIONS = 360  # np.random.randint(low=-180, high=180) degrees

MAX_TARGET_ROUNDS = 10_000  # rounds of tries; the official loop never gives up, this one says so


@dataclass(frozen=True)
class Style:
    """One resolution's arguments to ``snakes2`` (lengths in pixels)."""

    padding: int
    paddle_length: int
    paddle_thickness: float
    margins: tuple[int, ...]  # one drawn per image
    marker_radius: float
    seed_distance: int
    continuity: float
    antialias_scale: int
    snake_contrast: float  # snake_contrast_list: targets and distractors
    paddle_contrast: float  # paddle_contrast_list: targets only (two_snakes multiplies the two)
    distractor_budget: int  # num_distractor_snakes = budget // distractor_length


# lra_benchmarks/data/pathfinder.py docstrings (Pathfinder32 lines 30-43, Pathfinder64 118-130,
# Pathfinder128 205-217, Pathfinder256 292-302; the last antialias_scale each lists wins); what they leave
# out is snakes2_wrapper.Args' default (lines 8-15): padding 22, seed_distance 27, paddle_length 5,
# paddle_contrast_list [1.].
STYLES = {
    32: Style(padding=1, paddle_length=2, paddle_thickness=0.5, margins=(1,), marker_radius=1.5,
              seed_distance=7, continuity=1.0, antialias_scale=2, snake_contrast=2.0, paddle_contrast=0.75,
              distractor_budget=20),
    64: Style(padding=1, paddle_length=5, paddle_thickness=1.0, margins=(1,), marker_radius=2.5,
              seed_distance=12, continuity=1.8, antialias_scale=2, snake_contrast=0.8, paddle_contrast=1.0,
              distractor_budget=22),
    128: Style(padding=1, paddle_length=5, paddle_thickness=1.5, margins=(2, 3), marker_radius=3.0,
               seed_distance=20, continuity=1.8, antialias_scale=2, snake_contrast=0.9, paddle_contrast=1.0,
               distractor_budget=35),
    256: Style(padding=22, paddle_length=5, paddle_thickness=2.0, margins=(3,), marker_radius=5.0,
               seed_distance=27, continuity=1.8, antialias_scale=2, snake_contrast=1.0, paddle_contrast=1.0,
               distractor_budget=30),
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
        """``contour_length / 3`` in Python 2 (snakes2_wrapper.py lines 73, 88)."""
        return self.contour_length // 3

    @property
    def num_distractors(self) -> int:
        """Computed once, before the difficulties' loop (snakes2_wrapper.py line 74)."""
        return self.style.distractor_budget // (COUNT_CONTOUR_LENGTH // 3)


@dataclass
class Chunk:
    """Drawn images with the generator's own record of what it drew.

    ``paths[i][p]`` is path ``p`` of image ``i`` as its paddles ``(n, 3)``: the pixel each paddle was drawn
    from (row, column) and its stamp (``Stamps`` index); paths 0 and 1 are the targets, the rest the
    distractors that fitted. ``dots[i]`` are the two dots' pixels, ``dot_paths[i]`` the target each is on.
    """

    images: np.ndarray  # (n, R, R) uint8
    labels: np.ndarray  # (n,) int8
    margins: np.ndarray  # (n,) the margin drawn for each image
    paths: list[list[np.ndarray]]
    dots: np.ndarray  # (n, 2, 2) int: (dot, row/column)
    dot_paths: np.ndarray  # (n, 2) int


def ceil_translate(y, x, theta, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """``snakes.translate_coord``: move ``distance`` along ``theta`` (y = sin), each coordinate rounded up."""
    return (np.ceil(y + float(distance) * np.sin(theta)).astype(np.int64),
            np.ceil(x + float(distance) * np.cos(theta)).astype(np.int64))


def flip_by_pi(theta: np.ndarray) -> np.ndarray:
    """``snakes.flip_by_pi`` (also ``seed_snake``'s reversed orientation)."""
    return np.where(theta < 0, theta + np.pi, theta - np.pi)


def seed_radians(degrees: np.ndarray) -> np.ndarray:
    """A first paddle's orientation: ``np.random.randint(-180, 180) * np.pi / 180``."""
    return degrees * np.pi / 180


def _disc(radius: float) -> np.ndarray:
    """``snakes.generate_dilation_struct``: the pixels within ``radius`` of the centre."""
    reach = int(radius)
    y, x = np.ogrid[-reach : reach + 1, -reach : reach + 1]
    return x * x + y * y <= radius * radius


def _dilate(image: np.ndarray, struct: np.ndarray) -> np.ndarray:
    """Binary dilation by a symmetric ``struct`` (what ``cv2.dilate`` does to a 0/255 picture)."""
    reach = struct.shape[0] // 2
    padded = np.pad(image, reach)
    out = np.zeros_like(image)
    for dy, dx in zip(*np.nonzero(struct), strict=True):
        out |= padded[dy : dy + image.shape[0], dx : dx + image.shape[1]]
    return out


def lanczos(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.misc.imresize(..., interp='lanczos')`` of a 0/255 picture: PIL's 8-bit Lanczos, 0..255."""
    resized = Image.fromarray(image.astype(np.uint8), mode="L").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def level_values(levels: np.ndarray) -> np.ndarray:
    """What the official code computes from 8-bit levels: ``.astype(np.float32) / 255.0``."""
    return levels.astype(np.float32) / 255.0


def paddle_stamp(theta: float, style: Style, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """``snakes.draw_line_n_mask`` on its own small canvas: the paddle drawn from the centre pixel along
    ``theta`` and its mask, each ``(S, S)`` 8-bit levels, ``S = 2 * (L + ceil(thickness) + margin) + 1``."""
    length, scale = style.paddle_length, style.antialias_scale
    half = length + math.ceil(style.paddle_thickness) + margin
    centre = half * scale
    head_y, head_x = ceil_translate(centre, centre, theta, length * scale)
    blown = Image.new("L", (2 * centre + 1, 2 * centre + 1), 0)
    width = int(np.round(style.paddle_thickness * scale))
    ImageDraw.Draw(blown).line([(centre, centre), (int(head_x), int(head_y))], fill=255, width=width)
    line = np.asarray(blown) > 0
    mask = _dilate(line, _disc(margin * scale))
    return lanczos(line * 255, 2 * half + 1), lanczos(mask * 255, 2 * half + 1)


def candidate_steps(radius: int) -> np.ndarray:
    """``get_coords_cmf``'s candidate ends around a pivot: the distinct whole-pixel points of a circle of
    ``radius`` sampled one pixel of arc apart, as (row, column) offsets in ``np.unique``'s order."""
    degrees = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
    points = np.stack([np.floor(radius * np.sin(degrees)), np.floor(radius * np.cos(degrees))], axis=1)
    return np.unique(points.astype(np.int64), axis=0)


def _kernel_reaches_corners(offsets: np.ndarray, resolution: int) -> bool:
    """Whether a dilation kernel with these offsets meets the image from each of its corners; where it
    does not, ``cv2.dilate`` writes ``-DBL_MAX`` and ``find_available_coordinates`` finds no room."""
    corners = np.array([[0, 0], [0, resolution - 1], [resolution - 1, 0], [resolution - 1, resolution - 1]])
    reached = corners[:, None, :] + offsets[None]
    return bool(np.all(np.any(np.all((reached >= 0) & (reached < resolution), axis=-1), axis=1)))


@dataclass(frozen=True)
class Stamps:
    """Everything about paddles that depends on the orientation only, for one resolution and margin.

    Stamps ``0..359`` are first paddles at ``stamp - 180`` degrees; stamp ``360 + j`` is a later paddle
    whose end is ``steps[j]`` from its pivot, drawn back from that end (``flip_by_pi``).
    """

    half: int  # a stamp is (2 half + 1)^2, centred on the pixel it is drawn from
    lines: np.ndarray  # (stamps, S, S) float32: the paddle at contrast 1
    masks: np.ndarray  # (stamps, S, S) uint8: its occupancy mask, in levels of 1/255
    angles: np.ndarray  # (stamps,) the orientation each is drawn along
    steps: np.ndarray  # (E, 2) candidate ends relative to the pivot
    step_angles: np.ndarray  # (E,) the heading each gives the path
    turn_weights: np.ndarray  # (stamps, E) cos(min(|turn| continuity, pi/2))^2 of each end after each stamp
    kernels: np.ndarray  # (360, k, 2) a first paddle's dilation kernel (padded by repeating an offset)
    seed_alive: np.ndarray  # (360,) whether that kernel reaches every corner (else: no room, ever)
    seed_box: np.ndarray  # (360, 4) rows lo..hi, columns lo..hi where the first target may start

    @property
    def first_later(self) -> int:
        return SEED_ORIENTATIONS


@functools.cache
def stamps(resolution: int, margin: int) -> Stamps:
    style = STYLES[resolution]
    radius = style.paddle_length + margin
    steps = candidate_steps(radius)
    step_angles = np.arctan2(steps[:, 0], steps[:, 1]).astype(np.float64)
    angles = np.concatenate([seed_radians(np.arange(-180, 180)), flip_by_pi(step_angles)])
    headings = np.concatenate([seed_radians(np.arange(-180, 180)), step_angles])  # a path's, after each stamp
    turn = np.abs(step_angles[None, :] - headings[:, None])
    turn = np.minimum(turn, 2 * np.pi - turn)
    turn_weights = np.maximum(np.cos(np.minimum(turn * style.continuity, np.pi / 2)), 0) ** 2
    drawn = [paddle_stamp(float(a), style, margin) for a in angles]
    lines, masks = level_values(np.stack([d[0] for d in drawn])), np.stack([d[1] for d in drawn])
    half = lines.shape[-1] // 2
    kernels = [_seed_kernel(mask, half, radius) for mask in masks[:SEED_ORIENTATIONS]]
    widest = max(len(k) for k in kernels)
    padded = np.stack([np.concatenate([k, np.repeat(k[:1], widest - len(k), axis=0)]) for k in kernels])
    alive = np.array([_kernel_reaches_corners(k, resolution) for k in kernels])
    return Stamps(half, lines, masks, angles, steps, step_angles, turn_weights, padded, alive,
                  np.stack([_seed_box(k, style, resolution) for k in kernels]))


def _seed_kernel(mask: np.ndarray, half: int, radius: int) -> np.ndarray:
    """``seed_snake``'s struct as ``cv2.dilate`` reads it: the mask's pixels at exactly 255 (``astype(uint8)``)
    inside a ``2 radius + 1`` canvas where the paddle starts one pixel below and right of the anchor."""
    rows, cols = np.nonzero(mask == 255)
    offsets = np.stack([rows - half + 1, cols - half + 1], axis=1)
    offsets = offsets[np.all(np.abs(offsets) <= radius, axis=1)]
    if not len(offsets):
        raise RuntimeError("a paddle mask with no pixel at 255: its dilation kernel would be empty")
    return offsets


def _seed_box(offsets: np.ndarray, style: Style, resolution: int) -> np.ndarray:
    """Where ``initialize_two_seeds`` may put the first target's first paddle: its kernel inside the
    square left by a band of ``2 seed_distance`` along the border (the padding lies within that band)."""
    low, high = 2 * style.seed_distance, resolution - 2 * style.seed_distance - 1
    return np.array([low - offsets[:, 0].min(), high - offsets[:, 0].max(),
                     low - offsets[:, 1].min(), high - offsets[:, 1].max()])


def _windows(grid: np.ndarray, size: int) -> np.ndarray:
    """Writable view of every ``size`` x ``size`` window of each image: (n, rows, cols, size, size)."""
    return np.lib.stride_tricks.sliding_window_view(grid, (size, size), axis=(1, 2), writeable=True)


class _Canvas:
    """A batch of images of one margin being drawn: the occupancy masks and the strokes.

    Both are padded by ``pad`` pixels on each side so that stamps never need clipping; the padding of the
    masks is kept at 0, which is what a mask cropped to the image (the official code's) reads as.
    """

    def __init__(self, settings: Settings, margin: int, count: int, strokes: bool = True):
        self.style, self.resolution, self.margin = settings.style, settings.resolution, margin
        self.stamps = stamps(settings.resolution, margin)
        self.size = 2 * self.stamps.half + 1
        self.pad = self.stamps.half + 1
        self.inner = slice(self.pad, self.pad + self.resolution)
        self.frame = np.zeros((self.resolution + 2 * self.pad,) * 2, dtype=np.uint8)
        inside = self.frame[self.inner, self.inner]
        inside[:] = 255  # initialize_two_seeds: the mask is 1 within `padding` of the border
        border = self.style.padding
        inside[border:-border, border:-border] = 0
        self.masks = np.repeat(self.frame[None], count, axis=0)
        self.mask_windows = _windows(self.masks, self.size)
        self.strokes = np.zeros(self.masks.shape, dtype=np.float32) if strokes else None
        self.stroke_windows = _windows(self.strokes, self.size) if strokes else None
        within = np.zeros_like(self.frame)
        within[self.inner, self.inner] = 1  # what the official code's cropped masks keep
        self.within_windows = _windows(within[None], self.size)[0]
        self.disc = np.argwhere(_disc(margin)) - margin
        self.reach: np.ndarray | None = None  # flat offsets of each end's disc from its pivot

    def reset(self, images: np.ndarray) -> None:
        self.masks[images] = self.frame

    def _index(self, images: np.ndarray, at: np.ndarray):
        corner = self.pad - self.stamps.half
        return images, at[:, 0] + corner, at[:, 1] + corner

    def fits(self, images: np.ndarray, at: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``extend_snake``'s test: the paddle's mask plus the occupancy mask stays below 1.8."""
        windows = self.mask_windows[self._index(images, at)]
        return np.add(windows, self.stamps.masks[keys], dtype=np.uint16).max(axis=(1, 2)) < OVERLAP_LEVELS

    def commit(self, images: np.ndarray, at: np.ndarray, keys: np.ndarray) -> None:
        """Add paddles' masks to the occupancy mask (``np.maximum``), none of it outside the image."""
        index = self._index(images, at)
        clipped = self.stamps.masks[keys] * self.within_windows[index[1:]]
        self.mask_windows[index] = np.maximum(self.mask_windows[index], clipped)

    def paint(self, images: np.ndarray, at: np.ndarray, keys: np.ndarray, contrast: float) -> None:
        index = self._index(images, at)
        self.stroke_windows[index] = np.maximum(self.stroke_windows[index],
                                                self.stamps.lines[keys] * np.float32(contrast))

    def dilated(self, images: np.ndarray, pivots: np.ndarray) -> np.ndarray:
        """The occupancy mask dilated by a disc of radius ``margin`` (``extend_snake``) at each candidate end
        around ``pivots`` (n, 2): (n, E); ends outside the image read anything."""
        width = self.masks.shape[-1]
        if self.reach is None:
            near = self.stamps.steps[:, None, :] + self.disc[None, :, :]
            self.reach = (near[..., 0] * width + near[..., 1]).ravel()
        base = (images * width + pivots[:, 0] + self.pad) * width + pivots[:, 1] + self.pad
        values = self.masks.take(base[:, None] + self.reach, mode="clip")
        levels = values.reshape(len(images), len(self.stamps.steps), len(self.disc)).max(axis=-1)
        return level_values(levels).astype(np.float64)

    def inside(self, points: np.ndarray) -> np.ndarray:
        return np.all((points >= 0) & (points < self.resolution), axis=-1)

    def lined_level(self, images: np.ndarray, tails: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``seed_snake``'s dilated mask at ``tails`` (n, C, 2) for first paddles ``keys`` (n,), in levels:
        the most occupied pixel the kernel reaches, with a 1-pixel frame added; -1 if it reaches none."""
        reach = tails[:, :, None, :] + self.stamps.kernels[keys][:, None, :, :]
        inside = self.inside(reach)
        values = self.masks[images[:, None, None], reach[..., 0] + self.pad, reach[..., 1] + self.pad]
        on_frame = np.any((reach == 0) | (reach == self.resolution - 1), axis=-1)
        levels = np.where(on_frame, np.int16(255), values.astype(np.int16))
        return np.where(inside, levels, np.int16(-1)).max(axis=-1)

    def room(self, images: np.ndarray) -> np.ndarray:
        """The share of the image whose occupancy mask is free (``stop_with_availability``)."""
        return (self.masks[images][:, self.inner, self.inner] <= FREE_LEVELS).mean(axis=(1, 2))

    def pixels(self, images: np.ndarray) -> np.ndarray:
        return self.strokes[images][:, self.inner, self.inner]


@dataclass
class _Paths:
    """Paths being grown, one per image: their pivots, headings, last paddle (not yet in the mask)."""

    images: np.ndarray
    pivot: np.ndarray  # (n, 2)
    theta: np.ndarray  # (n,)
    at: np.ndarray  # (n, 2) the pixel the last paddle was drawn from
    key: np.ndarray  # (n,) its stamp
    paddles: np.ndarray  # (n, count, 3): (row, column, stamp) of each paddle

    @classmethod
    def seeded(cls, images, tails, keys, pivots, count: int) -> _Paths:
        paddles = np.zeros((len(images), count, 3), dtype=np.int64)
        paddles[:, 0, :2], paddles[:, 0, 2] = tails, keys
        return cls(images, pivots, seed_radians(keys - 180.0), tails.copy(), keys.copy(), paddles)


def _seed_ends(canvas: _Canvas, tails: np.ndarray, degrees: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A first paddle's head and pivot from its tail (``seed_snake``): head ``L`` along, pivot ``L + m`` back."""
    theta = seed_radians(degrees)
    length = canvas.style.paddle_length
    head = np.stack(ceil_translate(tails[:, 0], tails[:, 1], theta, length), axis=1)
    pivot = np.stack(ceil_translate(head[:, 0], head[:, 1], flip_by_pi(theta), length + canvas.margin), axis=1)
    return head, pivot




def _extend(canvas: _Canvas, rng: np.random.Generator, paths: _Paths, alive: np.ndarray, k: int) -> np.ndarray:
    """``extend_snake`` for ``paths[alive]``: their paddle ``k``; returns the positions that got one."""
    style, table = canvas.style, canvas.stamps
    images = paths.images[alive]
    pivot = np.stack(ceil_translate(paths.pivot[alive, 0], paths.pivot[alive, 1], paths.theta[alive],
                                    style.paddle_length + 2 * canvas.margin), axis=1)
    ends = pivot[:, None, :] + table.steps
    free = 1 - canvas.dilated(images, pivot)
    weight = np.where(canvas.inside(ends), free * table.turn_weights[paths.key[alive]], 0)
    total = weight.sum(axis=1)
    cmf = np.cumsum(weight / np.where(total > 0, total, 1)[:, None], axis=1)
    chosen = np.full(len(alive), -1)
    pending = np.flatnonzero(total >= DEAD_END)
    for _ in range(PADDLE_TRIES):
        if not len(pending):
            break
        pick = np.argmax(cmf[pending] - rng.random(len(pending))[:, None] > 0, axis=1)
        fits = canvas.fits(images[pending], ends[pending, pick], table.first_later + pick)
        chosen[pending[fits]] = pick[fits]
        pending = pending[~fits]
    grown = chosen >= 0
    kept, pick = alive[grown], chosen[grown]
    canvas.commit(paths.images[kept], paths.at[kept], paths.key[kept])  # the previous paddle, one step late
    paths.pivot[kept], paths.theta[kept] = pivot[grown], table.step_angles[pick]
    paths.at[kept], paths.key[kept] = ends[grown, pick], table.first_later + pick
    paths.paddles[kept, k, :2], paths.paddles[kept, k, 2] = paths.at[kept], paths.key[kept]
    return kept

def _seed(canvas: _Canvas, rng: np.random.Generator, count: int, sample_tails):
    """Up to 3 tries at a first paddle for each of ``count`` paths (``seed_snake``, ``initialize_two_seeds``).

    ``sample_tails(positions, keys)`` gives (found, tails) for the paths at ``positions``: a pixel where the
    paddle may start, uniform among those allowed, or found False where there is none (the official code
    then gives up at once). A try whose head or pivot leaves the image is drawn again.
    Returns (ok, tails, keys, pivots).
    """
    ok = np.zeros(count, dtype=bool)
    tails, pivots = np.zeros((count, 2), dtype=np.int64), np.zeros((count, 2), dtype=np.int64)
    keys = np.zeros(count, dtype=np.int64)
    pending = np.arange(count)
    for _ in range(PADDLE_TRIES):
        if not len(pending):
            break
        degrees = rng.integers(-180, 180, size=len(pending))
        found, where = sample_tails(pending, degrees + 180)
        head, pivot = _seed_ends(canvas, where, degrees)
        placed = found & canvas.inside(head) & canvas.inside(pivot)
        done = pending[placed]
        ok[done], tails[done], pivots[done], keys[done] = True, where[placed], pivot[placed], degrees[placed] + 180
        pending = pending[found & ~placed]
    return ok, tails, keys, pivots


def _in_seed_box(canvas: _Canvas, rng: np.random.Generator):
    """The first target's start (``initialize_two_seeds``): uniform in its orientation's box."""

    def sample(positions: np.ndarray, keys: np.ndarray):
        box = canvas.stamps.seed_box[keys]
        found = canvas.stamps.seed_alive[keys] & (box[:, 0] <= box[:, 1]) & (box[:, 2] <= box[:, 3])
        span = np.maximum(box[:, 1::2] - box[:, 0::2] + 1, 1)
        tails = box[:, 0::2] + np.floor(rng.random((len(keys), 2)) * span).astype(np.int64)
        return found, tails

    return sample


def _around(canvas: _Canvas, rng: np.random.Generator, origins: np.ndarray):
    """The second target's start: ``seed_distance`` from the first one's, in a random whole-degree
    direction, rounded; nothing but its head and pivot is checked."""
    distance = canvas.style.seed_distance

    def sample(positions: np.ndarray, keys: np.ndarray):
        direction = rng.integers(0, 360, size=len(positions)) * np.pi / 180
        origin = origins[positions]
        tails = np.stack([np.round(origin[:, 0] + distance * np.sin(direction)),
                          np.round(origin[:, 1] + distance * np.cos(direction))], axis=1)
        return np.ones(len(positions), dtype=bool), tails.astype(np.int64)

    return sample


FREE_PIXEL_CANDIDATES = 32  # pixels tried at once per first paddle before counting the free ones exactly


def _free_pixels(canvas: _Canvas, rng: np.random.Generator, images: np.ndarray):
    """A distractor's start (``seed_snake``): uniform among the pixels where its kernel meets nothing
    above 0.3, none if under 1% of the image is free (``stop_with_availability``).

    Drawn by rejection (uniform pixels, the first free one kept: the same distribution); an image where
    none of ``FREE_PIXEL_CANDIDATES`` is free has its free pixels counted exactly.
    """
    size = canvas.resolution
    grid = np.argwhere(np.ones((size, size), dtype=bool))[None]

    def sample(positions: np.ndarray, keys: np.ndarray):
        chosen = images[positions]
        tries = rng.integers(0, size, size=(len(chosen), FREE_PIXEL_CANDIDATES, 2))
        free = canvas.lined_level(chosen, tries, keys) <= FREE_LEVELS
        found = free.any(axis=1)
        tails = tries[np.arange(len(chosen)), free.argmax(axis=1)]
        for j in np.flatnonzero(~found & canvas.stamps.seed_alive[keys]):
            everywhere = np.flatnonzero(canvas.lined_level(chosen[j : j + 1], grid, keys[j : j + 1])[0] <= FREE_LEVELS)
            if len(everywhere):
                found[j], tails[j] = True, grid[0, rng.choice(everywhere)]
        enough = canvas.room(chosen) >= STOP_WITH_AVAILABILITY
        return found & enough & canvas.stamps.seed_alive[keys], tails

    return sample


def _grow(canvas: _Canvas, rng: np.random.Generator, paths: list[_Paths], count: int) -> np.ndarray:
    """Grow ``paths`` (one or two per image, sharing the masks) to ``count`` paddles, one paddle of each
    in turn; returns the positions of the images whose paths all grew."""
    alive = np.arange(len(paths[0].images))
    for k in range(1, count):
        for path in paths:
            alive = _extend(canvas, rng, path, alive, k)
    return alive


def _draw_targets(canvas: _Canvas, rng: np.random.Generator, images: np.ndarray, count: int):
    """One try of ``two_snakes`` per image; returns the images whose masks it changed, those it drew and
    their two targets' paddles."""
    ok0, tails0, keys0, pivots0 = _seed(canvas, rng, len(images), _in_seed_box(canvas, rng))
    first = np.flatnonzero(ok0)
    ok1, tails1, keys1, pivots1 = _seed(canvas, rng, len(first), _around(canvas, rng, tails0[first]))
    both = first[ok1]
    paths = [_Paths.seeded(images[both], tails0[both], keys0[both], pivots0[both], count),
             _Paths.seeded(images[both], tails1[ok1], keys1[ok1], pivots1[ok1], count)]
    alive = _grow(canvas, rng, paths, count)
    # two_snakes adds only current_segment_masks[-1]: the second target's last paddle, not the first's
    canvas.commit(paths[1].images[alive], paths[1].at[alive], paths[1].key[alive])
    return images[both], images[both[alive]], [path.paddles[alive] for path in paths]


def _draw_distractor(canvas: _Canvas, rng: np.random.Generator, images: np.ndarray, count: int):
    """One ``make_snake`` per image; returns (the images it drew, their paddles). A failed try leaves
    its paddles' masks behind: the caller restores the masks."""
    ok, tails, keys, pivots = _seed(canvas, rng, len(images), _free_pixels(canvas, rng, images))
    path = _Paths.seeded(images[ok], tails[ok], keys[ok], pivots[ok], count)
    alive = _grow(canvas, rng, [path], count)
    canvas.commit(path.images[alive], path.at[alive], path.key[alive])
    return path.images[alive], path.paddles[alive]

def dot_image(resolution: int, centre: np.ndarray, style: Style) -> np.ndarray:
    """``snakes2.draw_circle``: a disc of ``marker_radius`` around pixel ``centre`` drawn at
    ``antialias_scale`` times the size and Lanczos-downsampled, in 8-bit levels."""
    scale = style.antialias_scale
    rows = np.arange(resolution * scale)[:, None] - centre[0] * scale
    cols = np.arange(resolution * scale)[None, :] - centre[1] * scale
    disc = rows * rows + cols * cols <= (style.marker_radius * scale) ** 2
    return lanczos(disc * 255, resolution)


def byte_scale(image: np.ndarray) -> np.ndarray:
    """``scipy.misc.imsave``'s ``bytescale``: the image's minimum..maximum onto 0..255, rounded."""
    low, high = image.min(), image.max()
    spread = high - low if high > low else 1.0
    return (((image - low) * (255.0 / spread)).clip(0, 255) + 0.5).astype(np.uint8)


def _add_distractors(canvas: _Canvas, rng: np.random.Generator, settings: Settings, drawn: list[list[np.ndarray]]):
    """``make_many_snakes(allow_incomplete=True)``: each distractor tried up to 5 times, else left out."""
    everyone = np.arange(len(drawn))
    for _ in range(settings.num_distractors):
        pending = everyone
        for _ in range(DISTRACTOR_TRIES):
            if not len(pending):
                break
            before = canvas.masks[pending]
            images, paddles = _draw_distractor(canvas, rng, pending, settings.distractor_length)
            failed = ~np.isin(pending, images)
            canvas.masks[pending[failed]] = before[failed]
            _paint(canvas, images, paddles, settings.style.snake_contrast)
            for image, path in zip(images, paddles, strict=True):
                drawn[image].append(path)
            pending = pending[failed]


def _paint(canvas: _Canvas, images: np.ndarray, paddles: np.ndarray, contrast: float) -> None:
    for k in range(paddles.shape[1]):
        canvas.paint(images, paddles[:, k, :2], paddles[:, k, 2], contrast)


ATTEMPT_BYTES = 16 << 20  # occupancy masks of the pairs of targets tried at once


def _draw_targets_until_done(canvas: _Canvas, rng: np.random.Generator, settings: Settings) -> list[list[np.ndarray]]:
    """``while not success: two_snakes(...)``, for every image of ``canvas``.

    Tries are independent and start from a clean mask, so many run at once on a scratch canvas and each
    image takes the next success (its mask with it): the same distribution as trying again and again.
    """
    count = len(canvas.masks)
    drawn: list[list[np.ndarray]] = [[] for _ in range(count)]
    trials = _Canvas(settings, canvas.margin, max(1, ATTEMPT_BYTES // canvas.masks[0].nbytes), strokes=False)
    everyone = np.arange(len(trials.masks))
    contrast = settings.style.paddle_contrast * settings.style.snake_contrast
    todo = np.arange(count)
    for _ in range(MAX_TARGET_ROUNDS):
        if not len(todo):
            return drawn
        touched, rows, (first, second) = _draw_targets(trials, rng, everyone, settings.contour_length)
        taken = min(len(rows), len(todo))
        images, rows, first, second = todo[:taken], rows[:taken], first[:taken], second[:taken]
        canvas.masks[images] = trials.masks[rows]
        for paddles in (first, second):
            _paint(canvas, images, paddles, contrast)
        for image, a, b in zip(images, first, second, strict=True):
            drawn[image] = [a, b]
        todo = todo[taken:]
        trials.reset(touched)
    raise RuntimeError(f"{len(todo)} pathfinder images found no room for their two target paths in "
                       f"{MAX_TARGET_ROUNDS} rounds of tries")


def _draw_margin(settings: Settings, rng: np.random.Generator, labels: np.ndarray, margin: int):
    """Images of one margin: targets, distractors, dots (``snakes2.from_wrapper`` after the draws)."""
    canvas = _Canvas(settings, margin, len(labels))
    drawn = _draw_targets_until_done(canvas, rng, settings)
    _add_distractors(canvas, rng, settings, drawn)
    origin = rng.integers(0, 2, size=len(labels))
    terminal = np.where(labels == 1, origin, 1 - origin)
    dots = np.array([[paths[o][0, :2], paths[t][-1, :2]] for paths, o, t in zip(drawn, origin, terminal, strict=True)])
    strokes = canvas.pixels(np.arange(len(labels))).astype(np.float64)
    images = np.empty(strokes.shape, dtype=np.uint8)
    for i, (first, last) in enumerate(dots):
        marks = level_values(np.maximum(dot_image(settings.resolution, first, settings.style),
                                        dot_image(settings.resolution, last, settings.style)))
        images[i] = byte_scale(np.maximum(strokes[i], marks))
    return images, drawn, dots, np.stack([origin, terminal], axis=1)


def _draw_batch(settings: Settings, rng: np.random.Generator, count: int) -> Chunk:
    labels = rng.integers(0, 2, size=count).astype(np.int8)  # from_wrapper: np.random.randint(low=0, high=2)
    margins = rng.choice(np.asarray(settings.style.margins), size=count)
    size = settings.resolution
    images = np.zeros((count, size, size), dtype=np.uint8)
    paths: list[list[np.ndarray]] = [[] for _ in range(count)]
    dots, dot_paths = np.zeros((count, 2, 2), dtype=np.int64), np.zeros((count, 2), dtype=np.int64)
    for margin in np.unique(margins):
        rows = np.flatnonzero(margins == margin)
        drawn_images, drawn, drawn_dots, drawn_dot_paths = _draw_margin(settings, rng, labels[rows], int(margin))
        images[rows], dots[rows], dot_paths[rows] = drawn_images, drawn_dots, drawn_dot_paths
        for row, path in zip(rows, drawn, strict=True):
            paths[row] = path
    return Chunk(images, labels, margins, paths, dots, dot_paths)


def batch_size(resolution: int) -> int:
    """Images drawn at once: a few MiB of masks per batch, whatever the resolution."""
    return max(16, min(1000, 2**22 // resolution**2))


def chunk_rng(settings: Settings, seed: int, chunk: int) -> np.random.Generator:
    difficulty = list(DIFFICULTY_DIRS).index(settings.difficulty)
    return np.random.default_rng(np.random.SeedSequence([seed, settings.resolution, difficulty, chunk]))


def generate_chunk(settings: Settings, seed: int, chunk: int, count: int = IMAGES_PER_CHUNK) -> Chunk:
    """The ``count`` images of chunk ``chunk``; labels random per image, as the official code draws them."""
    rng = chunk_rng(settings, seed, chunk)
    step = batch_size(settings.resolution)
    parts = [_draw_batch(settings, rng, min(step, count - i)) for i in range(0, count, step)]
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
