"""The local results store: one JSON record per run under ``results/runs/``, written atomically.

A record (``schema`` 2; 1 before ``sequence_length``) holds:
    ``run_id``       the run's id, shared with its wandb run and its checkpoint folder
    ``kind``         "train" (from train.py) or "eval" (from evaluate.py, under ``results/evals/``)
    ``status``       "running" | "finished" | "failed" (with ``error``) | "diverged" (with ``error`` and
                     ``divergence``: {``step``: the first step seen with a non-finite training loss,
                     ``checked_every``, ``last_finite_checkpoint``, ``last_finite_step``})
    ``created``, ``updated``   ISO-8601 times
    ``task``         task name (``listops``, ``text``, ...), ``task_variant`` where the task has one;
                     ``sequence_length`` the positions of one example (the data module's ``max_length``; from
                     schema 2: older records fall back on their config, ``sequence_length()``)
    ``attention``    backend name; ``preset`` the experiment preset (e.g. ``lra/listops``) or null
    ``seed``, ``params`` (trainable parameter count)
    ``protocol``     {``validation_split``: which split served as validation (IMDB: "test" under LRA's
                     protocol), ``test_checkpoints``: {"best": "best val/acc checkpoint", "last": ...},
                     ``data_source``: where the data came from (e.g. "CIFAR-10, JPEG q75 copy"),
                     ``retrieval``: the pinned Retrieval definition, where relevant}
    ``metrics``      final numbers, flat: ``val/acc_best`` (best validation accuracy seen),
                     ``test/acc@best``, ``test/loss@best`` (best-validation checkpoint),
                     ``test/acc@last``, ``test/loss@last`` (last checkpoint), ``test/majority_acc`` (always
                     answering the test split's most common label: chance), ``step`` (last global step)
    ``efficiency``   ``samples_per_s``, ``tokens_per_s`` (real tokens, padding excluded),
                     ``padded_tokens_per_s``, ``steps_per_s``, ``peak_memory_mib`` and ``memory_kind``:
                     "cuda_max_allocated_training" (the training steps' peak; validation's apart, in
                     ``validation_peak_memory_mib``), "cpu_peak_rss" (the process's, everything included),
                     or, in older records, "cuda_max_allocated" (over the whole fit, validation and the
                     final tests included); ``measured_steps``, ``warmup_steps``,
                     ``device_processes``; ``segments``, the counts measured by each process that trained
                     the run (one, or more for a resumed run), and how many of them the rates pool
                     (``pooled_segments``); ``fit_seconds`` and ``validation_fraction`` (the share of
                     training time spent validating); ``speed``, the speed options in force (compile,
                     unpad, bucket, trim_train, trim_eval); under data parallelism ``processes`` (ranks),
                     rates over all of them, ``peak_memory_mib`` the largest rank's, ``peak_memory_sum_mib``
                     their sum and ``per_rank`` (samples/s and peak memory of each rank)
    ``history``      [{``step``, ``val/acc``, ``val/loss``, ``train/loss``}, ...] at each validation
    ``environment``  ``device``, ``torch``, ``lightning``, ``git_commit``, ``hostname``
    ``paths``        ``run_dir``, ``checkpoints`` (best, last), ``wandb`` (this process's wandb run folder or
                     URL), ``wandb_segments`` (every wandb folder or URL of the run, one per process)
    ``config``       the resolved config (plain dict)
    ``non_finite``   where present: the dotted keys whose value was NaN or infinite, written as null (records
                     are strict JSON)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lra.results.files import write_json_atomic

SCHEMA = 2
OLD_IMAGE_SIDE = 32  # records before schema 2: task=image was CIFAR-10 alone, 32 x 32 pixels
LRA_COLUMNS = ("listops", "text", "retrieval", "image", "pathx")  # tasks that are a Table 1 column by name
PATHFINDER_COLUMNS = {32 * 32: "pathfinder", 128 * 128: "pathx"}  # Path-X is Pathfinder at 128 x 128


class RecordError(ValueError):
    """A run record or run source that cannot be used; the message names the file or project."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_record(path: Path) -> dict[str, Any]:
    """Load one record; a file that is not a JSON object is reported by name, never skipped silently."""
    try:
        record = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: not a valid run record ({error}); fix or remove the file") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a valid run record (a JSON object expected); fix or remove the file")
    return record


def read_records(directory: Path, kind: str = "train") -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record of ``kind`` (``train`` or ``eval``) in a folder, in file-name order, with its file; a record
    being written (the temporary file of an atomic write) is passed over. Older records without ``kind``
    are training runs."""
    for path in sorted(Path(directory).glob("*.json")):
        if path.name.startswith("."):
            continue
        record = read_record(path)
        if record.get("kind", "train") == kind:
            yield path, record


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """A value of a resolved config (a record's ``config``) by dotted key (``task.max_length``), or None."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def sequence_length(record: dict[str, Any]) -> int | None:
    """Positions per example: the record's ``sequence_length``; before schema 2, the config's
    ``task.max_length``, or the pixels of an image task."""
    if record.get("sequence_length") is not None:
        return int(record["sequence_length"])
    config = record.get("config") or {}
    if config_value(config, "task.max_length") is not None:
        return config_value(config, "task.max_length")
    side = config_value(config, "task.resolution") or (OLD_IMAGE_SIDE if record.get("task") == "image" else None)
    return side * side if side else None


def table_column(task: str, length: int | None) -> str | None:
    """The LRA Table 1 column of a task at a sequence length (Path-X: Pathfinder at 128 x 128); None: none."""
    if task in LRA_COLUMNS:
        return task
    if task == "pathfinder":
        return PATHFINDER_COLUMNS.get(length or 32 * 32)
    return None


class ResultsStore:
    """Records of one kind (``runs`` or ``evals``) under a results folder.

    ``writable=False``: a store that reads but never writes, for the processes of a data-parallel run other
    than rank 0, so that a run has one record and one writer."""

    def __init__(self, results_dir: str | Path, kind: str = "runs", writable: bool = True):
        self.directory = Path(results_dir) / kind
        self.writable = writable

    def path(self, run_id: str) -> Path:
        return self.directory / f"{run_id}.json"

    def load(self, run_id: str) -> dict[str, Any] | None:
        path = self.path(run_id)
        return read_record(path) if path.is_file() else None

    def save(self, record: dict[str, Any]) -> Path:
        record = {**record, "schema": SCHEMA, "updated": now()}
        record.setdefault("created", record["updated"])
        path = self.path(record["run_id"])
        if self.writable:
            write_json_atomic(path, record)
        return path

    def update(self, run_id: str, **fields: Any) -> dict[str, Any]:
        record = self.load(run_id) or {"run_id": run_id}
        record.update(fields)
        self.save(record)
        return record
