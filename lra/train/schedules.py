"""Learning-rate schedules as ``LambdaLR`` multipliers of the optimizer's base lr.

Each factory takes ``(optimizer, total_steps)`` (the trainer's ``max_steps``) plus its own settings
from ``conf/scheduler/*.yaml``. The multiplier at step s is applied to the update of step s, counted
from 0 as LRA's training loop does (so its first update runs at lr 0 under linear warm-up).
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0


def _constant(step: int, warmup_steps: int) -> float:
    return _warmup(step, warmup_steps)


def _cosine(step: int, warmup_steps: int, cycle_steps: int, min_ratio: float) -> float:
    progress = max(0.0, (step - warmup_steps) / cycle_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return _warmup(step, warmup_steps) * (min_ratio + (1.0 - min_ratio) * cosine)


def _lra_cosine(step: int, warmup_steps: int, cycle_steps: int) -> float:
    # lra_benchmarks/utils/train_utils.py: cosine of the progress modulo 1, floored at 0
    progress = max(0.0, (step - warmup_steps) / cycle_steps)
    return _warmup(step, warmup_steps) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * (progress % 1.0))))


def _linear(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    remaining = max(0.0, 1.0 - max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
    return _warmup(step, warmup_steps) * (min_ratio + (1.0 - min_ratio) * remaining)


def _rsqrt(step: int, warmup_steps: int) -> float:
    # LRA: base * min(1, step/warmup) / sqrt(max(step, warmup)); the base lr is the nominal one (e.g. 0.05)
    return _warmup(step, warmup_steps) / math.sqrt(max(step, warmup_steps, 1))


def constant(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warm-up, then the base lr."""
    return LambdaLR(optimizer, partial(_constant, warmup_steps=warmup_steps))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0,
                  cycle_steps: int | None = None) -> LambdaLR:
    """Linear warm-up, then half a cosine down to ``min_lr_ratio`` over ``cycle_steps`` (default: the rest)."""
    cycle = cycle_steps or max(1, total_steps - warmup_steps)
    return LambdaLR(optimizer, partial(_cosine, warmup_steps=warmup_steps, cycle_steps=cycle, min_ratio=min_lr_ratio))


def lra_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, cycle_steps: int | None = None
               ) -> LambdaLR:
    """LRA's ``constant * linear_warmup * cosine_decay`` (Image, Pathfinder), cycle = total steps by default."""
    return LambdaLR(optimizer, partial(_lra_cosine, warmup_steps=warmup_steps, cycle_steps=cycle_steps or total_steps))


def linear(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up, then linear decay to ``min_lr_ratio`` at ``total_steps``."""
    return LambdaLR(optimizer, partial(_linear, warmup_steps=warmup_steps, total_steps=total_steps,
                                       min_ratio=min_lr_ratio))


def rsqrt(optimizer: Optimizer, total_steps: int, warmup_steps: int = 1000) -> LambdaLR:
    """LRA's ``constant * linear_warmup * rsqrt_decay`` (ListOps, Text, Retrieval)."""
    return LambdaLR(optimizer, partial(_rsqrt, warmup_steps=warmup_steps))
