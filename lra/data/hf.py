"""Hugging Face ``datasets`` copies on disk, read offline.

Three layouts are recognised, never downloaded:
    * a ``DatasetDict`` saved with ``save_to_disk`` (``dataset_dict.json`` plus one folder per split);
    * the Hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
      ``datasets--<org>--<name>/snapshots/<revision>/**/<split>-*.parquet``, as ``load_dataset`` leaves it;
    * the ``datasets`` cache (``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``, else
      ``~/.cache/huggingface/datasets``): ``<org>___<name>/**/<name>-<split>[-NNNNN-of-NNNNN].arrow``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lra.data.errors import DataError

if TYPE_CHECKING:
    import datasets


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))


def hub_cache() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE", _hf_home() / "hub"))


def datasets_cache() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE", _hf_home() / "datasets"))


def is_saved_dataset_dict(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file()


def cached_files(repo_id: str, splits: tuple[str, ...]) -> dict[str, list[Path]] | None:
    """The newest cached copy of ``repo_id`` with every split: parquet (Hub cache) or arrow files."""
    org, name = repo_id.split("/")
    snapshots = hub_cache() / f"datasets--{org}--{name}" / "snapshots"
    candidates = (
        sorted(snapshots.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        if snapshots.is_dir()
        else []
    )
    for snapshot in candidates:
        found = {s: sorted(snapshot.rglob(f"{s}-*.parquet")) for s in splits}
        if all(found.values()):
            return found
    arrow_root = datasets_cache() / f"{org}___{name}"
    if arrow_root.is_dir():
        found = {
            s: sorted(
                p
                for p in arrow_root.rglob(f"{name}-{s}*.arrow")
                if p.name == f"{name}-{s}.arrow" or p.name.startswith(f"{name}-{s}-")
            )
            for s in splits
        }
        if all(found.values()):
            return found
    return None


def load_splits(
    path_or_files: Path | dict[str, list[Path]], splits: tuple[str, ...]
) -> dict[str, datasets.Dataset]:
    """Open a saved ``DatasetDict`` folder, or cached parquet/arrow files, split by split."""
    import datasets  # imported here: it takes a second, and most runs never read a Hugging Face copy

    try:
        if isinstance(path_or_files, Path):
            saved = datasets.load_from_disk(str(path_or_files))
            missing = [s for s in splits if s not in saved]
            if missing:
                raise DataError(
                    f"{path_or_files}: saved dataset has splits {sorted(saved)}, needs {', '.join(splits)}"
                )
            return {s: saved[s] for s in splits}
        loaded = {}
        for split, files in path_or_files.items():
            if files[0].suffix == ".parquet":
                loaded[split] = datasets.Dataset.from_parquet(
                    [str(f) for f in files], cache_dir=str(datasets_cache())
                )
            else:
                loaded[split] = datasets.concatenate_datasets(
                    [datasets.Dataset.from_file(str(f)) for f in files]
                )
        return loaded
    except DataError:
        raise
    except Exception as error:  # datasets raises many kinds for unreadable files
        where = (
            path_or_files
            if isinstance(path_or_files, Path)
            else sorted(str(f) for fs in path_or_files.values() for f in fs)
        )
        raise DataError(f"cannot read the Hugging Face dataset at {where}: {error}") from error


def source_paths(path_or_files: Path | dict[str, list[Path]]) -> list[Path]:
    """The files a cache built from this copy depends on."""
    if isinstance(path_or_files, Path):
        return [path_or_files]
    return [f for files in path_or_files.values() for f in files]


def column(dataset: datasets.Dataset, names: tuple[str, ...], where: str) -> str:
    found = next((n for n in names if n in dataset.column_names), None)
    if found is None:
        raise DataError(
            f"{where}: expected a column named {' or '.join(names)}; it has {dataset.column_names}"
        )
    return found
