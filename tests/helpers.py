"""Helpers shared by the tests: Hydra composition and running the entry points as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small enough for a few seconds on 2 CPU cores, big enough to train, validate, checkpoint and test.
TINY_RUN = [
    "model=tiny",
    "task.num_train=320",
    "task.num_val=64",
    "task.num_test=64",
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "measure_warmup_steps=2",
    "trainer.accelerator=cpu",
    "checkpoint_every_s=0",  # last.ckpt after every validation: the kill and resume tests count on its step
]


def compose_train(overrides: list[str] | None = None, config_name: str = "train",
                  hydra_config: bool = False) -> DictConfig:
    """The config ``python train.py OVERRIDES`` would run with (Hydra's compose API)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=hydra_config)


def user_environment() -> dict[str, str]:
    """The environment of a fresh shell: without WANDB_SERVICE, which an in-process wandb run of the test
    session sets, and which would make every subprocess share that session's wandb service."""
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    return {**env, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}


def run_script(script: str, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``train.py`` / ``evaluate.py`` in a subprocess, from ``cwd``, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=user_environment(),
                          capture_output=True, text=True, timeout=timeout)


def wandb_offline_records(run_dir: Path):
    """The ``Record`` protobufs of an offline wandb run, read from its ``run-*.wandb`` transaction log.

    The log is a LevelDB-style record log (a 7-byte file header, 32 KiB blocks, each record chunk with a
    7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of wandb ``Record`` protobufs; wandb 0.31
    has no Python reader of its own (the Go core writes it).
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    (log,) = run_dir.glob("run-*.wandb")
    data, block, position, pending = log.read_bytes(), 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_offline_summary(run_dir: Path) -> dict[str, object]:
    """The final summary of an offline wandb run."""
    import json

    summary = {}
    for record in wandb_offline_records(run_dir):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def wandb_offline_history(run_dir: Path) -> list[dict[str, object]]:
    """The history rows (one dict per ``log`` call) of an offline wandb run."""
    import json

    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for record in wandb_offline_records(run_dir) if record.WhichOneof("record_type") == "history"]
