"""ListOps expressions, generated as LRA's released script does (lra_benchmarks/data/listops.py).

Rules of the released script: the root is at depth 1; a node below ``max_depth`` is an operator with
probability 0.25 (else a digit), a node at ``max_depth`` is always a digit; an operator takes
``random.randint(2, max_args)`` arguments (bounds inclusive); operators MIN, MAX, MED (``int(median)``)
and SM (sum mod 10); the length counts operators, ``]`` and digits (not parentheses) and a tree is kept
only when ``min_length < length < max_length``; duplicates are dropped. Trees are written with the
released bracketing: every (left, right) pair in ``( ... )``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

MIN, MAX, MED, SUM_MOD, FIRST, LAST, END = "[MIN", "[MAX", "[MED", "[SM", "[FIRST", "[LAST", "]"
LRA_OPERATORS = (MIN, MAX, MED, SUM_MOD)
OPERATOR_PROBABILITY = 0.25  # the released script's VALUE_P: r > 0.25 makes a digit


@dataclass(frozen=True)
class ListOpsSettings:
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500  # exclusive, as released
    max_length: int = 2000  # exclusive, as released
    operators: tuple[str, ...] = LRA_OPERATORS


def generate_tree(rng: random.Random, depth: int, settings: ListOpsSettings):
    """A random expression tree and its length (released script's ``generate_tree``)."""
    r = rng.random() if depth < settings.max_depth else 1.0
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
    if isinstance(tree, str):
        return tree
    if isinstance(tree, int):
        return str(tree)
    return "( " + to_string(tree[0]) + " " + to_string(tree[1]) + " )"


def evaluate(tree) -> int:
    """The value of an expression tree (released script's ``to_value``)."""
    if not isinstance(tree, tuple):
        return tree
    left, right = evaluate(tree[0]), evaluate(tree[1])
    if isinstance(left, str):  # an operator: start collecting its arguments
        return (left, [right])
    if right == END:
        op, args = left
        if op == MIN:
            return min(args)
        if op == MAX:
            return max(args)
        if op == MED:
            return int(np.median(args))
        if op == SUM_MOD:
            return sum(args) % 10
        if op == FIRST:
            return args[0]
        if op == LAST:
            return args[-1]
        raise ValueError(f"unknown operator {op}")
    return (left[0], left[1] + [right])


def generate(num_samples: int, settings: ListOpsSettings, seed: int) -> list[tuple[str, int]]:
    """``num_samples`` distinct (expression, value) pairs within the length window, in generation order."""
    rng = random.Random(seed)
    seen: dict[object, None] = {}
    while len(seen) < num_samples:
        tree, length = generate_tree(rng, 1, settings)
        if settings.min_length < length < settings.max_length:
            seen.setdefault(tree, None)
    return [(to_string(tree), evaluate(tree)) for tree in seen]
