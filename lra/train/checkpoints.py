"""Checkpoint files: written atomically with their sha256 beside them, verified before every load, and a
folder that stays consistent when the process is killed at any instant.

Every ``X.ckpt`` has ``X.ckpt.sha256`` beside it (``sha256sum`` format). Replacing ``last.ckpt`` takes three
atomic steps: the digest file first lists the new digest and the old one, then the new checkpoint is renamed
into place, then the digest file lists the new digest alone. A process killed between any two of them leaves
a checkpoint whose digest is listed, so a killed run resumes; a checkpoint whose bytes match no listed digest
is corrupt and is refused, by name. A checkpoint without a digest file (written before lra wrote digests) is
loaded with a warning that it is unverified.

The best checkpoint a newer one supersedes is deleted only after ``last.ckpt`` names the newer one, so
``last.ckpt`` never names a deleted file; files a killed process left behind (a best checkpoint ``last.ckpt``
does not name, a digest without its checkpoint, a temporary file) are removed when the run resumes.

The callbacks that write a run's checkpoints (``BestCheckpoint``, ``LastCheckpoint``) and the random state they
carry (``RandomStateCheckpoint``) live here too.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from lra.data.cache import remove_dead_partials
from lra.results.files import write_atomic
from lra.train.config import ConfigError

DIGEST_SUFFIX = ".sha256"
CONFIG_KEY = "lra_config"  # the resolved config, as YAML text, inside every checkpoint
_HEX = re.compile(r"[0-9a-f]{64}")
_unverified_warned: set[Path] = set()


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: missing, unreadable, or not the bytes its digest records."""


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def read_digests(path: Path) -> list[str] | None:
    """The digests listed beside ``path`` (one, or two while a replacement is under way); None: no file."""
    listing = digest_path(path)
    if not listing.is_file():
        return None
    digests = [line.split()[0] for line in listing.read_text(errors="replace").splitlines() if line.strip()]
    return [digest for digest in digests if _HEX.fullmatch(digest)]


def _write_digests(path: Path, digests: list[str]) -> None:
    unique = list(dict.fromkeys(digests))
    write_atomic(digest_path(path), "".join(f"{digest}  {path.name}\n" for digest in unique).encode())


def save_checked(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` and its digest file, in an order that a kill at any instant cannot break."""
    digest = hashlib.sha256(data).hexdigest()
    if path.exists():
        _write_digests(path, [digest, *(read_digests(path) or [])])
    else:
        _write_digests(path, [digest])
    write_atomic(path, data)
    _write_digests(path, [digest])


def read_checked(path: Path) -> bytes:
    """The bytes of ``path`` once they match a digest listed beside it; refuses a mismatch, by name."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    digests = read_digests(path)
    if digests is None:
        if path not in _unverified_warned:
            _unverified_warned.add(path)
            print(f"warning: {path} has no {path.name}{DIGEST_SUFFIX} beside it (written before lra recorded "
                  "digests): loaded unverified", file=sys.stderr)
        return data
    actual = hashlib.sha256(data).hexdigest()
    if actual not in digests:
        raise CheckpointError(
            f"{path} is corrupt: its sha256 is {actual}, {digest_path(path).name} records {' or '.join(digests)}."
            "\nRefusing to load it; resume or evaluate from another checkpoint of the run.")
    return data


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A verified lra checkpoint, loaded without running pickled code (``weights_only=True``)."""
    path = Path(path)
    data = read_checked(path)
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable lra checkpoint ({type(error).__name__}: {error})") from None
    if CONFIG_KEY not in checkpoint:
        raise CheckpointError(f"{path}: no lra config inside; was it written by lra's train.py?")
    return checkpoint


class CheckedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reads and writes through ``save_checked`` and ``read_checked``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("CheckedCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        save_checked(Path(path), buffer.getvalue())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        data = read_checked(Path(path))
        return torch.load(io.BytesIO(data), map_location=map_location or "cpu",
                          weights_only=True if weights_only is None else weights_only)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
        digest_path(Path(path)).unlink(missing_ok=True)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's top-k checkpoint, except that a superseded checkpoint waits for ``remove_superseded``
    (called once ``last.ckpt`` names the new one) instead of being deleted at once."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.superseded: list[str] = []

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key, so that checkpoints written before this class existed still resume
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.superseded.append(filepath)

    def remove_superseded(self, trainer: L.Trainer) -> None:
        for path in self.superseded:
            trainer.strategy.remove_checkpoint(path)
        self.superseded = []


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` after a validation and when training stops, so a run killed at any moment
    resumes from a validation; then deletes the best checkpoints ``best`` has superseded (so ``last.ckpt``
    never names a deleted one). The write is atomic and digested (``CheckedCheckpointIO``).

    ``every_s``: after a validation only once this many seconds have passed since the last write (0: after
    every one): LRA's ListOps preset validates 100 times in a few minutes, and each write serialises, digests
    and fsyncs its model and optimizer state (108 MB). A killed run then redoes at most ``every_s`` of
    training, from the same state, so what it learns is unchanged.

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` at a validation only in a step
    where it also saves a top-k checkpoint (never, with ``save_top_k=0``): runs killed on the H100 after
    many validations (ListOps, Pathfinder) had no ``last.ckpt`` to resume from. As a ``Checkpoint``,
    Lightning runs this after the other callbacks (the best-checkpoint one included), so the file records
    their state at this step.
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | Path, best: BestCheckpoint, every_s: float = 0.0):
        self.dirpath = Path(dirpath)
        self.best = best
        self.every_s = every_s
        self.last_model_path = ""
        self.saved_step = -1  # the step of the last write of last.ckpt by this process
        self.saved_at = time.monotonic()  # when it was written (the start: the first write waits every_s too)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        # rank 0's clock decides for every rank: a save that some ranks skip would hang the others at its barrier
        if trainer.strategy.broadcast(time.monotonic() - self.saved_at >= self.every_s):
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self.saved_step:
            return
        path = self.dirpath / self.FILENAME
        trainer.save_checkpoint(path, weights_only=False)  # False: the whole training state, to resume from
        self.best.remove_superseded(trainer)
        trainer.strategy.barrier("last_checkpoint")
        self.saved_step = trainer.global_step
        self.saved_at = time.monotonic()
        self.last_model_path = str(path)


class RandomStateCheckpoint(L.Callback):
    """Saves and restores the torch (CPU and CUDA) and Python random states with each checkpoint, so a
    resumed run draws the same dropout masks as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def checkpoint_writers(directory: Path, last_every_s: float = 0.0) -> tuple[BestCheckpoint, LastCheckpoint]:
    """A run's checkpoint callbacks: the best by val/acc (``best-step<N>.ckpt``) and ``last.ckpt`` (after a
    validation at most every ``last_every_s`` seconds), in ``directory``."""
    best = BestCheckpoint(dirpath=directory, filename="best-step{step}", monitor="val/acc", mode="max",
                          save_top_k=1, auto_insert_metric_name=False)
    return best, LastCheckpoint(directory, best, last_every_s)


def checkpoint_callbacks(trainer: L.Trainer) -> tuple[BestCheckpoint, LastCheckpoint]:
    """The (best, last) checkpoint callbacks of a run's trainer."""
    (best,) = (cb for cb in trainer.callbacks if isinstance(cb, BestCheckpoint))
    (last,) = (cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint))
    return best, last


def checkpoint_paths(trainer: L.Trainer, resume_from: Path | None) -> dict[str, str]:
    """The run's best and last checkpoints (the last: the one it resumed from if it wrote none)."""
    best, last = checkpoint_callbacks(trainer)
    return {"best": best.best_model_path, "last": last.last_model_path or str(resume_from or "")}


def named_checkpoints(checkpoint: dict[str, Any]) -> set[str]:
    """The file names of the best checkpoints that a checkpoint's ModelCheckpoint state refers to."""
    names = set()
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith(ModelCheckpoint.__qualname__):
            paths = [state.get("best_model_path"), state.get("kth_best_model_path"), *state.get("best_k_models", {})]
            names |= {Path(path).name for path in paths if path}
    return names


def remove_orphans(directory: Path, resume_from: Path, checkpoint: dict[str, Any]) -> list[Path]:
    """Remove what a killed process left in a run's checkpoint folder; returns what was removed.

    Resuming from ``last.ckpt``, the folder keeps it and the best checkpoints it names; other best checkpoints
    (written just before the kill) would otherwise collide with the resumed run's own (``-v1`` names). From any
    other checkpoint only temporary files and digests without a checkpoint go: the others may be wanted.
    """
    removed = remove_dead_partials(directory, ".*.partial-*")
    keep = named_checkpoints(checkpoint) | {resume_from.name, "last.ckpt"}
    for path in sorted(directory.iterdir()):
        stray_best = resume_from.name == "last.ckpt" and path.suffix == ".ckpt" and path.name not in keep
        checkpoint_of = path.with_name(path.name.removesuffix(DIGEST_SUFFIX))
        lone_digest = path.name.endswith(DIGEST_SUFFIX) and not checkpoint_of.exists()
        if stray_best or lone_digest:
            path.unlink()
            removed.append(path)
    for path in removed:
        if path.suffix == ".ckpt":
            digest_path(path).unlink(missing_ok=True)
    return removed

