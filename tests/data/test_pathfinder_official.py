"""The batched Pathfinder generator against a plain re-reading of the official code (``pathfinder_reference``).

Its shortcuts are checked one by one: precomputed paddle stamps, candidate ends and first-paddle kernels
against the official per-call drawing; whole images against the official rendering of their own paths;
every paddle replayed through the official tests in the official order; and the two generators'
distributions side by side.
"""

from __future__ import annotations

import numpy as np
import pytest

from lra.data.generate import pathfinder as generator
from lra.data.generate import pathfinder_reference as official
from lra.data.generate.pathfinder import Settings, generate_chunk, stamps


@pytest.mark.parametrize("resolution,margin", [(32, 1), (128, 3)])
def test_stamps_are_the_official_paddles(resolution: int, margin: int) -> None:
    table = stamps(resolution, margin)
    drawer = official.Official(Settings(resolution, "hard"), np.random.default_rng(0))
    for key in range(0, len(table.angles), 7):
        line, mask = drawer._mini(float(table.angles[key]), margin)
        np.testing.assert_array_equal(table.lines[key], line)
        np.testing.assert_array_equal(generator.level_values(table.masks[key]), mask)


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_candidate_ends_are_get_coords_cmf_s_around_any_pivot(resolution: int) -> None:
    settings = Settings(resolution, "hard")
    drawer = official.Official(settings, np.random.default_rng(0))
    for margin in settings.style.margins:
        radius = settings.style.paddle_length + margin
        steps = generator.candidate_steps(radius)
        centre = [resolution // 2, resolution // 2]
        coords, _, _ = drawer.coords_cmf(centre, 0.0, radius, np.zeros((resolution, resolution)))
        np.testing.assert_array_equal(coords - centre, steps)
        # get_coords_cmf truncates pivot + offset; that equals pivot + floor(offset) for every pivot here
        angles = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
        for offset in (radius * np.sin(angles), radius * np.cos(angles)):
            pivots = np.arange(resolution)[:, None]
            inside = (pivots + offset >= 0) & (pivots + offset < resolution)
            truncated = (pivots + offset).astype(int) - pivots
            assert np.all(truncated[inside] == np.broadcast_to(np.floor(offset), truncated.shape)[inside])


def _lined(size: int, edge: int, mask: np.ndarray | None = None) -> np.ndarray:
    lined = np.zeros((size, size)) if mask is None else mask.copy()
    lined[:edge, :], lined[-edge:, :], lined[:, :edge], lined[:, -edge:] = 1, 1, 1, 1
    return lined


@pytest.mark.parametrize("resolution", [32, 64])
def test_first_target_starts_and_dead_orientations_match_a_full_dilation(resolution: int) -> None:
    settings = Settings(resolution, "hard")
    table = stamps(resolution, 1)
    drawer = official.Official(settings, np.random.default_rng(0))
    band = _lined(resolution, 2 * settings.style.seed_distance)
    for key in range(generator.SEED_ORIENTATIONS):
        dilated = official.dilate(band, drawer._struct(float(table.angles[key]), 1))
        (rows, cols), count = drawer.available(np.ceil(dilated - generator.FREE_LIMIT))
        assert (dilated.min() >= 0) == table.seed_alive[key]
        if not table.seed_alive[key]:
            assert count == 0
            continue
        y0, y1, x0, x1 = table.seed_box[key]
        expected = {(y, x) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)}
        assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == expected


def test_distractor_starts_match_a_full_dilation_of_a_drawn_mask() -> None:
    settings = Settings(32, "easy")
    canvas = generator._Canvas(settings, 1, 4)
    rng = np.random.default_rng(3)
    generator._draw_targets_until_done(canvas, rng, settings)
    table, drawer = canvas.stamps, official.Official(settings, rng)
    grid = np.argwhere(np.ones((32, 32), dtype=bool))[None]
    for image in range(4):
        mask = generator.level_values(canvas.masks[image][canvas.inner, canvas.inner]).astype(np.float64)
        for key in np.flatnonzero(table.seed_alive)[::3]:
            ours = canvas.lined_level(np.array([image]), grid, np.array([key]))[0] <= generator.FREE_LEVELS
            dilated = official.dilate(_lined(32, 1, mask), drawer._struct(float(table.angles[key]), 1))
            np.testing.assert_array_equal(ours.reshape(32, 32), np.ceil(dilated - generator.FREE_LIMIT) == 0)


def _contrasts(settings: Settings, count: int) -> list[float]:
    style = settings.style
    return [style.paddle_contrast * style.snake_contrast] * 2 + [style.snake_contrast] * (count - 2)


@pytest.mark.parametrize("resolution,difficulty,count", [(32, "hard", 12), (64, "easy", 4), (128, "easy", 2)])
def test_images_are_the_official_rendering_of_their_own_paths(resolution: int, difficulty: str, count: int) -> None:
    settings = Settings(resolution, difficulty)
    drawn = generate_chunk(settings, seed=2, chunk=0, count=count)
    drawer = official.Official(settings, np.random.default_rng(0))
    for i in range(count):
        margin, table = int(drawn.margins[i]), stamps(resolution, int(drawn.margins[i]))
        picture = np.zeros((resolution, resolution))
        for path, contrast in zip(drawn.paths[i], _contrasts(settings, len(drawn.paths[i])), strict=True):
            for row, col, key in path:
                line, _ = drawer.draw_line(picture.shape, [row, col], float(table.angles[key]), margin, contrast)
                picture = np.maximum(picture, line)
        dots = np.maximum(drawer.circle(drawn.dots[i, 0]), drawer.circle(drawn.dots[i, 1]))
        expected = official.bytescale(np.maximum(picture, dots.astype(np.float32) / 255.0))
        np.testing.assert_array_equal(drawn.images[i], expected)


class _Replay:
    """One image's paths put through the official tests, in the official order."""

    def __init__(self, settings: Settings, margin: int):
        self.settings, self.style, self.margin = settings, settings.style, margin
        self.table = stamps(settings.resolution, margin)
        self.drawer = official.Official(settings, np.random.default_rng(0))
        self.size = settings.resolution
        self.mask = self.drawer.padding_mask()

    def occupied(self, paddle) -> np.ndarray:
        row, col, key = paddle
        return self.drawer.draw_line(self.mask.shape, [row, col], float(self.table.angles[key]), self.margin)[1]

    def seed_is_free(self, paddle, edge: int) -> bool:
        row, col, key = paddle
        struct = self.drawer._struct(float(self.table.angles[key]), self.margin)
        dilated = official.dilate(_lined(self.size, edge, self.mask), struct)
        return dilated.min() >= 0 and np.ceil(dilated[row, col] - generator.FREE_LIMIT) == 0

    def start(self, paddle) -> dict:
        row, col, key = paddle
        orientation = float(self.table.angles[key])
        placed = self.drawer._place([row, col], orientation, self.margin)
        assert placed is not None, "a first paddle's head or pivot outside the image"
        return {"pivot": placed[1], "heading": orientation, "last": paddle}

    def extend(self, state: dict, paddle) -> None:
        length = self.style.paddle_length
        pivot = official.translate(state["pivot"], state["heading"], length + 2 * self.margin)
        row, col, key = paddle
        step = key - generator.SEED_ORIENTATIONS
        assert [row - pivot[0], col - pivot[1]] == self.table.steps[step].tolist()
        dilated = official.dilate(self.mask, official.dilation_disc(self.margin))
        heading = float(self.table.step_angles[step])
        turn = min(abs(heading - state["heading"]), 2 * np.pi - abs(heading - state["heading"]))
        weight = (1 - dilated[row, col]) * np.cos(min(turn * self.style.continuity, np.pi / 2)) ** 2
        assert weight > 0, "an end the official code gives no weight"
        assert np.max(self.mask + self.occupied(paddle)) < generator.OVERLAP_LIMIT
        self.mask = np.maximum(self.mask, self.occupied(state["last"]))
        state.update(pivot=pivot, heading=heading, last=paddle)

    def image(self, paths: list[np.ndarray]) -> None:
        first, second, *distractors = paths
        assert self.seed_is_free(first[0], 2 * self.style.seed_distance)
        distance = self.style.seed_distance
        around = {(int(np.round(first[0, 0] + distance * np.sin(d * np.pi / 180))),
                   int(np.round(first[0, 1] + distance * np.cos(d * np.pi / 180)))) for d in range(360)}
        assert (int(second[0, 0]), int(second[0, 1])) in around
        states = [self.start(first[0]), self.start(second[0])]
        for k in range(1, len(first)):
            for path, state in zip((first, second), states, strict=True):
                self.extend(state, path[k])
        self.mask = np.maximum(self.mask, self.occupied(states[1]["last"]))
        for path in distractors:
            assert np.mean(np.ceil(self.mask - generator.FREE_LIMIT) == 0) >= generator.STOP_WITH_AVAILABILITY
            assert self.seed_is_free(path[0], 1)
            state = self.start(path[0])
            for paddle in path[1:]:
                self.extend(state, paddle)
            self.mask = np.maximum(self.mask, self.occupied(state["last"]))


@pytest.mark.parametrize("resolution,difficulty,count", [(32, "hard", 8), (32, "easy", 8), (128, "easy", 1)])
def test_every_paddle_passes_the_official_checks_in_the_official_order(resolution, difficulty, count) -> None:
    settings = Settings(resolution, difficulty)
    drawn = generate_chunk(settings, seed=5, chunk=0, count=count)
    for i in range(count):
        _Replay(settings, int(drawn.margins[i])).image(drawn.paths[i])


def test_both_generators_draw_the_same_distribution() -> None:
    """32 px easy, 400 images of ours against 100 of the official logic: distractors drawn, ink, and
    where the first target starts (in the official code, a 2x2-pixel box per orientation)."""
    settings = Settings(32, "easy")
    ours = generate_chunk(settings, seed=11, chunk=0, count=400)
    theirs = official.official_images(settings, 100, seed=11)
    distractors = (np.array([len(p) - 2 for p in ours.paths]), np.array([len(o["distractors"]) for o in theirs]))
    ink = (ours.images.mean(axis=(1, 2)), np.array([o["image"].mean() for o in theirs]))
    for a, b in (distractors, ink):
        spread = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * spread, (a.mean(), b.mean())
    starts = {tuple(p[0][0, :2]) for p in ours.paths} | {tuple(o["targets"][0].tip) for o in theirs}
    assert all(13 <= y <= 18 and 13 <= x <= 18 for y, x in starts)


def test_the_reference_dilation_is_opencv_s() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(50):
        image = rng.random(tuple(rng.integers(3, 20, size=2))) * (rng.random() < 0.5)
        size = int(rng.integers(1, 4)) * 2 + 1
        kernel = (rng.random((size, size)) < 0.3).astype(np.uint8)
        kernel[size // 2, 0] = 1
        np.testing.assert_array_equal(official.dilate(image, kernel), cv2.dilate(image, kernel))


def test_the_dot_cue_measures() -> None:
    from lra.data.generate.pathfinder_compare import auc, best_threshold_accuracy

    labels = np.array([0, 0, 1, 1, 1])
    assert auc(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), labels) == 1.0
    assert auc(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), labels) == 0.0
    assert auc(np.array([1.0, 1.0, 1.0, 1.0, 1.0]), labels) == 0.5
    assert auc(np.array([1.0, 3.0, 2.0, 4.0, 5.0]), labels) == 5 / 6
    assert best_threshold_accuracy(np.array([1.0, 3.0, 2.0, 4.0, 5.0]), labels) == 0.8
    assert best_threshold_accuracy(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), labels) == 1.0
