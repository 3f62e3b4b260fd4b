"""Target matrices of the sparse-approximation sweep: row-stochastic, exactly ``s`` non-zeros in every row and
every column, stored sparsely as ``(L, s)`` column indices and weights."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

PATTERNS = ("random", "banded", "block", "permutation")
REPAIR_ATTEMPTS = 100  # swap rounds before a random support is drawn again; a round fixes nearly all collisions


@dataclass(frozen=True)
class Target:
    """``A[i, columns[i, t]] = weights[i, t]``; every other entry is 0. Rows sum to 1."""

    pattern: str
    nonzeros: int
    columns: torch.Tensor  # (L, s) int64, distinct within a row
    weights: torch.Tensor  # (L, s), positive, rows sum to 1

    @property
    def length(self) -> int:
        return self.columns.shape[0]

    def dense(self) -> torch.Tensor:
        """The L x L matrix (for tests and small checks)."""
        matrix = torch.zeros(self.length, self.length, dtype=self.weights.dtype, device=self.weights.device)
        return matrix.scatter_(1, self.columns, self.weights)

    def support(self) -> torch.Tensor:
        """(L, L) bool, True on the non-zeros."""
        mask = torch.zeros(self.length, self.length, dtype=torch.bool, device=self.columns.device)
        return mask.scatter_(1, self.columns, True)


def stable_seed(*parts: object) -> int:
    """A seed from labels that is the same in every process (Python's ``hash`` of a string is not)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def make_target(pattern: str, nonzeros: int, length: int, seed: int, weight_range: tuple[float, float],
                dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Target:
    """One target: its support by ``pattern``, its weights uniform in ``weight_range`` then normalised per row.

    ``random``: a uniformly drawn permutation per non-zero of a row, collisions within a row repaired by swaps
    (an s-regular bipartite support; for s = 1 a uniform random permutation). ``banded``: the cyclic band
    ``j = i + t - s//2 (mod L)``. ``block``: ``L/s`` diagonal blocks of ``s x s``. ``permutation``: the
    reversal ``j = L - 1 - i`` (s = 1 only).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r}; valid: {', '.join(PATTERNS)}")
    if not 1 <= nonzeros <= length:
        raise ValueError(f"{pattern}: s={nonzeros} non-zeros per row needs 1 <= s <= L={length}")
    low, high = weight_range
    if not 0 < low <= high:
        raise ValueError(f"weight_range must be 0 < low <= high, got {list(weight_range)}")
    rng = np.random.default_rng(stable_seed("target", pattern, nonzeros, length, seed))
    columns = _support(pattern, nonzeros, length, rng)
    weights = rng.uniform(low, high, size=columns.shape)
    weights /= weights.sum(1, keepdims=True)
    return Target(pattern, nonzeros, torch.from_numpy(columns).to(device),
                  torch.from_numpy(weights).to(device=device, dtype=dtype))


def _support(pattern: str, s: int, length: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.arange(length)[:, None]
    offsets = np.arange(s)[None, :]
    if pattern == "banded":
        return (rows + offsets - s // 2) % length
    if pattern == "block":
        if length % s:
            raise ValueError(f"block: s={s} must divide L={length}")
        return rows // s * s + offsets
    if pattern == "permutation":
        if s != 1:
            raise ValueError(f"permutation has one non-zero per row, got s={s}")
        return length - 1 - rows
    return _random_regular(s, length, rng)


def _random_regular(s: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """s permutations stacked as columns, each repaired until no row holds a column twice."""
    columns = np.empty((length, s), dtype=np.int64)
    for t in range(s):
        columns[:, t] = _permutation_avoiding(columns[:, :t], length, rng)
    return columns


def _permutation_avoiding(taken: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    for _ in range(REPAIR_ATTEMPTS):
        perm = rng.permutation(length)
        for _ in range(REPAIR_ATTEMPTS):
            clashes = np.flatnonzero((taken == perm[:, None]).any(1))
            if clashes.size == 0:
                return perm
            for i in clashes:  # swap with a random row when neither row clashes afterwards
                j = rng.integers(length)
                if perm[j] not in taken[i] and perm[i] not in taken[j]:
                    perm[i], perm[j] = perm[j], perm[i]
    raise RuntimeError(f"could not draw a support with {taken.shape[1] + 1} non-zeros per row at L={length}")
