"""The Pathfinder generator: labels by its own path bookkeeping, geometry, layout, determinism, resumption."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from lra.data.errors import DataError
from lra.data.generate import pathfinder as generator
from lra.data.generate.pathfinder import (
    Settings,
    clearance,
    generate_chunk,
    generate_dataset,
    marker_clearance,
)


def _segment_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Least distance between two segments (y0, x0, y1, x1) that do not cross."""

    def to_segment(y: float, x: float, s: np.ndarray) -> float:
        dy, dx = s[2] - s[0], s[3] - s[1]
        length2 = dy * dy + dx * dx
        t = 0.0 if length2 == 0 else min(max(((y - s[0]) * dy + (x - s[1]) * dx) / length2, 0.0), 1.0)
        return float(np.hypot(y - s[0] - t * dy, x - s[1] - t * dx))

    return min(to_segment(p[0], p[1], q), to_segment(p[2], p[3], q), to_segment(q[0], q[1], p),
               to_segment(q[2], q[3], p))


def _linked(paths: list[np.ndarray], first: tuple[int, int], last: tuple[int, int], reach: float) -> bool:
    """Whether paddle ``first`` reaches ``last`` through paddles less than ``reach`` apart (of any path)."""
    paddles = [(p, k) for p, path in enumerate(paths) for k in range(len(path))]
    seen, frontier = {first}, [first]
    while frontier:
        p, k = frontier.pop()
        for q, j in paddles:
            if (q, j) not in seen and _segment_distance(paths[p][k], paths[q][j]) < reach:
                seen.add((q, j))
                frontier.append((q, j))
    return last in seen


@pytest.fixture(scope="module")
def hard32() -> generator.Chunk:
    return generate_chunk(Settings(32, "hard"), seed=7, chunk=0, count=400)


def test_labels_are_balanced(hard32: generator.Chunk) -> None:
    share = float(hard32.labels.mean())
    print(f"pathfinder32 hard, 400 images: {100 * share:.1f}% label 1")
    assert abs(share - 0.5) <= 0.02
    assert set(np.unique(hard32.labels)) == {0, 1}


def test_dots_sit_on_path_ends_as_labelled(hard32: generator.Chunk) -> None:
    for i, label in enumerate(hard32.labels):
        first, last = hard32.dot_paths[i]
        assert first in (0, 1) and last in (0, 1)  # both dots on target paths
        assert (first == last) == bool(label)
        np.testing.assert_allclose(hard32.dots[i, 0], hard32.paths[i][first][0, :2])  # a start
        np.testing.assert_allclose(hard32.dots[i, 1], hard32.paths[i][last][-1, 2:])  # an end


def test_positive_images_connect_the_dots_and_negative_ones_do_not(hard32: generator.Chunk) -> None:
    """A chain of paddles with gaps under 2m + thickness/4 links the dots exactly when the label is 1.

    Along a path gaps are at most 2m; the generator keeps everything else at least 2m + thickness/2
    apart, so the chain cannot jump to another path.
    """
    thickness = Settings(32, "hard").style.paddle_thickness
    for i in range(60):
        reach = 2 * float(hard32.margins[i]) + thickness / 4
        first, last = hard32.dot_paths[i]
        start, end = (first, 0), (last, len(hard32.paths[i][last]) - 1)
        assert _linked(hard32.paths[i], start, end, reach) == bool(hard32.labels[i]), f"image {i}"


def test_paddles_keep_their_clearance(hard32: generator.Chunk) -> None:
    style = Settings(32, "hard").style
    for i in range(40):
        least = clearance(float(hard32.margins[i]), style)
        paddles = [(p, k, s) for p, path in enumerate(hard32.paths[i]) for k, s in enumerate(path)]
        for a, (p, k, s) in enumerate(paddles):
            for q, j, t in paddles[a + 1 :]:
                if p == q and abs(k - j) == 1:
                    gap = _segment_distance(s, t)
                    assert gap <= 2 * hard32.margins[i] + 1e-9  # consecutive paddles: the dash gap
                else:
                    assert _segment_distance(s, t) >= least, f"image {i}: paths {p}/{q} paddles {k}/{j}"
        for path in hard32.paths[i][2:]:  # distractors stay off the dots
            for s in path:
                for dot in hard32.dots[i]:
                    assert _segment_distance(s, np.r_[dot, dot]) >= marker_clearance(hard32.margins[i], style)


@pytest.mark.parametrize("difficulty,length,distractor_length,distractors",
                         [("easy", 6, 2, 10), ("intermediate", 9, 3, 6), ("hard", 14, 4, 5)])
def test_path_lengths_turns_and_bounds_follow_lra_parameters(difficulty, length, distractor_length,
                                                              distractors) -> None:
    settings = Settings(32, difficulty)
    assert (settings.contour_length, settings.distractor_length, settings.num_distractors) == (
        length, distractor_length, distractors)
    drawn = generate_chunk(settings, seed=1, chunk=0, count=40)
    style = settings.style
    max_turn = np.pi / 2 / style.continuity
    for i, paths in enumerate(drawn.paths):
        assert [len(p) for p in paths[:2]] == [length, length]
        assert all(len(p) == distractor_length for p in paths[2:]) and len(paths) - 2 <= distractors
        for path in paths:
            assert np.all((path >= style.padding) & (path <= 32 - style.padding))
            np.testing.assert_allclose(np.hypot(path[:, 2] - path[:, 0], path[:, 3] - path[:, 1]),
                                       style.paddle_length)
            angle = np.arctan2(path[:, 2] - path[:, 0], path[:, 3] - path[:, 1])
            turn = np.abs((np.diff(angle) + np.pi) % (2 * np.pi) - np.pi)
            assert np.all(turn <= max_turn + 1e-9), f"image {i}"
    assert drawn.images.shape == (40, 32, 32) and drawn.images.dtype == np.uint8


def test_strokes_and_dots_are_drawn_where_the_bookkeeping_says(hard32: generator.Chunk) -> None:
    for i in range(20):
        image = hard32.images[i].astype(int)
        for y, x in hard32.dots[i]:
            assert image[int(y), int(x)] >= 200  # the dot's centre pixel
        for path in hard32.paths[i]:
            for y0, x0, y1, x1 in path:
                r, c = int((y0 + y1) / 2), int((x0 + x1) / 2)
                assert image[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].max() >= 100
    assert hard32.images.mean() < 60  # mostly background


@pytest.mark.parametrize("resolution", [64, 128])
def test_larger_resolutions_draw_consistent_images(resolution: int) -> None:
    drawn = generate_chunk(Settings(resolution, "hard"), seed=0, chunk=0, count=12)
    assert drawn.images.shape == (12, resolution, resolution)
    assert abs(drawn.labels.mean() - 0.5) < 1e-9
    assert np.array_equal(drawn.dot_paths[:, 0] == drawn.dot_paths[:, 1], drawn.labels == 1)
    assert set(np.unique(drawn.margins)) <= set(Settings(resolution, "hard").style.margins)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="valid: 32, 64, 128, 256"):
        Settings(48, "hard")
    with pytest.raises(ValueError, match="valid: easy, intermediate, hard"):
        Settings(32, "medium")


SMALL_CHUNKS = {"images_per_chunk": 100, "progress": False}


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _same_images_and_metadata(a: Path, b: Path) -> bool:
    files_a, files_b = _tree(a), _tree(b)
    data = [name for name in files_a if not name.endswith("generator.json")]
    return sorted(files_a) == sorted(files_b) and all(filecmp.cmp(files_a[n], files_b[n], shallow=False)
                                                      for n in data)


def test_release_layout_and_same_output_for_any_worker_count(tmp_path: Path) -> None:
    one = generate_dataset(tmp_path / "one", 32, "easy", 230, seed=3, workers=1, **SMALL_CHUNKS)
    two = generate_dataset(tmp_path / "two", 32, "easy", 230, seed=3, workers=2, **SMALL_CHUNKS)
    assert one == tmp_path / "one" / "pathfinder32" / "curv_baseline"
    assert sorted(p.name for p in (one / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    assert len(list((one / "imgs" / "2").iterdir())) == 30
    rows = (one / "metadata" / "2.npy").read_text().splitlines()
    assert len(rows) == 30
    fields = rows[5].split(" ")
    assert fields[:3] == ["imgs/2", "sample_5.png", "5"] and fields[3] in ("0", "1")
    # continuity, contour and distractor lengths, paddle length and thickness, margin, contrasts
    assert fields[4:] == ["1.0", "6", "2", "2", "0.5", "1", "1"]
    assert generator.read_settings(one)["complete"] is True
    assert _same_images_and_metadata(one, two)
    other = generate_dataset(tmp_path / "other", 32, "easy", 230, seed=4, workers=1, **SMALL_CHUNKS)
    assert not filecmp.cmp(one / "imgs" / "0" / "sample_0.png", other / "imgs" / "0" / "sample_0.png",
                           shallow=False)


def test_an_interrupted_run_leaves_no_complete_looking_chunk_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rows = generator.metadata_rows

    def fail_on_chunk_1(settings, chunk, drawn):
        if chunk == 1:
            raise KeyboardInterrupt
        return real_rows(settings, chunk, drawn)

    monkeypatch.setattr(generator, "metadata_rows", fail_on_chunk_1)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "cut", 32, "easy", 250, seed=5, workers=1, **SMALL_CHUNKS)
    cut = tmp_path / "cut" / "pathfinder32" / "curv_baseline"
    assert sorted(p.name for p in (cut / "metadata").glob("*.npy")) == ["0.npy"]  # chunk 1 is not complete
    assert generator.read_settings(cut)["complete"] is False
    (cut / "imgs" / ".2.partial-99").mkdir()  # a dead worker's leftovers
    monkeypatch.setattr(generator, "metadata_rows", real_rows)
    generate_dataset(tmp_path / "cut", 32, "easy", 250, seed=5, workers=1, **SMALL_CHUNKS)
    whole = generate_dataset(tmp_path / "whole", 32, "easy", 250, seed=5, workers=1, **SMALL_CHUNKS)
    assert generator.read_settings(cut)["complete"] is True
    assert not list((cut / "imgs").glob(".*"))
    assert _same_images_and_metadata(cut, whole)


def test_a_folder_generated_with_other_settings_is_not_mixed(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 32, "easy", 10, seed=0, workers=1, progress=False)
    with pytest.raises(DataError, match="other settings"):
        generate_dataset(tmp_path, 32, "easy", 10, seed=1, workers=1, progress=False)
