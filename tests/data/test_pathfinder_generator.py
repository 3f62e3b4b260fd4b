"""The Pathfinder generator: the official parameters, its bookkeeping, layout, determinism, resumption.

Parameters are pinned against the sources they come from (drewlinsley/pathfinder at ab9c130 and
google-research/long-range-arena at cd31e5c); ``test_pathfinder_official.py`` checks the drawing against a
plain re-reading of the official code.
"""

from __future__ import annotations

import filecmp
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from lra.data.errors import DataError
from lra.data.generate import pathfinder as generator
from lra.data.generate.pathfinder import STYLES, Settings, generate_chunk, generate_dataset, stamps

# lra_benchmarks/data/pathfinder.py: Pathfinder32's docstring, lines 30-43
LRA_32 = {"padding": 1, "paddle_length": 2, "paddle_thickness": 0.5, "margins": (1,), "marker_radius": 1.5,
          "seed_distance": 7, "continuity": 1.0, "antialias_scale": 2, "snake_contrast": 2.0,
          "paddle_contrast": 0.75, "distractor_budget": 20}
# Pathfinder64, lines 118-130 ("antialias_scale = 4" then "= 2": the second wins); paddle_length and
# paddle_contrast_list are snakes2_wrapper.Args' defaults (snakes2_wrapper.py line 14)
LRA_64 = {"padding": 1, "paddle_length": 5, "paddle_thickness": 1.0, "margins": (1,), "marker_radius": 2.5,
          "seed_distance": 12, "continuity": 1.8, "antialias_scale": 2, "snake_contrast": 0.8,
          "paddle_contrast": 1.0, "distractor_budget": 22}
# Pathfinder128, lines 205-217
LRA_128 = {"padding": 1, "paddle_length": 5, "paddle_thickness": 1.5, "margins": (2, 3), "marker_radius": 3.0,
           "seed_distance": 20, "continuity": 1.8, "antialias_scale": 2, "snake_contrast": 0.9,
           "paddle_contrast": 1.0, "distractor_budget": 35}
# Pathfinder256, lines 292-302; no padding or seed_distance there: Args' defaults 22 and 27 (line 10-11)
LRA_256 = {"padding": 22, "paddle_length": 5, "paddle_thickness": 2.0, "margins": (3,), "marker_radius": 5.0,
           "seed_distance": 27, "continuity": 1.8, "antialias_scale": 2, "snake_contrast": 1.0,
           "paddle_contrast": 1.0, "distractor_budget": 30}


@pytest.mark.parametrize("resolution,official", [(32, LRA_32), (64, LRA_64), (128, LRA_128), (256, LRA_256)])
def test_styles_are_lra_docstrings_over_the_wrapper_defaults(resolution: int, official: dict) -> None:
    assert asdict(STYLES[resolution]) == official


@pytest.mark.parametrize("resolution,distractors", [(32, 5), (64, 5), (128, 8), (256, 7)])
@pytest.mark.parametrize("difficulty,length,distractor_length",
                         [("easy", 6, 2), ("intermediate", 9, 3), ("hard", 14, 4)])
def test_path_lengths_and_one_distractor_count_for_every_difficulty(resolution, distractors, difficulty, length,
                                                                    distractor_length) -> None:
    """snakes2_wrapper.py: contour_length 6 (line 69) then 9 and 14 (lines 86-88), distractor_length its
    Python-2 third; num_distractor_snakes = budget / distractor_length once, at line 74, with LRA's
    contour_length 14 (so budget // 4), before the loop over difficulties."""
    settings = Settings(resolution, difficulty)
    assert (settings.contour_length, settings.distractor_length) == (length, distractor_length)
    assert settings.num_distractors == distractors == STYLES[resolution].distractor_budget // 4


def test_the_official_code_constants() -> None:
    # snakes2_wrapper.Args: max_distractor_contour_retrial=4, max_paddle_retrial=2 (line 13); loops run
    # while count <= retrial (snakes.make_many_snakes, seed_snake, extend_snake)
    assert (generator.DISTRACTOR_TRIES, generator.PADDLE_TRIES) == (5, 3)
    assert generator.STOP_WITH_AVAILABILITY == 0.01  # snakes2.from_wrapper, make_many_snakes(...)
    assert generator.OVERLAP_LIMIT == 1.8  # snakes.extend_snake: np.max(mask + m_im) < 1.8
    assert generator.FREE_LIMIT == 0.3  # np.ceil(mask - 0.3) in seed_snake / initialize_two_seeds
    assert generator.DEAD_END == 1e-4  # snakes.get_coords_cmf: total < 1e-4


def test_level_thresholds_equal_the_official_float_tests() -> None:
    """Masks are kept as 8-bit levels; the official code compares float32 ``level / 255.0`` values."""
    values = generator.level_values(np.arange(256)).astype(np.float64)
    sums = np.add.outer(np.arange(256), np.arange(256))
    assert np.array_equal(np.add.outer(values, values) < generator.OVERLAP_LIMIT, sums < generator.OVERLAP_LEVELS)
    free = np.ceil(values - generator.FREE_LIMIT) == 0
    assert np.array_equal(free, np.arange(256) <= generator.FREE_LEVELS)


@pytest.fixture(scope="module")
def hard32() -> generator.Chunk:
    return generate_chunk(Settings(32, "hard"), seed=7, chunk=0, count=200)


def test_labels_are_random_per_image(hard32: generator.Chunk) -> None:
    """snakes2.from_wrapper draws each label with np.random.randint(low=0, high=2)."""
    share = float(hard32.labels.mean())
    assert set(np.unique(hard32.labels)) == {0, 1}
    assert abs(share - 0.5) < 0.12  # 200 fair coins: 3.4 standard deviations


def test_dots_sit_on_target_ends_as_labelled(hard32: generator.Chunk) -> None:
    for i, label in enumerate(hard32.labels):
        first, last = hard32.dot_paths[i]
        assert (first == last) == bool(label)
        np.testing.assert_array_equal(hard32.dots[i, 0], hard32.paths[i][first][0, :2])  # a start
        np.testing.assert_array_equal(hard32.dots[i, 1], hard32.paths[i][last][-1, :2])  # an end


def test_paths_have_their_lengths_and_at_most_the_distractor_count(hard32: generator.Chunk) -> None:
    settings = Settings(32, "hard")
    for paths in hard32.paths:
        assert [len(p) for p in paths[:2]] == [14, 14]
        assert all(len(p) == 4 for p in paths[2:]) and len(paths) - 2 <= settings.num_distractors
        for path in paths:
            assert np.all((path[:, :2] >= 0) & (path[:, :2] < 32))
            assert path[0, 2] < generator.SEED_ORIENTATIONS <= path[1:, 2].min()  # a first paddle, then later ones


def test_first_paddles_take_only_the_orientations_whose_kernel_reaches_every_corner(hard32) -> None:
    """At 32 px cv2.dilate leaves -DBL_MAX in a corner for all but 30 orientations (-150..-121 degrees).
    The second target's first paddle is placed without a dilation (initialize_two_seeds), so any goes."""
    table = stamps(32, 1)
    assert np.flatnonzero(table.seed_alive).tolist() == list(range(30, 60))
    checked = np.array([path[0, 2] for paths in hard32.paths for path in [paths[0], *paths[2:]]])
    assert np.all(table.seed_alive[checked])
    unchecked = np.array([paths[1][0, 2] for paths in hard32.paths])
    assert not np.all(table.seed_alive[unchecked])


def test_images_are_rescaled_to_the_full_range_and_mostly_background(hard32: generator.Chunk) -> None:
    assert hard32.images.shape == (200, 32, 32) and hard32.images.dtype == np.uint8
    assert np.all(hard32.images.max(axis=(1, 2)) == 255) and np.all(hard32.images.min(axis=(1, 2)) == 0)
    assert np.mean(hard32.images == 0) > 0.5 and hard32.images.mean() < 40  # Lanczos ringing: faint levels


@pytest.mark.parametrize("resolution", [64, 128])
def test_larger_resolutions_draw_consistent_images(resolution: int) -> None:
    drawn = generate_chunk(Settings(resolution, "easy"), seed=0, chunk=0, count=6)
    assert drawn.images.shape == (6, resolution, resolution)
    assert np.array_equal(drawn.dot_paths[:, 0] == drawn.dot_paths[:, 1], drawn.labels == 1)
    assert set(np.unique(drawn.margins)) <= set(STYLES[resolution].margins)
    assert all(len(paths[0]) == 6 for paths in drawn.paths)


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
    # snakes2.accumulate_meta: continuity, contour and distractor lengths, paddle length and thickness,
    # margin, len(paddle_contrast_list)
    assert fields[4:] == ["1.0", "6", "2", "2", "0.5", "1", "1"]
    settings = generator.read_settings(one)
    assert settings["complete"] is True and settings["version"] == generator.GENERATOR_VERSION == 2
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


def test_a_folder_of_the_previous_generator_is_not_mixed(tmp_path: Path) -> None:
    folder = generate_dataset(tmp_path, 32, "easy", 10, seed=0, workers=1, progress=False)
    settings = generator.read_settings(folder)
    (folder / generator.SETTINGS_FILE).write_text(json.dumps({**settings, "version": 1}))
    with pytest.raises(DataError, match="other settings"):
        generate_dataset(tmp_path, 32, "easy", 10, seed=0, workers=1, progress=False)
