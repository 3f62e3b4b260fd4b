"""Side by side: the official Pathfinder logic (``pathfinder_reference``) and our batched generator.

    python -m lra.data.generate.pathfinder_compare [resolutions=32,64,128,256] [images=1000]
        [official_images=N or R:N,R:N...] [difficulties=easy,intermediate,hard] [workers=N] [seed=0]
        [out=results/data]

Per resolution and difficulty, for each generator: distractor paths drawn, path and paddle lengths,
pixel statistics, and how well the distance between the two dots alone predicts the label (ROC AUC of
the distance, and the accuracy of the best single threshold). ``official_images`` (default: ``images``;
per resolution as ``32:1000,64:40``) sets how many the slow official logic draws: it costs seconds per
image at 64 and 128 px. Writes
``pathfinder_official_vs_ours.md`` and ``.csv`` under ``out`` and prints the table.
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lra.data.generate.pathfinder import DIFFICULTY_DIRS, STYLES, Settings, generate_chunk, stamps
from lra.data.generate.pathfinder_reference import official_images

PART = 50  # images per job
COLUMNS = ["resolution", "difficulty", "generator", "images", "distractors_set", "distractors_drawn",
           "target_paddles", "distractor_paddles", "target_extent_px", "dot_distance_px", "mean_pixel",
           "zero_pixels_pct", "bright_pixels_pct", "label1_pct", "dot_cue_auc", "dot_cue_best_acc"]


def _ours(resolution: int, difficulty: str, seed: int, part: int, count: int) -> list[dict]:
    settings = Settings(resolution, difficulty)
    drawn = generate_chunk(settings, seed, part, count)
    out = []
    for i in range(count):
        targets = drawn.paths[i][:2]
        out.append({"image": drawn.images[i], "label": int(drawn.labels[i]), "dots": drawn.dots[i],
                    "distractors": [len(p) for p in drawn.paths[i][2:]],
                    "targets": [(p[0, :2], p[-1, :2], len(p)) for p in targets]})
    return out


def _official(resolution: int, difficulty: str, seed: int, part: int, count: int) -> list[dict]:
    drawn = official_images(Settings(resolution, difficulty), count, seed=seed * 1_000_003 + part)
    return [{"image": d["image"], "label": d["label"], "dots": d["dots"],
             "distractors": [len(s.paddles) for s in d["distractors"]],
             "targets": [(np.array(s.tip), np.array(s.head), len(s.paddles)) for s in d["targets"]]}
            for d in drawn]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` for label 1 (ties count half): the Mann-Whitney statistic."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    positives = labels == 1
    n1, n0 = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def best_threshold_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The best accuracy of one threshold on ``scores``, in either direction."""
    best = max(labels.mean(), 1 - labels.mean())
    for threshold in np.unique(scores):
        above = scores > threshold
        hit = np.mean(above == (labels == 1))
        best = max(best, hit, 1 - hit)
    return float(best)


def summarise(resolution: int, difficulty: str, name: str, drawn: list[dict]) -> dict[str, object]:
    settings = Settings(resolution, difficulty)
    images = np.stack([d["image"] for d in drawn]).astype(np.float64)
    labels = np.array([d["label"] for d in drawn])
    distance = np.array([np.hypot(*(d["dots"][0] - d["dots"][1])) for d in drawn])
    distractors = [n for d in drawn for n in d["distractors"]]
    extents = [np.hypot(*(tip - head)) for d in drawn for tip, head, _ in d["targets"]]
    return {
        "resolution": resolution, "difficulty": difficulty, "generator": name, "images": len(drawn),
        "distractors_set": settings.num_distractors,
        "distractors_drawn": round(float(np.mean([len(d["distractors"]) for d in drawn])), 2),
        "target_paddles": round(float(np.mean([n for d in drawn for _, _, n in d["targets"]])), 2),
        "distractor_paddles": round(float(np.mean(distractors)), 2) if distractors else 0.0,
        "target_extent_px": round(float(np.mean(extents)), 2),
        "dot_distance_px": round(float(distance.mean()), 2),
        "mean_pixel": round(float(images.mean()), 2),
        "zero_pixels_pct": round(100 * float(np.mean(images == 0)), 1),
        "bright_pixels_pct": round(100 * float(np.mean(images >= 128)), 2),
        "label1_pct": round(100 * float(labels.mean()), 1),
        "dot_cue_auc": round(auc(distance, labels), 3),
        "dot_cue_best_acc": round(100 * best_threshold_accuracy(distance, labels), 1),
    }


def _jobs(resolutions, difficulties, images: int, official: dict[int, int], seed: int):
    for resolution in resolutions:
        for difficulty in difficulties:
            for name, count, draw in (("official logic", official[resolution], _official), ("ours", images, _ours)):
                for part, start in enumerate(range(0, count, PART)):
                    yield (resolution, difficulty, name), draw, (resolution, difficulty, seed, part,
                                                                 min(PART, count - start))


def _warm(resolutions) -> None:
    """Build the stamp tables before forking, so that every worker inherits them."""
    for resolution in resolutions:
        for margin in STYLES[resolution].margins:
            stamps(resolution, margin)


def compare(resolutions, difficulties, images: int, official: dict[int, int], seed: int,
            workers: int) -> list[dict]:
    _warm(resolutions)
    collected: dict[tuple, list[dict]] = {}
    with ProcessPoolExecutor(workers) as pool:
        futures = [(key, pool.submit(draw, *args)) for key, draw, args in _jobs(resolutions, difficulties,
                                                                                 images, official, seed)]
        for key, future in futures:
            collected.setdefault(key, []).extend(future.result())
    return [summarise(*key, drawn) for key, drawn in collected.items()]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(rows: list[dict], out: Path, command: str, seconds: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pathfinder_official_vs_ours.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |\n" for r in rows)
    note = (f"Made by `{command}` at commit {_commit()} on {platform.node() or 'unknown'} "
            f"({os.cpu_count()} CPUs, {platform.python_version()}), {time.strftime('%Y-%m-%d')}, "
            f"in {seconds / 60:.1f} min.\n\n"
            "official logic: `lra.data.generate.pathfinder_reference` (a plain reading of drewlinsley/pathfinder "
            "at ab9c130, one image at a time); ours: `lra.data.generate.pathfinder` (batched). distractors_set: "
            "num_distractor_snakes; _drawn: those that fitted, per image; target_paddles / distractor_paddles: "
            "per path; target_extent_px: start to end of a target path; dot_distance_px: between the two dots; "
            "pixels after the per-image 0..255 rescale (bright: >= 128); dot_cue: the dot distance alone as a "
            "predictor of the label (ROC AUC for label 1; accuracy of the best single threshold, %).\n\n")
    path = out / "pathfinder_official_vs_ours.md"
    path.write_text("# Pathfinder: the official logic against ours\n\n" + note + header + body)
    return path


def _per_resolution(text: str, resolutions: list[int]) -> dict[int, int]:
    if ":" not in text:
        return dict.fromkeys(resolutions, int(text))
    given = {int(r): int(n) for r, n in (item.split(":") for item in text.split(","))}
    return {r: given[r] for r in resolutions}


def main(argv: list[str]) -> int:
    options = dict(item.split("=", 1) for item in argv)
    resolutions = [int(r) for r in options.pop("resolutions", "32,64,128,256").split(",")]
    difficulties = options.pop("difficulties", ",".join(DIFFICULTY_DIRS)).split(",")
    images = int(options.pop("images", 1000))
    official = _per_resolution(options.pop("official_images", str(images)), resolutions)
    seed, workers = int(options.pop("seed", 0)), int(options.pop("workers", os.cpu_count() or 1))
    out = Path(options.pop("out", "results/data"))
    if options:
        print(f"unknown option(s): {', '.join(options)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows = compare(resolutions, difficulties, images, official, seed, workers)
    command = "python -m lra.data.generate.pathfinder_compare " + " ".join(argv)
    path = write(rows, out, command.strip(), time.perf_counter() - started)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
