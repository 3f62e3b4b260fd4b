"""Fetch, prepare and generate the LRA data sets; settings are Hydra overrides of ``conf/data_*.yaml``.

    python -m lra.data fetch NAME [force=true]          NAME: lra_release | imdb | cifar10, or a task name
    python -m lra.data prepare task=NAME [task.KEY=VALUE ...] [seed=N]
    python -m lra.data generate listops seed=N [num_train=96000 num_val=2000 num_test=2000 max_depth=10
                                              max_args=10 min_length=500 max_length=2000 workers=N out=DIR]
    python -m lra.data generate pathfinder [resolution=32 difficulty=hard num_images=N seed=N workers=N out=DIR]

Every command takes ``paths.data_dir=DIR`` (default ``$LRA_DATA_DIR``, else ``data``), the folder the
trainer reads. ``prepare`` composes ``conf/task/NAME.yaml`` with the overrides, as ``train.py`` does.
Whether an image task's data are learnable: ``python -m lra.probe`` (``lra.probe``).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lra.conf import compose, exit_status, integer
from lra.data.errors import DataError


def fetch_command(cfg: DictConfig) -> None:
    from lra.data import fetch

    if not cfg.name:
        raise DataError("fetch needs a name: python -m lra.data fetch NAME (lra_release, imdb, cifar10 or a task)")
    data_dir = Path(cfg.paths.data_dir)
    archive = fetch.resolve(str(cfg.name))
    print(f"{archive.name}: {archive.url}\n  size/digest: {archive.provenance}")
    unpacked = fetch.fetch(str(cfg.name), data_dir, force=bool(cfg.force))
    print(f"{archive.name} is in: " + ", ".join(map(str, unpacked)))
    print(
        f"(the downloaded archive stays in {data_dir / 'downloads'} for resuming and re-checking; "
        "delete it freely)"
    )


def prepare_command(cfg: DictConfig) -> None:
    from lra.data.prepare import prepare_verbosely

    task = OmegaConf.to_container(cfg.task, resolve=True) if "task" in cfg else None
    prepare_verbosely("prepare", task, data_dir=cfg.paths.data_dir, seed=integer(cfg, "seed"))


def generate_listops(cfg: DictConfig) -> None:
    from lra.data.generate.listops import ListOpsSettings
    from lra.data.listops import RELEASE_FILES, ensure_generated, generated_dir, read_tsv
    from lra.data.prepare import cpu_seconds

    seed = integer(cfg, "seed")
    if seed is None:
        raise DataError("generate listops needs seed=N")
    sizes = {split: integer(cfg, f"num_{split}") for split in ("train", "val", "test")}
    chosen = {key: integer(cfg, key) for key in ("max_depth", "max_args", "min_length", "max_length")}
    settings = ListOpsSettings(**{key: value for key, value in chosen.items() if value is not None})
    directory = Path(cfg.out) if cfg.out else generated_dir(Path(cfg.paths.data_dir), sizes, settings, seed)
    started, cpu = time.perf_counter(), cpu_seconds()
    ensure_generated(directory, sizes, settings, seed, integer(cfg, "workers"))
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(
        f"ListOps ({sum(sizes.values())} expressions, seed {seed}) in {directory}: "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    labels, operators, lengths = Counter(), Counter(), []
    for name in RELEASE_FILES.values():
        for expression, label in read_tsv(directory / name):
            tokens = expression.replace("(", " ").replace(")", " ").split()
            labels[label] += 1
            operators.update(t for t in tokens if t.startswith("["))
            lengths.append(len(tokens))
    total = sum(labels.values())
    print("labels: " + "  ".join(f"{k}: {v / total:.1%}" for k, v in sorted(labels.items())))
    print(
        "operators: "
        + "  ".join(f"{k}: {v / sum(operators.values()):.1%}" for k, v in sorted(operators.items()))
    )
    print(
        f"lengths (tokens without parentheses): min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}"
    )


def generate_pathfinder(cfg: DictConfig) -> None:
    from lra.data.generate import pathfinder

    resolution, num_images, seed = integer(cfg, "resolution"), integer(cfg, "num_images"), integer(cfg, "seed")
    difficulty, out = str(cfg.difficulty), cfg.out
    if out is None:  # where task=pathfinder looks for a generated set with these settings
        from lra.data.pathfinder import PathfinderDataModule

        module = PathfinderDataModule(data_dir=cfg.paths.data_dir, seed=0, resolution=resolution,
                                      difficulty=difficulty, num_images=num_images, generator_seed=seed,
                                      batch_size=1)
        out = module.generated_root()
    started = time.perf_counter()
    where = pathfinder.generate_dataset(
        out_root=Path(out),
        resolution=resolution,
        difficulty=difficulty,
        num_images=num_images,
        seed=seed,
        workers=integer(cfg, "workers") or os.cpu_count() or 1,
    )
    print(
        f"Pathfinder {resolution}px {difficulty}, {num_images} images in {where}: "
        f"{time.perf_counter() - started:.1f} s"
    )


# The command words before the overrides -> the config they compose and the function that runs it
COMMANDS = {("fetch",): ("data_fetch", fetch_command), ("prepare",): ("data_prepare", prepare_command),
            ("generate", "listops"): ("data_generate_listops", generate_listops),
            ("generate", "pathfinder"): ("data_generate_pathfinder", generate_pathfinder)}


def split_command(argv: list[str]) -> tuple[str, Callable[[DictConfig], None], list[str]]:
    """The config and function the leading command words choose, and the Hydra overrides after them
    (``fetch NAME``: the name is the override ``name=NAME``)."""
    for words, (config_name, function) in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            overrides = argv[len(words):]
            if words == ("fetch",) and overrides and "=" not in overrides[0]:
                overrides = [f"name={overrides[0]}", *overrides[1:]]
            return config_name, function, overrides
    given = repr(" ".join(argv[:2])) if argv else "no command"
    raise DataError(f"{given}: commands are {', '.join(' '.join(words) for words in COMMANDS)} "
                    "(python -m lra.data --help)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0

    def command() -> None:
        config_name, function, overrides = split_command(argv)
        function(compose(config_name, overrides))
    return exit_status(command, (DataError, ValueError))  # ValueError: UnknownTaskError, a generator's settings


if __name__ == "__main__":
    sys.exit(main())
