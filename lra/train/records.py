"""The local results store: one JSON record per run under ``results/runs/``, written atomically.

A record (``schema`` 1) holds:
    ``run_id``       the run's id, shared with its wandb run and its checkpoint folder
    ``kind``         "train" (from train.py) or "eval" (from evaluate.py, under ``results/evals/``)
    ``status``       "running" | "finished" | "failed" (with ``error``) | "diverged" (with ``error`` and
                     ``divergence``: {``step``: the first step seen with a non-finite training loss,
                     ``checked_every``, ``last_finite_checkpoint``, ``last_finite_step``})
    ``created``, ``updated``   ISO-8601 times
    ``task``         task name (``listops``, ``text``, ...), ``task_variant`` where the task has one
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
import math
import os
import platform
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning
import torch

SCHEMA = 1


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it over ``path``: a reader
    sees the old file or the new one, never a part. The file gets the mode of any new file (the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.partial-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finite_only(data: Any, key: str = "") -> tuple[Any, list[str]]:
    """``data`` with every NaN or infinite float replaced by None, and the dotted keys that held one."""
    if isinstance(data, float) and not math.isfinite(data):
        return None, [key]
    if isinstance(data, dict | list | tuple):
        items = data.items() if isinstance(data, dict) else enumerate(data)
        cleaned = {name: finite_only(value, f"{key}.{name}" if key else str(name)) for name, value in items}
        found = [found_key for _, keys in cleaned.values() for found_key in keys]
        values = {name: value for name, (value, _) in cleaned.items()}
        return (values if isinstance(data, dict) else list(values.values())), found
    return data, []


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON (``write_atomic``): NaN and infinities, which strict parsers refuse, are
    written as null and their keys listed under ``non_finite``."""
    clean, non_finite = finite_only(data)
    if non_finite:
        clean["non_finite"] = sorted(set(non_finite) | set(clean.get("non_finite") or []))
    text = json.dumps(clean, indent=1, sort_keys=True, default=str, allow_nan=False)
    write_atomic(path, text.encode())


def read_record(path: Path) -> dict[str, Any]:
    """Load one record; a file that is not valid JSON is reported by name, never skipped silently."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid run record ({error})") from error


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


def git_commit() -> str | None:
    """HEAD of the checkout lra runs from (``-dirty`` with uncommitted changes); ``LRA_COMMIT`` where the
    tree has no ``.git`` (a copy sent to a GPU machine)."""
    if os.environ.get("LRA_COMMIT"):
        return os.environ["LRA_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def describe_device(device: torch.device | None = None) -> str:
    """The GPU's name ("NVIDIA H200"), or the CPU's architecture and cores; the current GPU by default."""
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def environment() -> dict[str, Any]:
    return {
        "device": describe_device(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
    }
