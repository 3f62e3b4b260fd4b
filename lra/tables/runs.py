"""Training runs as the tables see them: from the local records (``results/runs/*.json``) or a wandb project.

The record format and its reader are ``lra.results.records``. Only ``kind == "train"`` records are runs; a file
that is not valid JSON, or a record without the keys a table needs, stops the build with the file's name (never
skipped silently).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from lra.results.records import RecordError, config_value, read_records, sequence_length, table_column

REQUIRED_KEYS = ("run_id", "status", "task", "attention")
WANDB_STATUS = {"finished": "finished", "running": "running", "crashed": "failed", "failed": "failed",
                "killed": "failed", "preempted": "failed", "pending": "running"}


@dataclass(frozen=True)
class Run:
    """One training run: identity, protocol, final metrics, efficiency and validation history."""

    run_id: str
    origin: str  # the record file, or wandb:<entity/project>/<id>
    status: str  # finished | running | failed
    task: str
    attention: str
    preset: str | None
    seed: int | None
    params: int | None
    validation_split: str
    data_source: str
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = "unknown"
    error: str | None = None
    created: str = ""  # ISO-8601 start of the run ("" where unknown)
    sequence_length: int | None = None  # tokens per example (lra.results.records.sequence_length)
    column: str | None = None  # the LRA Table 1 column; None: not one (lra.results.records.table_column)

    @property
    def family(self) -> str | None:
        """The preset's paper (``lra`` for ``lra/listops``), or None for a run without a preset."""
        return self.preset.split("/", 1)[0] if self.preset else None

    @property
    def fit_seconds(self) -> float | None:
        """Wall time of training and validation (``efficiency.fit_seconds``; None in records from before it)."""
        return self.efficiency.get("fit_seconds")

    @property
    def steps(self) -> int | None:
        return self.metrics.get("step")

    def setting(self, dotted: str) -> Any:
        """A value of the run's resolved config by dotted key (``trainer.max_steps``), or None."""
        return config_value(self.config, dotted)

    def accuracy(self, checkpoint: str) -> float | None:
        """Test accuracy in percent of the ``best`` (validation) or ``last`` checkpoint."""
        value = self.metrics.get(f"test/acc@{checkpoint}")
        return None if value is None else 100.0 * float(value)

    @property
    def chance(self) -> float | None:
        """In percent, the test accuracy of always answering the most common label; None in older records."""
        value = self.metrics.get("test/majority_acc")
        return None if value is None else 100.0 * float(value)


def describe_data_source(source: Any) -> str:
    """A short label for a record's ``protocol.data_source`` (a string, or the data module's dict)."""
    if source is None:
        return "not recorded"
    if isinstance(source, str):
        return _without_folder(source)
    if isinstance(source, dict):
        for key in ("data_source", "label", "description"):  # the data modules' own short label
            if isinstance(source.get(key), str) and source[key]:
                return _without_folder(source[key])
        files = source.get("files")
        if isinstance(files, dict) and files:
            folders = sorted({PurePath(str(p)).parent.name for p in files.values()})
            return ", ".join(folders)
        for key in ("folder", "source"):  # a path: its last two parts name the data set
            if isinstance(source.get(key), str):
                return "/".join(PurePath(source[key]).parts[-2:])
    return json.dumps(source, sort_keys=True)[:120]


# ListOps labels of 2026-12-03 and -04 ended with the generated folder ("...96000/2000/2000; data/raw/listops-
# generated-4a7df77cfcd9f956)"): where the data lay, which split its runs from the same data's earlier ones
_GENERATED_FOLDER = re.compile(r"; [^;()]*listops-generated-[0-9a-f]+\)$")


def _without_folder(label: str) -> str:
    return _GENERATED_FOLDER.sub(")", label)


def from_record(record: dict[str, Any], origin: str) -> Run:
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise RecordError(f"{origin}: run record lacks {', '.join(missing)}")
    protocol = record.get("protocol") or {}
    length = sequence_length(record)
    return Run(
        run_id=str(record["run_id"]),
        origin=origin,
        status=str(record["status"]),
        task=str(record["task"]),
        attention=str(record["attention"]),
        preset=record.get("preset"),
        seed=record.get("seed"),
        params=record.get("params"),
        validation_split=str(protocol.get("validation_split", "not recorded")),
        data_source=describe_data_source(protocol.get("data_source")),
        config=record.get("config") or {},
        metrics=record.get("metrics") or {},
        efficiency=record.get("efficiency") or {},
        history=record.get("history") or [],
        device=str((record.get("environment") or {}).get("device", "unknown")),
        error=record.get("error"),
        created=str(record.get("created") or ""),
        sequence_length=length,
        column=table_column(str(record["task"]), length),
    )


def load_local(runs_dir: Path) -> list[Run]:
    """Every training run recorded under ``runs_dir`` (``results/runs``), in file-name order."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RecordError(f"no run records: {runs_dir} is not a folder (train.py writes records there)")
    return [from_record(record, str(path)) for path, record in read_records(runs_dir)]


def load_wandb(project: str, api: Any = None) -> list[Run]:
    """The training runs of a wandb project (``entity/project``) through the public API.

    Protocol fields that only the local record holds (validation split, data source) read "not recorded
    (wandb)", so such runs never average with local runs of a known protocol.
    """
    try:
        if api is None:
            import wandb

            api = wandb.Api(timeout=30)
        remote = list(api.runs(project, filters={"jobType": "train"}))
    except Exception as error:  # no network, no login, unknown project: all end here
        raise RecordError(
            f"cannot read wandb project {project!r}: {type(error).__name__}: {error}\n"
            "the table builder reads wandb only when asked (wandb=ENTITY/PROJECT); check `wandb login` and the "
            "network, or build from the local records alone (leave wandb unset)") from None
    return [from_wandb(run, project) for run in remote]


def from_wandb(run: Any, project: str) -> Run:
    config = dict(run.config)
    summary = dict(getattr(run.summary, "_json_dict", run.summary))
    task = (config.get("task") or {}).get("name") or _tag(run.tags, "task")
    attention = (config.get("attention") or {}).get("name") or _tag(run.tags, "attention")
    metrics = {key: value for key, value in summary.items() if key.startswith(("test/", "val/acc_best"))}
    if "trainer/global_step" in summary:
        metrics["step"] = summary["trainer/global_step"]
    efficiency = {key.split("/", 1)[1]: value for key, value in summary.items() if key.startswith("efficiency/")}
    record = {
        "run_id": run.id, "status": WANDB_STATUS.get(run.state, "failed"), "task": task, "attention": attention,
        "preset": config.get("preset") or _tag(run.tags, "preset"), "seed": config.get("seed"),
        "params": summary.get("params"),
        "protocol": {"validation_split": "not recorded (wandb)", "data_source": "not recorded (wandb)"},
        "config": config, "metrics": metrics, "efficiency": efficiency, "history": _wandb_history(run),
        "environment": {"device": _wandb_device(run)},
    }
    return from_record(record, f"wandb:{project}/{run.id}")


def _tag(tags: Iterable[str], prefix: str) -> str | None:
    return next((tag.split(":", 1)[1] for tag in tags or () if tag.startswith(f"{prefix}:")), None)


def _wandb_device(run: Any) -> str:
    metadata = getattr(run, "metadata", None) or {}
    return str(metadata.get("gpu") or "unknown")


def _wandb_history(run: Any) -> list[dict[str, Any]]:
    rows = run.scan_history(keys=["trainer/global_step", "val/acc"])
    return [{"step": row["trainer/global_step"], "val/acc": row["val/acc"]} for row in rows]


def merge(local: list[Run], remote: list[Run]) -> list[Run]:
    """Local records win over wandb runs with the same id (they carry the protocol)."""
    known = {run.run_id for run in local}
    return local + [run for run in remote if run.run_id not in known]
