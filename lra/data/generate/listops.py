"""ListOps expressions: LRA's released generator, and TaylorShift's fixed-length variant.

**LRA** (``lra_benchmarks/data/listops.py``): the root is at depth 1; a node below ``max_depth`` is an
operator with probability 0.25 (``VALUE_P``: ``random() > 0.25`` makes a digit), a node at
``max_depth`` is always a digit; an operator draws ``random.randint(2, max_args)`` arguments (bounds
inclusive), generated first, then its operator by ``random.choice``; operators MIN, MAX, MED
(``int(np.median)``, the mean of the middle pair for an even count, truncated) and SM (sum mod 10); the
length counts operators, ``]`` and digits (not parentheses) and a tree is kept only when
``min_length < length < max_length``; duplicates are dropped. Trees are written with the released
bracketing, every (left, right) pair in ``( ... )``. ``generate_tree`` makes the released script's
calls on its ``random.Random`` in the released order, so a stream seeded like ``random.seed(s)`` gives
the released script's trees. The released script splits a Python ``set`` (hash order); we split in
generation order, which has the same distribution and is reproducible.

Parallel generation: the candidates are drawn in fixed chunks, chunk ``k`` from its own stream
(``Random(f"{seed}:{k}")``), merged in chunk order with duplicates dropped, so the output depends on
(seed, chunk size) and not on the number of worker processes.

**TaylorShift** (Nauen et al. 2024, ``training/datasets/long_listops.py``): operators MIN, MAX, MED,
FIRST, LAST, SM with MED the upper median (``sorted(v)[len(v) // 2]``); each batch draws one length
``L = randint(min_length, max_length)`` (inclusive) and every tree is grown to exactly ``L`` tokens: the
root gets ``randint(2, min(L - 4, max_args))`` digits; while the tree is shorter than ``L - 4`` a digit,
chosen by a weighted descent over the digit counts, becomes an operator with ``randint(2, min(r - 2,
max_args))`` digits (``r`` the tokens still missing); the last tokens are appended as digits to open
argument slots chosen the same way. ``_TaylorShiftTree`` makes their random calls in their order
(their quirks included: a new operator may sit below ``max_depth``; their ``_add_slot`` re-checks one
level too deep and may add nothing), so a stream seeded like ``random.seed(s)`` gives their trees. It
keeps the digit counts up to date instead of recounting the tree at every step (about 15x faster at
500-2000 tokens). A tree that cannot be completed is redrawn (theirs would recurse, or
in a rare case loop forever).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

MIN, MAX, MED, SUM_MOD, FIRST, LAST, END = "[MIN", "[MAX", "[MED", "[SM", "[FIRST", "[LAST", "]"
LRA_OPERATORS = (MIN, MAX, MED, SUM_MOD)
TAYLORSHIFT_OPERATORS = (MIN, MAX, MED, FIRST, LAST, SUM_MOD)  # their list order, for their choice()
OPERATOR_PROBABILITY = 0.25  # the released script's VALUE_P: r > 0.25 makes a digit
CHUNK = 500  # accepted trees per parallel chunk


@dataclass(frozen=True)
class ListOpsSettings:
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500  # LRA: exclusive; TaylorShift: inclusive bound of the drawn length
    max_length: int = 2000  # LRA: exclusive; TaylorShift: inclusive bound of the drawn length
    operators: tuple[str, ...] = field(default=LRA_OPERATORS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", tuple(self.operators))
        if self.max_args < 2 or self.max_depth < 1:
            raise ValueError("listops generator: max_args must be >= 2 and max_depth >= 1")
        if not self.min_length < self.max_length:
            raise ValueError(
                f"listops generator: min_length {self.min_length} must be below max_length {self.max_length}"
            )
        unknown = set(self.operators) - set(TAYLORSHIFT_OPERATORS)
        if unknown:
            raise ValueError(
                f"listops generator: unknown operator(s) {sorted(unknown)}; "
                f"known: {', '.join(TAYLORSHIFT_OPERATORS)}"
            )


def generate_tree(rng: random.Random, depth: int, settings: ListOpsSettings):
    """A random expression tree and its length (the released script's ``generate_tree``)."""
    r = rng.random() if depth < settings.max_depth else 1
    if r > OPERATOR_PROBABILITY:
        return rng.choice(range(10)), 1
    length = 2
    values = []
    for _ in range(rng.randint(2, settings.max_args)):
        subtree, sublength = generate_tree(rng, depth + 1, settings)
        values.append(subtree)
        length += sublength
    tree = (rng.choice(settings.operators), values[0])
    for value in values[1:]:
        tree = (tree, value)
    return (tree, END), length


def to_string(tree) -> str:
    """The released ``to_string``: every pair in ``( ... )``, tokens separated by spaces."""
    parts: list[str] = []

    def walk(node) -> None:
        if isinstance(node, tuple):
            parts.append("(")
            walk(node[0])
            walk(node[1])
            parts.append(")")
        else:
            parts.append(str(node))

    walk(tree)
    return " ".join(parts)


def apply(operator: str, args: list[int]) -> int:
    if operator == MIN:
        return min(args)
    if operator == MAX:
        return max(args)
    if operator == MED:
        return int(np.median(args))
    if operator == SUM_MOD:
        return sum(args) % 10
    if operator == FIRST:
        return args[0]
    if operator == LAST:
        return args[-1]
    raise ValueError(f"unknown operator {operator}")


def evaluate(tree) -> int:
    """The value of an LRA expression tree (the released ``to_value``)."""
    if not isinstance(tree, tuple):
        return tree
    (chain, _end) = tree
    args: list[int] = []
    while isinstance(chain, tuple) and not isinstance(chain[0], str):
        args.append(evaluate(chain[1]))
        chain = chain[0]
    operator, first = chain
    return apply(operator, [evaluate(first), *reversed(args)])


def evaluate_tokens(tokens: list[str], upper_median: bool = False) -> int:
    """The value of a bracket-free token sequence (``[OP a b ... ]``), as the pipeline sees it."""
    stack: list[tuple[str, list[int]]] = []
    value = None
    for token in tokens:
        if token.startswith("["):
            stack.append((token, []))
            continue
        if token == END:
            operator, args = stack.pop()
            value = (
                sorted(args)[len(args) // 2] if upper_median and operator == MED else apply(operator, args)
            )
        else:
            value = int(token)
        if stack:
            stack[-1][1].append(value)
    if stack or value is None:
        raise ValueError("unbalanced ListOps expression")
    return value


def _chunk(task: tuple[int, int, int, ListOpsSettings]) -> list[tuple[str, int]]:
    seed, index, count, settings = task
    rng = random.Random(f"{seed}:{index}")
    kept: dict[str, int] = {}
    while len(kept) < count:
        tree, length = generate_tree(rng, 1, settings)
        if settings.min_length < length < settings.max_length:
            kept.setdefault(to_string(tree), evaluate(tree))
    return list(kept.items())


def _chunks(seed: int, settings: ListOpsSettings, workers: int) -> Iterator[list[tuple[str, int]]]:
    tasks = ((seed, k, CHUNK, settings) for k in range(10**9))
    if workers <= 1:
        yield from map(_chunk, tasks)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending = [pool.submit(_chunk, next(tasks)) for _ in range(2 * workers)]
        while True:
            done = pending.pop(0)
            pending.append(pool.submit(_chunk, next(tasks)))
            yield done.result()


def generate(
    num_samples: int, settings: ListOpsSettings, seed: int, workers: int | None = None
) -> list[tuple[str, int]]:
    """``num_samples`` distinct (expression, value) pairs within the length window (LRA's rules)."""
    workers = workers or os.cpu_count() or 1
    workers = min(workers, -(-num_samples // CHUNK))
    seen: set[bytes] = set()
    examples: list[tuple[str, int]] = []
    for chunk in _chunks(seed, settings, workers):
        for expression, value in chunk:
            digest = hashlib.blake2b(expression.encode(), digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                examples.append((expression, value))
                if len(examples) == num_samples:
                    return examples
    raise AssertionError("unreachable")


class _Operator:
    """A node of a TaylorShift tree; ``entries`` is their ``_numerical_entries`` at its own depth."""

    __slots__ = ("depth", "entries", "items", "operator", "parent")

    def __init__(self, operator: str, depth: int, parent: _Operator | None):
        self.operator = operator
        self.depth = depth
        self.parent = parent
        self.items: list[int | _Operator] = []
        self.entries = 0


class _TaylorShiftTree:
    """TaylorShift's ``MathTree.generate``, making their random calls in their order, with the digit
    counts kept up to date instead of recounted (their ``_numerical_entries``) at every step."""

    def __init__(self, rng: random.Random, settings: ListOpsSettings):
        self.rng = rng
        self.max_args = settings.max_args
        self.max_depth = settings.max_depth
        self.operators = settings.operators

    def new(self, depth: int, parent: _Operator | None) -> _Operator:
        return _Operator(self.rng.choice(self.operators), depth, parent)

    def fill(self, node: _Operator, remaining: int) -> None:
        """Their ``_init_tree_vals`` with ``min_sub_len=4``: 2..min(remaining - 2, max_args) digits."""
        count = self.rng.randint(2, min(remaining - 2, self.max_args))
        node.items = [self.rng.choice(range(10)) for _ in range(count)]
        node.entries = count

    def weighted(self, weights: list[int]) -> int:
        """Their index choice: ``randint(1, sum)``, then the first index whose running sum reaches it."""
        draw = self.rng.randint(1, sum(weights))
        for index, weight in enumerate(weights):
            if draw <= weight:
                return index
            draw -= weight
        raise AssertionError("weights exhausted")

    def add_subtree(self, root: _Operator, remaining: int) -> int:
        """Turn one digit into an operator with digits; returns the tokens added."""
        node = root
        while True:
            weights = [item.entries if isinstance(item, _Operator) else 1 for item in node.items]
            index = self.weighted(weights)
            if not isinstance(node.items[index], _Operator):
                break
            node = node.items[index]
        child = self.new(node.depth + 1, node)
        self.fill(child, remaining)
        node.items[index] = child
        delta = (child.entries if node.depth < self.max_depth else 0) - 1
        while delta:
            node.entries += delta
            if node.parent is None or node.parent.depth >= self.max_depth:
                break
            node = node.parent
        return len(child.items) + 1

    def open_slots(self, node: _Operator, depth: int) -> int:
        slots = self.max_args - len(node.items)
        if depth < self.max_depth:
            slots += sum(self.open_slots(i, depth + 1) for i in node.items if isinstance(i, _Operator))
        return slots

    def add_slot(self, node: _Operator, depth: int) -> bool:
        """Their ``_add_slot``: append a digit to a weighted open slot; False when their re-check
        (done one level too deep) finds none and returns without adding."""
        while True:
            if self.open_slots(node, depth + 1) == 0:
                return False
            weights = [self.max_args - len(node.items)]
            if depth < self.max_depth:
                weights += [
                    self.open_slots(i, depth + 1) if isinstance(i, _Operator) else 0 for i in node.items
                ]
            index = self.weighted(weights)
            if index == 0:
                node.items.append(self.rng.choice(range(10)))
                return True
            node, depth = node.items[index - 1], depth + 1

    def generate(self, length: int) -> _Operator | None:
        root = self.new(1, None)
        size = 2
        while size < length - 4:
            if root.items and root.entries == 0:  # no digit left to grow from: their assert fails
                return None
            if not root.items:
                self.fill(root, length - size)
                size += len(root.items)
            else:
                size += self.add_subtree(root, length - size)
        if size < length and self.open_slots(root, 1) == 0:
            return None
        stalled = 0
        while size < length:
            if self.add_slot(root, 1):
                size, stalled = size + 1, 0
            elif (stalled := stalled + 1) > 1000:  # theirs would loop forever here
                return None
        return root


def _tokens(node: _Operator, out: list[str]) -> None:
    out.append(node.operator)
    for item in node.items:
        if isinstance(item, _Operator):
            _tokens(item, out)
        else:
            out.append(str(item))
    out.append(END)


def _value(node: _Operator) -> int:
    args = [_value(i) if isinstance(i, _Operator) else i for i in node.items]
    if node.operator == MED:
        return sorted(args)[len(args) // 2]  # TaylorShift's upper median
    return apply(node.operator, args)


def taylorshift_tree(rng: random.Random, length: int, settings: ListOpsSettings) -> tuple[list[str], int]:
    """One TaylorShift expression of exactly ``length`` tokens (``MathTree.generate``) and its value."""
    grower = _TaylorShiftTree(rng, settings)
    while (root := grower.generate(length)) is None:
        pass
    tokens: list[str] = []
    _tokens(root, tokens)
    return tokens, _value(root)


def taylorshift_batch(
    rng: random.Random, batch_size: int, settings: ListOpsSettings
) -> tuple[int, list[tuple[list[str], int]]]:
    """One batch as TaylorShift's ``LongListOps`` draws it: one length for the batch, then its trees."""
    length = rng.randint(settings.min_length, settings.max_length)
    return length, [taylorshift_tree(rng, length, settings) for _ in range(batch_size)]
