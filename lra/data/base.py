"""What every task hands the model: a ``TaskSpec`` and batches of one fixed form.

A batch is a dict:
    ``inputs``: ``(B, N)`` int64 token ids or float32 values; ``(B, 2, N)`` for dual tasks (Retrieval:
        two documents per example). Token ids use 0 for padding on every task that pads (ListOps,
        Text, Retrieval); on tasks that never pad (Image and Pathfinder as 256-way pixel tokens) id 0
        is the black pixel. ``N`` is ``spec.max_length`` unless the task trims batches (below).
    ``padding_mask``: same shape as ``inputs``, ``True`` where the position is padding. Absent when the
        batch holds no padding: always on tasks that never pad (Image, Pathfinder, TaylorShift's
        ListOps), and on trimmed batches whose examples all have one length. The model treats
        ``None`` as "attend everywhere", so attention can take its mask-free fast path.
    ``labels``: ``(B,)`` int64.

Trimming: a batch is cut to its longest example, rounded up to ``pad_multiple`` positions, so ``N`` varies
from batch to batch. Padding sits at the end and no backend lets a padded key reach a real position
(``tests/attention/test_contract.py``), so a trimmed batch gives the predictions of the full-length one, up
to rounding (kernels see other shapes).
Evaluation trims (``trim_eval``, on for ListOps, Text and Retrieval): its batches come from the split
sorted by length, so each is cut close to its own examples' length. Training trims with ``trim_padding``
(uniform random batches cut to their longest example) or ``bucket`` (length-bucketed batches, cut to their
longest: most padding goes), both off by default: bucketing changes the mix of examples within a batch,
and either changes the shapes that dropout draws masks for, so a run is no longer the faithful one. On CUDA
the model removes padding without either (``model.unpad``: every layer on real tokens, packed) where the
attention backend can, keeping the sampler's batches.

Splits live in a prepared cache (``lra.data.cache``): per split, ``inputs`` ``(n, [2,] N)`` (the task's
stored values, e.g. raw bytes), ``lengths`` ``(n, [2])`` and ``labels`` ``(n,)``, memory-mapped, so
workers share pages. A token id is the stored value plus the task's ``id_offset`` at real positions and
0 at padding (Text and Retrieval store raw bytes and add 1, as tfds' ``ByteTextEncoder`` does, so the
cache stays one byte per position).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lra.data import cache
from lra.data.errors import DataError
from lra.data.loader import ResumableBatchSampler, ResumableDataLoader

SPLITS = ("train", "val", "test")
POOL_BATCHES = 50  # length bucketing sorts pools of this many batches: lengths vary little within a batch


@dataclass(frozen=True)
class TaskSpec:
    """What the model must know about a task's inputs and outputs."""

    name: str
    num_classes: int
    max_length: int  # positions per document
    vocab_size: int | None  # token ids 0..vocab_size-1 with 0 = padding; None for float inputs
    dual: bool = False  # two documents per example (Retrieval)
    pads: bool = True  # whether a batch can carry a padding mask
    fixed_length: bool = True  # whether unpadded batches all have max_length positions (not TaylorShift's ListOps)


@dataclass(frozen=True)
class TrainingShape:
    """What the compile rule (``ModelConfig.compile_mode``) needs to know of a task's training batches: whether
    they all have one width, and the share of their positions that hold real tokens (1.0 when nothing pads)."""

    fixed_width: bool
    fill: float


@dataclass(frozen=True)
class BatchForm:
    """How stored arrays become a batch: id shift, float scaling, trimming."""

    id_offset: int = 0
    float_inputs: bool = False  # values / 255 as float32 (pixels)
    trim: bool = False
    pad_multiple: int = 1


class CachedSplit(Dataset):
    """One split of a prepared cache, memory-mapped; fetched a whole batch at a time."""

    def __init__(self, directory: Path, split: str, spec: TaskSpec, form: BatchForm = BatchForm()):
        self.inputs = np.load(directory / f"{split}.inputs.npy", mmap_mode="r")
        self.lengths = np.load(directory / f"{split}.lengths.npy", mmap_mode="r")
        self.labels = np.load(directory / f"{split}.labels.npy", mmap_mode="r")
        if not (len(self.inputs) == len(self.lengths) == len(self.labels)):
            raise cache.CorruptCacheError(
                f"cache {directory} split {split}: arrays disagree in length; delete it and prepare again"
            )
        self.spec = spec
        self.form = form

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        order = np.sort(np.asarray(indices))  # sorted reads are sequential on the memory map
        back = np.argsort(np.argsort(np.asarray(indices)))
        lengths = torch.from_numpy(np.asarray(self.lengths[order])[back].astype(np.int64))
        stored = np.asarray(self.inputs[order])[back]
        width = stored.shape[-1]
        if self.form.trim:
            longest = int(lengths.max()) if len(lengths) else 0
            width = min(width, -(-max(longest, 1) // self.form.pad_multiple) * self.form.pad_multiple)
            stored = stored[..., :width]
        inputs = torch.from_numpy(np.ascontiguousarray(stored).astype(np.int64))
        padding = torch.arange(width) >= lengths[..., None]
        if self.form.float_inputs:
            inputs = inputs.float().div_(255.0)
        elif self.form.id_offset:
            inputs = inputs.add_(self.form.id_offset).masked_fill_(padding, 0)
        batch = {
            "inputs": inputs,
            "labels": torch.from_numpy(np.asarray(self.labels[order])[back].astype(np.int64)),
        }
        if self.spec.pads and (not self.form.trim or bool(padding.any())):
            batch["padding_mask"] = padding
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


class LRADataModule(L.LightningDataModule):
    """Base of every task: ``prepare_data`` builds (or finds and verifies) the cache, ``setup`` maps it.

    Subclasses set ``spec`` and implement ``build_cache() -> Path`` (find or generate the source,
    tokenise, write the cache through ``lra.data.cache.prepared``; return its directory) and
    ``describe_source()`` (what the run record stores about the data). ``validation_split`` names the
    split that serves as validation ("test" for IMDB under LRA's protocol); ``form`` says how stored
    arrays become batches; ``trim_eval`` makes evaluation trim them too, on the split sorted by length;
    ``bucket`` turns on length bucketing of train batches (trimmed).
    """

    spec: TaskSpec
    validation_split: str = "val"
    form: BatchForm = BatchForm()
    trim_eval: bool = False
    bucket: bool = False

    def __init__(
        self,
        *,
        data_dir: str | Path,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"task.batch_size must be at least 1, got {batch_size}")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir: Path | None = None
        self.splits: dict[str, Dataset] = {}

    @classmethod
    def variant_class(cls, options: Mapping[str, object]) -> type[LRADataModule]:
        """The data module that serves a task config: this one, or the one its ``variant`` names."""
        return cls

    def build_cache(self) -> Path:
        raise NotImplementedError

    def describe_source(self) -> dict[str, object]:
        """What the data came from, for the run record (tasks add their source and protocol)."""
        return {"cache": str(self.cache_dir) if self.cache_dir else None}

    def majority_accuracy(self, split: str = "test") -> float:
        """The accuracy of always answering the split's most common label: what a model that learned nothing
        but the label counts scores (ListOps's plateau), so a result near it reads as chance."""
        labels = np.asarray(self.splits[split].labels)
        return float(np.bincount(labels).max() / len(labels))

    def training_shape(self) -> TrainingShape:
        """The training batches' width (one, unless they are trimmed) and fill, over the training split."""
        fixed_width = self.spec.fixed_length and not self._train_form.trim
        lengths = getattr(self.splits.get("train"), "lengths", None)
        if not self.spec.pads or lengths is None or not len(lengths):
            return TrainingShape(fixed_width, 1.0)
        real = np.minimum(np.asarray(lengths), self.spec.max_length)
        return TrainingShape(fixed_width, float(real.mean() / self.spec.max_length))

    def prepare_data(self) -> None:
        # Lightning calls this again for fit and for every test; finding and verifying the cache (its
        # sha256 digests) once per data module is enough.
        if self.cache_dir is None:
            self.cache_dir = self.build_cache()

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        if not self.splits:
            self.splits = {
                s: CachedSplit(self.cache_dir, s, self.spec, self._train_form if s == "train" else self._eval_form)
                for s in cache.splits_in(self.cache_dir)
            }

    @property
    def _train_form(self) -> BatchForm:
        return replace(self.form, trim=True) if self.bucket else self.form

    @property
    def _eval_form(self) -> BatchForm:
        return replace(self.form, trim=True) if self.trim_eval else self.form

    def describe_batches(self) -> str:
        """How training batches are drawn, for the run record's protocol."""
        if self.bucket:
            return (f"length-bucketed: batches of similar length from pools of {POOL_BATCHES} batches, "
                    f"trimmed to their longest example (multiple of {self.form.pad_multiple})")
        trimmed = f", trimmed to their longest example (multiple of {self.form.pad_multiple})" if self.form.trim else ""
        return f"uniform random{trimmed}"

    def replicas(self) -> dict[str, int]:
        """``num_replicas`` and ``rank`` of this process under data-parallel training (1 and 0 alone)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return {"num_replicas": 1, "rank": 0}
        if self.batch_size % trainer.world_size:
            raise DataError(f"task.batch_size={self.batch_size} is the global batch and must divide among the "
                             f"{trainer.world_size} processes; choose a multiple of {trainer.world_size}")
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def train_dataloader(self) -> DataLoader:
        train = self.splits["train"]
        lengths = train.lengths if self.bucket else None
        sampler = ResumableBatchSampler(len(train), self.batch_size, shuffle=True, drop_last=True, seed=self.seed,
                                        lengths=lengths, pool_batches=POOL_BATCHES, **self.replicas())
        return self._loader(train, sampler)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.validation_split)

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def eval_dataloader(self, split: str) -> DataLoader:
        dataset = self.splits[split]
        if self._eval_form.trim:
            # The whole split sorted by length (one pool), so trimming cuts the most.
            sampler = ResumableBatchSampler(len(dataset), self.eval_batch_size, shuffle=False,
                                            lengths=dataset.lengths, pool_batches=len(dataset), **self.replicas())
        else:
            sampler = ResumableBatchSampler(len(dataset), self.eval_batch_size, shuffle=False, **self.replicas())
        return self._loader(dataset, sampler)

    def _loader(self, dataset: Dataset, sampler: ResumableBatchSampler) -> DataLoader:
        return ResumableDataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=_identity,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            # Each new iterator draws a worker seed from this generator; from the global one it would shift
            # the dropout masks of a run resumed inside an epoch against the uninterrupted run.
            generator=torch.Generator().manual_seed(0),
        )


class PaddedTokenDataModule(LRADataModule):
    """A task of token sequences padded to ``max_length`` (ListOps, Text, Retrieval) and the batching options
    they share: ``trim_padding`` or ``bucket`` for training, ``trim_eval``, cut to multiples of ``pad_multiple``."""

    id_offset: ClassVar[int] = 0  # added to the stored values at real positions (Text, Retrieval store bytes: 1)

    def __init__(self, *, trim_padding: bool = False, trim_eval: bool = True, bucket: bool = False,
                 pad_multiple: int = 64, **common: Any):
        super().__init__(**common)
        self.form = BatchForm(id_offset=self.id_offset, trim=trim_padding, pad_multiple=pad_multiple)
        self.trim_eval = trim_eval
        self.bucket = bucket


def storage_order(count: int, split: str) -> np.ndarray:
    """A fixed pseudo-random order for sources that list examples class by class (aclImdb and image
    folders): stored in it, any prefix of a split (``limit_val_batches``, a partial evaluation) is a
    fair sample instead of one class."""
    return np.random.default_rng(zlib.crc32(split.encode())).permutation(count)


def first_with(candidates: list[Path], *required: str) -> Path | None:
    """The first candidate folder that holds every ``required`` file (relative paths)."""
    return next((c for c in candidates if all((c / r).is_file() for r in required)), None)


def release_candidates(source_dir: Path | None, data_dir: Path, subfolder: str) -> list[Path]:
    """Where a task's folder of the LRA release may be: the configured source (the release root or the
    task's folder itself), then ``<data_dir>/raw`` as ``fetch lra_release`` leaves it."""
    raw = data_dir / "raw"
    candidates = [
        raw / "lra_release" / subfolder,
        raw / "lra_release" / "lra_release" / subfolder,
        raw / subfolder,
    ]
    if source_dir is not None:
        candidates[:0] = [source_dir / subfolder, source_dir / "lra_release" / subfolder, source_dir]
    return candidates


TASKS: dict[str, type[LRADataModule]] = {}  # filled by ``register_task`` as ``lra.data`` imports the task modules


def register_task(name: str) -> Callable[[type[LRADataModule]], type[LRADataModule]]:
    """Class decorator: the data module of task ``name`` (``task=NAME``, ``conf/task/NAME.yaml``)."""

    def register(cls: type[LRADataModule]) -> type[LRADataModule]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is registered twice: {TASKS[name].__module__} and {cls.__module__}")
        TASKS[name] = cls
        return cls

    return register
