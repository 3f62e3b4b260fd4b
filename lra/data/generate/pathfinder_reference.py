"""The official Pathfinder stimulus code's logic, one image at a time, for checking ``lra.data.generate.pathfinder``.

A plain reading of ``snakes2.from_wrapper`` and what it calls in github.com/drewlinsley/pathfinder at
ab9c130 (``snakes2.py``, ``snakes.py``), written anew: whole-image masks, one paddle at a time, a full
dilation wherever the code dilates, with OpenCV's ``cv2.dilate`` and scipy's ``imresize`` / ``bytescale``
redone in numpy and PIL as they behave. It is slow (hundreds of ms per image at 32 px) and exists to be
compared with the batched generator (``lra.data.generate.pathfinder_compare``, the tests); nothing else
uses it. Only the parameters come from the batched module (``STYLES``, ``Settings`` and the official
constants), so that both read the same settings.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from lra.data.generate.pathfinder import (
    DEAD_END,
    DISTRACTOR_TRIES,
    FREE_LIMIT,
    OVERLAP_LIMIT,
    PADDLE_TRIES,
    STOP_WITH_AVAILABILITY,
    Settings,
    Style,
)

LOWEST = -np.finfo(np.float64).max  # cv2.dilate's border value for a float image


def dilate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.dilate(image, kernel)``: ``out[p] = max image[p + o]`` over the kernel's nonzero offsets ``o``
    from its centre, pixels outside the image left out (``LOWEST`` where none is inside)."""
    centre_y, centre_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    reach = max(kernel.shape)
    padded = np.full((image.shape[0] + 2 * reach, image.shape[1] + 2 * reach), LOWEST)
    padded[reach:-reach, reach:-reach] = image
    out = np.full(image.shape, LOWEST)
    for ky, kx in zip(*np.nonzero(kernel), strict=True):
        dy, dx = reach + ky - centre_y, reach + kx - centre_x
        np.maximum(out, padded[dy : dy + image.shape[0], dx : dx + image.shape[1]], out=out)
    return out


def dilation_disc(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x**2 + y**2 <= radius**2).astype(np.float64)


def bytescale(data: np.ndarray) -> np.ndarray:
    """``scipy.misc.bytescale`` with its defaults (0..255, the data's own minimum and maximum)."""
    if data.dtype == np.uint8:
        return data
    low, high = data.min(), data.max()
    spread = high - low
    spread = 1 if spread == 0 else spread
    return (((data - low) * (255.0 / spread)).clip(0, 255) + 0.5).astype(np.uint8)


def imresize(data: np.ndarray, size: int) -> np.ndarray:
    """``scipy.misc.imresize(data, (size, size), interp='lanczos')``: bytescale, then PIL's Lanczos."""
    picture = Image.fromarray(bytescale(data), mode="L")
    return np.asarray(picture.resize((size, size), resample=Image.Resampling.LANCZOS))


def translate(coord, orientation: float, distance: float) -> list[int]:
    return [int(np.ceil(coord[0] + float(distance) * np.sin(orientation))),
            int(np.ceil(coord[1] + float(distance) * np.cos(orientation)))]


def flip(orientation: float) -> float:
    return orientation + np.pi if orientation < 0 else orientation - np.pi


@dataclass
class Snake:
    pivot: list[int]
    orientation: float
    segment_mask: np.ndarray  # the last paddle's mask, not yet in the shared mask
    tip: list[int]  # where it starts
    head: list[int]  # where its last paddle ends
    paddles: list[tuple[list[int], float]] = field(default_factory=list)  # (drawn from, orientation)


class Official:
    """One resolution and difficulty of the official generator; ``image()`` draws one picture."""

    def __init__(self, settings: Settings, rng: np.random.Generator):
        self.settings, self.style, self.rng = settings, settings.style, rng
        self.size = settings.resolution

    # -- snakes.draw_line_n_mask ---------------------------------------------------------------------------
    @functools.cache  # noqa: B019 (one instance per run; the draw depends on its arguments only)
    def _mini(self, orientation: float, margin: int) -> tuple[np.ndarray, np.ndarray]:
        style = self.style
        length, scale = style.paddle_length, style.antialias_scale
        half = length + int(np.ceil(style.paddle_thickness)) + margin
        blown_size = half * 2 * scale + 1
        centre = half * scale
        head = translate([centre, centre], orientation, length * scale)
        blown = Image.new("F", (blown_size, blown_size), "black")
        ImageDraw.Draw(blown).line([(centre, centre), (head[1], head[0])], fill="white",
                                   width=int(np.round(style.paddle_thickness * scale)))
        blown_array = np.array(blown)
        line = imresize(blown_array, 2 * half + 1).astype(np.float32) / 255.0
        mask_blown = dilate(blown_array, dilation_disc(margin * scale)).astype(np.uint8)
        mask = imresize(mask_blown, 2 * half + 1).astype(np.float32) / 255.0
        return line, mask

    def draw_line(self, shape, start, orientation: float, margin: int, contrast: float = 1.0):
        line, mask = self._mini(float(orientation), margin)
        if contrast != 1.0:
            line = line * np.float32(contrast)
        half = line.shape[0] // 2
        picture = np.zeros(shape, dtype=np.float32)
        occupied = np.zeros(shape, dtype=np.float32)
        top, left = start[0] - half, start[1] - half
        rows = slice(max(top, 0), min(top + 2 * half, shape[0] - 1) + 1)
        cols = slice(max(left, 0), min(left + 2 * half, shape[1] - 1) + 1)
        mini_rows = slice(rows.start - top, rows.stop - top)
        mini_cols = slice(cols.start - left, cols.stop - left)
        picture[rows, cols] = line[mini_rows, mini_cols]
        occupied[rows, cols] = mask[mini_rows, mini_cols]
        return picture, occupied

    # -- snakes.find_available_coordinates, get_coords_cmf --------------------------------------------------
    @staticmethod
    def available(mask: np.ndarray):
        if np.min(mask) < 0:
            return (np.array([], dtype=int), np.array([], dtype=int)), 0
        coordinates = np.nonzero(1 - mask.astype(np.uint8))
        return coordinates, len(coordinates[0])

    def coords_cmf(self, pivot, orientation: float, radius: int, mask: np.ndarray):
        per_pixel = 360.0 / (2 * radius * np.pi)
        angles = np.arange(0, 360, per_pixel) * np.pi / 180
        ys, xs = pivot[0] + radius * np.sin(angles), pivot[1] + radius * np.cos(angles)
        coords = np.stack([ys, xs], axis=1).astype(int)
        outside = (ys >= mask.shape[0]) | (ys < 0) | (xs >= mask.shape[1]) | (xs < 0)
        coords = coords[~outside]
        if not len(coords):
            return None
        unique = np.unique(coords, axis=0)
        displacement = unique - np.asarray(pivot)
        headings = np.arctan2(displacement[:, 0], displacement[:, 1])
        delta = np.minimum(np.abs(headings - orientation), 2 * np.pi - np.abs(headings - orientation))
        weights = np.maximum(np.cos(np.minimum(delta * self.style.continuity, 0.5 * np.pi)), 0) ** 2
        pmf = (1 - mask[unique[:, 0], unique[:, 1]]) * weights
        total = np.sum(pmf)
        if total < DEAD_END:
            return None
        return unique, headings, np.cumsum(pmf / total)

    # -- snakes.extend_snake ----------------------------------------------------------------------------------
    def extend(self, snake: Snake, image: np.ndarray, mask: np.ndarray, margin: int, contrast: float):
        """Returns (image, mask, ok); on success ``snake`` holds the new paddle."""
        length = self.style.paddle_length
        pivot = translate(snake.pivot, snake.orientation, length + 2 * margin)
        found = self.coords_cmf(pivot, snake.orientation, length + margin, self._dilated_near(mask, pivot, margin))
        if found is None:
            return image, mask, False
        coords, headings, cmf = found
        for _ in range(PADDLE_TRIES):
            index = int(np.argmax(cmf - self.rng.random() > 0))
            head, heading = [int(v) for v in coords[index]], float(headings[index])
            picture, occupied = self.draw_line(mask.shape, head, flip(heading), margin, contrast)
            if np.max(mask + occupied) < OVERLAP_LIMIT:
                mask = np.maximum(mask, snake.segment_mask)
                snake.pivot, snake.orientation, snake.segment_mask, snake.head = pivot, heading, occupied, head
                snake.paddles.append((head, flip(heading)))
                return np.maximum(image, picture), mask, True
        return image, mask, False

    def _dilated_near(self, mask: np.ndarray, pivot, margin: int) -> np.ndarray:
        """``dilate(mask, disc(margin))`` where ``get_coords_cmf`` reads it (within ``L + m`` of the pivot);
        elsewhere 0. Dilating the whole image gives the same values there, only slower."""
        reach = self.style.paddle_length + 2 * margin + 1
        rows = slice(max(pivot[0] - reach, 0), max(min(pivot[0] + reach + 1, self.size), 0))
        cols = slice(max(pivot[1] - reach, 0), max(min(pivot[1] + reach + 1, self.size), 0))
        out = np.zeros_like(mask)
        if rows.start < rows.stop and cols.start < cols.stop:
            top, left = max(rows.start - margin, 0), max(cols.start - margin, 0)
            dilated = dilate(mask[top : rows.stop + margin, left : cols.stop + margin], dilation_disc(margin))
            out[rows, cols] = dilated[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
        return out

    # -- seeds: snakes.seed_snake and snakes2.initialize_two_seeds ---------------------------------------------
    def _struct(self, orientation: float, margin: int) -> np.ndarray:
        reach = self.style.paddle_length + margin
        _, struct = self.draw_line((2 * reach + 1, 2 * reach + 1), [reach + 1, reach + 1], orientation, margin)
        return struct.astype(np.uint8)

    def _place(self, tail, orientation: float, margin: int):
        """Head and pivot of a first paddle from ``tail``, or None if either leaves the image."""
        head = translate(tail, orientation, self.style.paddle_length)
        pivot = translate(head, flip(orientation), self.style.paddle_length + margin)
        if all(0 <= v < self.size for v in (*head, *pivot)):
            return head, pivot
        return None

    def seed(self, image, mask, margin: int, contrast: float, band: int = 0, stop: float | None = None):
        """``seed_snake`` (``band`` 0: a 1-pixel frame), or the first target of ``initialize_two_seeds``
        (``band`` = 2 seed_distance). Returns (image, snake) or None."""
        for _ in range(PADDLE_TRIES):
            orientation = int(self.rng.integers(-180, 180)) * np.pi / 180
            lined = mask.copy()
            edge = max(band, 1)
            lined[:edge, :], lined[-edge:, :], lined[:, :edge], lined[:, -edge:] = 1, 1, 1, 1
            dilated = dilate(lined, self._struct(orientation, margin))
            _, raw = self.available(np.ceil(mask - FREE_LIMIT))
            coordinates, count = self.available(np.ceil(dilated - FREE_LIMIT))
            if stop is not None and raw / mask.size < stop:
                return None
            if count == 0:
                return None
            pick = int(self.rng.integers(0, count))
            tail = [int(coordinates[0][pick]), int(coordinates[1][pick])]
            placed = self._place(tail, orientation, margin)
            if placed is not None:
                return self._seeded(image, mask, tail, orientation, placed[1], margin, contrast)
        return None

    def _seeded(self, image, mask, tail, orientation, pivot, margin, contrast):
        picture, occupied = self.draw_line(mask.shape, tail, orientation, margin, contrast)
        snake = Snake(pivot, orientation, occupied, tail, tail, [(tail, orientation)])
        return np.maximum(image, picture), snake

    def second_seed(self, image, mask, first: Snake, margin: int, contrast: float):
        distance = self.style.seed_distance
        for _ in range(PADDLE_TRIES):
            orientation = int(self.rng.integers(-180, 180)) * np.pi / 180
            direction = int(self.rng.integers(0, 360)) * np.pi / 180
            tail = [int(np.round(first.tip[0] + distance * np.sin(direction))),
                    int(np.round(first.tip[1] + distance * np.cos(direction)))]
            placed = self._place(tail, orientation, margin)
            if placed is not None:
                return self._seeded(image, mask, tail, orientation, placed[1], margin, contrast)
        return None

    # -- snakes2.two_snakes, snakes.make_snake / make_many_snakes -----------------------------------------------
    def padding_mask(self) -> np.ndarray:
        mask = np.zeros((self.size, self.size))
        pad = self.style.padding
        mask[:pad, :], mask[-pad:, :], mask[:, :pad], mask[:, -pad:] = 1, 1, 1, 1
        return mask

    def two_snakes(self, margin: int):
        style = self.style
        contrast = style.paddle_contrast * style.snake_contrast
        image, mask = np.zeros((self.size, self.size)), self.padding_mask()
        first = self.seed(image, mask, margin, contrast, band=2 * style.seed_distance)
        if first is None:
            return None
        image, snake0 = first
        second = self.second_seed(image, mask, snake0, margin, contrast)
        if second is None:
            return None
        image, snake1 = second
        for _ in range(self.settings.contour_length - 1):
            for snake in (snake0, snake1):
                image, mask, ok = self.extend(snake, image, mask, margin, contrast)
                if not ok:
                    return None
        return image, np.maximum(mask, snake1.segment_mask), (snake0, snake1)

    def make_snake(self, image, mask, margin: int):
        contrast = self.style.snake_contrast
        seeded = self.seed(image, mask, margin, contrast, stop=STOP_WITH_AVAILABILITY)
        if seeded is None:
            return None
        new_image, snake = seeded
        new_mask = mask
        for _ in range(self.settings.distractor_length - 1):
            new_image, new_mask, ok = self.extend(snake, new_image, new_mask, margin, contrast)
            if not ok:
                return None
        return new_image, np.maximum(new_mask, snake.segment_mask), snake

    # -- snakes2.draw_circle and from_wrapper's loop body ----------------------------------------------------------
    def circle(self, centre) -> np.ndarray:
        scale = self.style.antialias_scale
        picture = np.zeros((self.size * scale, self.size * scale))
        y, x = np.ogrid[-centre[0] * scale : (self.size - centre[0]) * scale,
                        -centre[1] * scale : (self.size - centre[1]) * scale]
        picture[x**2 + y**2 <= (self.style.marker_radius * scale) ** 2] = 1
        return imresize(picture, self.size)

    def image(self) -> dict[str, object]:
        label = int(self.rng.integers(0, 2))
        margin = int(self.style.margins[int(self.rng.integers(0, len(self.style.margins)))])
        drawn = None
        while drawn is None:
            drawn = self.two_snakes(margin)
        image, mask, targets = drawn
        distractors = []
        for _ in range(self.settings.num_distractors):
            for _ in range(DISTRACTOR_TRIES):
                made = self.make_snake(image, mask, margin)
                if made is not None:
                    image, mask, snake = made
                    distractors.append(snake)
                    break
        origin = int(self.rng.integers(0, 2))
        terminal = origin if label == 1 else 1 - origin
        dots = [targets[origin].tip, targets[terminal].head]
        markers = np.maximum(self.circle(dots[0]), self.circle(dots[1])).astype(np.float32) / 255.0
        return {"image": bytescale(np.maximum(image, markers)), "label": label, "margin": margin,
                "targets": targets, "distractors": distractors, "dots": np.array(dots)}


def official_images(settings: Settings, count: int, seed: int) -> list[dict[str, object]]:
    """``count`` images drawn by the official logic from ``seed``."""
    drawer = Official(settings, np.random.default_rng(seed))
    return [drawer.image() for _ in range(count)]


def paddle_half(style: Style, margin: int) -> int:
    return style.paddle_length + math.ceil(style.paddle_thickness) + margin
