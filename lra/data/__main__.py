"""Fetch, prepare and generate the LRA data sets.

    python -m lra.data fetch NAME [--force]          NAME: lra_release | imdb | cifar10, or a task name
    python -m lra.data prepare task=NAME [task.KEY=VALUE ...] [seed=N]
    python -m lra.data probe task=pathfinder|image [task.KEY=VALUE ...] [epochs=5 batch_size=128 lr=0.001 seed=0
                                              max_train=N out=FILE]
    python -m lra.data generate listops seed=N [num_train=96000 num_val=2000 num_test=2000 max_depth=10
                                              max_args=10 min_length=500 max_length=2000 workers=N out=DIR]
    python -m lra.data generate pathfinder resolution=32 difficulty=hard num_images=N seed=N
                                              [workers=N out=DIR]

Every command takes ``paths.data_dir=DIR`` (default ``$LRA_DATA_DIR``, else ``data``), the folder the
trainer reads. ``prepare`` composes ``conf/task/NAME.yaml`` with the overrides, as ``train.py`` does.
``probe`` prepares the same way, then trains a small CNN on the cache (``lra.train.probe``): a check that
the data are learnable, independent of attention, not an LRA result. Its JSON report goes to ``out``, by
default ``RESULTS/probes/pathfinder-<resolution>-<difficulty>.json`` or ``RESULTS/probes/image.json``
(``RESULTS``: ``$LRA_RESULTS_DIR``, else ``results``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from lra.data.errors import DataError

if TYPE_CHECKING:
    from lra.data.base import LRADataModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"expected KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _data_dir(options: dict[str, str]) -> Path:
    return Path(options.pop("paths.data_dir", os.environ.get("LRA_DATA_DIR", "data")))


def _results_dir() -> Path:
    return Path(os.environ.get("LRA_RESULTS_DIR", "results"))


def _number(options: dict[str, str], key: str, default, convert, kind: str):
    value = options.pop(key, None)
    if value is None:
        return default
    try:
        return convert(value)
    except ValueError:
        raise DataError(f"{key} must be {kind}, got {value!r}") from None


def _int(options: dict[str, str], key: str, default: int | None) -> int | None:
    return _number(options, key, default, int, "an integer")


def _float(options: dict[str, str], key: str, default: float) -> float:
    return _number(options, key, default, float, "a number")


def _no_leftovers(options: dict[str, str], command: str, known: list[str]) -> None:
    if options:
        raise DataError(
            f"{command}: unknown option(s) {', '.join(sorted(options))}; options: {', '.join(known)}"
        )


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def fetch_command(name: str, force: bool, options: dict[str, str]) -> None:
    from lra.data import fetch

    data_dir = _data_dir(options)
    _no_leftovers(options, "fetch", ["paths.data_dir"])
    archive = fetch.resolve(name)
    print(f"{archive.name}: {archive.url}\n  size/digest: {archive.provenance}")
    unpacked = fetch.fetch(name, data_dir, force=force)
    print(f"{archive.name} is in: " + ", ".join(map(str, unpacked)))
    print(
        f"(the downloaded archive stays in {data_dir / 'downloads'} for resuming and re-checking; "
        "delete it freely)"
    )


def prepare_task(command: str, options: dict[str, str], own_options: list[str]) -> tuple[dict, LRADataModule]:
    """Compose ``conf/task/NAME.yaml`` with the ``task.*`` overrides, as ``train.py`` does, and prepare (or
    find and verify) its cache; returns the resolved task config and the prepared data module. ``options``
    must hold only what this takes (``own_options`` already popped: they are named in the error)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import lra.data

    data_dir = _data_dir(options)
    seed = _int(options, "seed", 0)
    task = options.pop("task", None)
    if task is None:
        raise DataError(f"{command} needs task=NAME; tasks: {', '.join(sorted(lra.data.TASKS))}")
    bad = [k for k in options if not k.startswith("task.")]
    _no_leftovers(
        {k: options[k] for k in bad}, command, ["task=NAME", "task.KEY=VALUE", *own_options, "seed", "paths.data_dir"]
    )
    if not (CONF_DIR / "task" / f"{task}.yaml").is_file():
        known = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
        raise DataError(f"no task config {task!r}; known: {', '.join(known)}")
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(overrides=[f"+task={task}", *(f"{k}={v}" for k, v in options.items())])
    task_config = OmegaConf.to_container(cfg.task, resolve=True)
    started, cpu = time.perf_counter(), _cpu_seconds()
    datamodule = lra.data.create(task_config, data_dir=data_dir, seed=seed)
    datamodule.prepare_data()
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    print(f"task {task}: cache {datamodule.cache_dir} ({_size(datamodule.cache_dir) / 2**20:.1f} MiB)")
    print(f"  ready in {wall:.1f} s wall, {cpu:.1f} s CPU (includes checking the cache's digests)")
    for key, value in datamodule.describe_source().items():
        print(f"  {key}: {value}")
    return task_config, datamodule


def prepare_command(items: list[str]) -> None:
    prepare_task("prepare", _pairs(items), [])


def probe_command(items: list[str]) -> None:
    from lra.train import probe  # a training run on the data, so it lives with training

    options = _pairs(items)
    probe.check_task(options.get("task"))  # before preparing, which can take minutes for a task it rejects
    if "task.batch_size" in options:
        raise DataError("probe: set the batch size with batch_size=N (the probe's), not task.batch_size")
    epochs, batch_size = _int(options, "epochs", 5), _int(options, "batch_size", 128)
    lr, max_train, out = _float(options, "lr", 1e-3), _int(options, "max_train", None), options.pop("out", None)
    options["task.batch_size"] = str(batch_size)  # the task config's is the Transformer's
    task_config, datamodule = prepare_task("probe", options, ["epochs", "batch_size", "lr", "max_train", "out"])
    result = probe.run_probe(datamodule, epochs=epochs, lr=lr, seed=datamodule.seed, max_train=max_train)
    print(f"test acc {result['test_acc']:.4f} (chance {result['chance']:.4f}) after {epochs} epochs on "
          f"{result['train_examples']} training images, {result['seconds']:.1f} s")
    path = Path(out) if out else probe.default_report_path(_results_dir(), task_config)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": datamodule.seed, "max_train": max_train}
    probe.write_report(path, task_config, datamodule, settings, result)
    print(f"report: {path} (a check of the data with a small CNN, not an LRA result)")


def generate_listops(options: dict[str, str]) -> None:
    from lra.data.generate.listops import ListOpsSettings
    from lra.data.listops import RELEASE_FILES, ensure_generated, generated_dir, read_tsv

    data_dir = _data_dir(options)
    seed = _int(options, "seed", None)
    if seed is None:
        raise DataError("generate listops needs seed=N")
    sizes = {s: _int(options, f"num_{s}", d) for s, d in (("train", 96000), ("val", 2000), ("test", 2000))}
    defaults = ListOpsSettings()
    settings = ListOpsSettings(
        **{
            k: _int(options, k, getattr(defaults, k))
            for k in ("max_depth", "max_args", "min_length", "max_length")
        }
    )
    workers = _int(options, "workers", None)
    out = options.pop("out", None)
    _no_leftovers(
        options,
        "generate listops",
        [
            "seed",
            "num_train",
            "num_val",
            "num_test",
            "max_depth",
            "max_args",
            "min_length",
            "max_length",
            "workers",
            "out",
            "paths.data_dir",
        ],
    )
    directory = Path(out) if out else generated_dir(data_dir, sizes, settings, seed)
    started, cpu = time.perf_counter(), _cpu_seconds()
    ensure_generated(directory, sizes, settings, seed, workers)
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
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


def generate_pathfinder(options: dict[str, str]) -> None:
    from lra.data.generate import pathfinder

    data_dir = _data_dir(options)
    resolution = _int(options, "resolution", 32)
    difficulty = options.pop("difficulty", "hard")
    num_images = _int(options, "num_images", 200_000)
    seed = _int(options, "seed", 0)
    workers = _int(options, "workers", os.cpu_count() or 1)
    out = options.pop("out", None)
    if out is None:  # where task=pathfinder looks for a generated set with these settings
        from lra.data.pathfinder import PathfinderDataModule

        module = PathfinderDataModule(data_dir=data_dir, seed=0, resolution=resolution, difficulty=difficulty,
                                      num_images=num_images, generator_seed=seed, batch_size=1)
        out = module.generated_root()
    _no_leftovers(
        options,
        "generate pathfinder",
        ["resolution", "difficulty", "num_images", "seed", "workers", "out", "paths.data_dir"],
    )
    started = time.perf_counter()
    where = pathfinder.generate_dataset(
        out_root=Path(out),
        resolution=resolution,
        difficulty=difficulty,
        num_images=num_images,
        seed=seed,
        workers=workers,
    )
    print(
        f"Pathfinder {resolution}px {difficulty}, {num_images} images in {where}: "
        f"{time.perf_counter() - started:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lra.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser(
        "fetch", help="download, verify and unpack an archive into DATA_DIR/raw"
    )
    fetch_parser.add_argument("name")
    fetch_parser.add_argument("--force", action="store_true", help="download and unpack again, replacing")
    fetch_parser.add_argument("options", nargs="*", help="paths.data_dir=DIR")
    prepare_parser = commands.add_parser("prepare", help="tokenise a task's data into its cache")
    prepare_parser.add_argument(
        "options", nargs="*", help="task=NAME task.KEY=VALUE ... seed=N paths.data_dir=DIR"
    )
    probe_parser = commands.add_parser(
        "probe", help="train a small CNN on an image task's prepared data: is it learnable?"
    )
    probe_parser.add_argument(
        "options", nargs="*", help="task=NAME task.KEY=VALUE ... epochs=N batch_size=N lr=F seed=N max_train=N out=FILE"
    )
    generate_parser = commands.add_parser("generate", help="generate a synthetic task's data set")
    generate_parser.add_argument("task", choices=["listops", "pathfinder"])
    generate_parser.add_argument("options", nargs="*", help="KEY=VALUE settings")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch_command(args.name, args.force, _pairs(args.options))
        elif args.command == "prepare":
            prepare_command(args.options)
        elif args.command == "probe":
            probe_command(args.options)
        elif args.task == "listops":
            generate_listops(_pairs(args.options))
        else:
            generate_pathfinder(_pairs(args.options))
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
