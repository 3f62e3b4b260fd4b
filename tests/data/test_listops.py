"""ListOps: the release TSV format, LRA's tokenisation, the generators' rules (the TaylorShift data module:
test_listops_taylorshift.py)."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lra.data import create
from lra.data.errors import DataError, DataNotFoundError
from lra.data.generate.listops import (
    END,
    LRA_OPERATORS,
    TAYLORSHIFT_OPERATORS,
    ListOpsSettings,
    evaluate_tokens,
    generate,
    generate_tree,
    taylorshift_batch,
    to_string,
)
from lra.data.listops import TOKEN_ID, read_tsv

# Two rows as the released script writes them: every pair bracketed, header Source<TAB>Target.
RELEASE_ROWS = [
    ("( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) ] )", 9),
    ("( ( ( [SM 5 ) 6 ) ] )", 1),
    ("( ( ( ( [MED 1 ) 3 ) 8 ) ] )", 3),
]


def write_release(folder: Path, rows=RELEASE_ROWS, header: str = "Source\tTarget") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        body = "".join(f"{expression}\t{label}\n" for expression, label in rows)
        (folder / f"basic_{split}.tsv").write_text(f"{header}\n{body}")
    return folder


def datamodule(tmp_path: Path, **options):
    config = {"name": "listops", "batch_size": 2, **options}
    return create(config, data_dir=tmp_path / "data", seed=0)


def test_release_tsv_is_tokenised_as_lras_pipeline(tmp_path: Path):
    write_release(tmp_path / "lra_release" / "listops-1000")
    dm = datamodule(tmp_path, source="release", source_dir=str(tmp_path / "lra_release"), max_length=12)
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["train"].__getitems__([0, 1, 2])
    ids = {token: TOKEN_ID[token] for token in ("[MAX", "[MIN", "[SM", "[MED", "]")}
    first = [ids["[MAX"], 3, 10, ids["[MIN"], 5, 8, ids["]"], ids["]"]]  # digits d -> id d + 1
    assert batch["inputs"][0].tolist() == first + [0] * 4
    assert batch["inputs"][1, :5].tolist() == [ids["[SM"], 6, 7, ids["]"], 0]
    assert batch["labels"].tolist() == [9, 1, 3]
    assert batch["padding_mask"][0].tolist() == [False] * 8 + [True] * 4
    assert batch["padding_mask"][2].sum() == 12 - 5
    assert dm.spec.vocab_size == 16 and dm.spec.pads
    assert dm.describe_source()["data_source"] == (
        "user-supplied ListOps TSVs (9 rows: train 3, val 3, test 3; the release has train 96,000, val 2,000, "
        "test 2,000)")


def test_the_paper_time_tokenizer_drops_every_bracket_and_keeps_a_cache_of_its_own(tmp_path: Path):
    """task.tokenizer=lra_2020: as tfds' Tokenizer of LRA's code at f866e43, only the operators and digits are
    left ("[MAX 2 9 ]" reads "MAX 2 9"); the default's cache is not touched, the data label says which."""
    write_release(tmp_path / "lra_release" / "listops-1000")
    options = dict(source="release", source_dir=str(tmp_path / "lra_release"), max_length=12)
    released, paper_time = (datamodule(tmp_path, tokenizer=tokenizer, **options) for tokenizer in ("lra", "lra_2020"))
    for dm in (released, paper_time):
        dm.prepare_data()
        dm.setup()
    assert released.cache_dir != paper_time.cache_dir
    ids = {token: TOKEN_ID[token] for token in ("[MAX", "[MIN", "[SM", "[MED")}
    batch = paper_time.splits["train"].__getitems__([0, 1, 2])
    assert batch["inputs"][0].tolist()[:7] == [ids["[MAX"], 3, 10, ids["[MIN"], 5, 8, 0]
    assert batch["inputs"][1].tolist()[:4] == [ids["[SM"], 6, 7, 0]
    assert batch["labels"].tolist() == [9, 1, 3]
    kept = released.splits["train"].__getitems__([0, 1, 2])["inputs"]
    assert kept[kept != 0].tolist().count(TOKEN_ID["]"]) == 4 and TOKEN_ID["]"] not in batch["inputs"].tolist()
    assert paper_time.describe_source()["data_source"].endswith(
        "; tokenized as LRA's 2020 pipeline (brackets dropped)")
    assert "tokenized" not in released.describe_source()["data_source"]
    with pytest.raises(ValueError, match="task.tokenizer must be one of lra, lra_2020, not 'tfds'"):
        datamodule(tmp_path, tokenizer="tfds")
    with pytest.raises(ValueError, match="task.tokenizer does not apply"):
        datamodule(tmp_path, variant="taylorshift", tokenizer="lra_2020")


def test_only_the_released_row_counts_are_called_the_release(tmp_path: Path):
    """96,000 / 2,000 / 2,000 rows, and no generation.json: the release; the same cache reused says so too."""
    folder = tmp_path / "lra_release" / "listops-1000"
    folder.mkdir(parents=True)
    for split, count in (("train", 96_000), ("val", 2_000), ("test", 2_000)):
        rows = "".join(f"{RELEASE_ROWS[i % 3][0]}\t{RELEASE_ROWS[i % 3][1]}\n" for i in range(count))
        (folder / f"basic_{split}.tsv").write_text(f"Source\tTarget\n{rows}")
    for _ in range(2):
        dm = datamodule(tmp_path, source="release", source_dir=str(tmp_path / "lra_release"), max_length=4)
        dm.prepare_data()
        assert dm.describe_source()["data_source"] == "LRA release listops-1000 TSVs"


def test_truncation_to_max_length(tmp_path: Path):
    write_release(tmp_path / "rel")
    dm = datamodule(tmp_path, source="release", source_dir=str(tmp_path / "rel"), max_length=3)
    dm.prepare_data()
    dm.setup()
    batch = dm.splits["test"].__getitems__([0])
    assert batch["inputs"].shape == (1, 3) and "padding_mask" not in batch  # trimmed: no padding left, no mask


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("Source,Target", RELEASE_ROWS, ":1: expected the header"),
        ("Source\tTarget", [("( [MIN 1 ] )", 12)], ":2: expected 'expression<TAB>digit'"),
        (
            "Source\tTarget",
            [*RELEASE_ROWS, ("( ( [MIN 1 ) [FIRST ] )", 1)],
            ":5: unknown ListOps token '[FIRST'",
        ),
    ],
)
def test_corrupt_tsv_is_reported_with_file_and_line(tmp_path: Path, header, rows, message):
    write_release(tmp_path / "rel", rows=rows, header=header)
    dm = datamodule(tmp_path, source="release", source_dir=str(tmp_path / "rel"))
    with pytest.raises(DataError, match=re.escape(message)) as error:
        dm.prepare_data()
    assert "basic_train.tsv" in str(error.value)


def test_missing_release_says_where_it_looked_and_how_to_fetch(tmp_path: Path):
    dm = datamodule(tmp_path, source="release")
    with pytest.raises(DataNotFoundError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert "raw/lra_release/listops-1000" in message and "python -m lra.data fetch lra_release" in message


def test_a_wrong_source_dir_is_reported_not_replaced_by_generation(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="ListOps release TSVs"):
        datamodule(tmp_path, source_dir=str(tmp_path / "nowhere")).prepare_data()


def _depth_and_arity(tokens: list[str]) -> tuple[int, list[int]]:
    depth, deepest, stack, arities = 0, 0, [], []
    for token in tokens:
        if token.startswith("["):
            depth += 1
            deepest = max(deepest, depth)
            if stack:
                stack[-1] += 1
            stack.append(0)
        elif token == END:
            arities.append(stack.pop())
            depth -= 1
        else:
            stack[-1] += 1
    return deepest, arities


def test_lra_generator_statistics():
    """A few thousand samples with LRA's settings: the released script's rules hold on every one."""
    examples = generate(2000, ListOpsSettings(), seed=1, workers=1)
    assert len({e for e, _ in examples}) == 2000  # no duplicates
    operators, labels = Counter(), Counter()
    for expression, label in examples:
        tokens = expression.replace("(", " ").replace(")", " ").split()
        assert 500 < len(tokens) < 2000
        deepest, arities = _depth_and_arity(tokens)
        assert deepest <= 9  # operators at depth 1..9: a node at depth 10 is always a digit
        assert all(2 <= a <= 10 for a in arities)
        assert evaluate_tokens(tokens) == label
        operators.update(t for t in tokens if t.startswith("["))
        labels[label] += 1
    assert set(operators) == set(LRA_OPERATORS)
    shares = np.array([operators[o] for o in LRA_OPERATORS]) / sum(operators.values())
    assert np.all(np.abs(shares - 0.25) < 0.02)  # random.choice over four operators
    print("label distribution:", {k: f"{v / 2000:.1%}" for k, v in sorted(labels.items())})
    assert set(labels) <= set(range(10)) and len(labels) == 10


def test_lra_generator_keeps_the_released_bracketing():
    rng = random.Random(3)
    tree, length = generate_tree(rng, 1, ListOpsSettings(max_depth=3, max_args=3))
    while length < 4:
        tree, length = generate_tree(rng, 1, ListOpsSettings(max_depth=3, max_args=3))
    text = to_string(tree)
    tokens = text.split()
    assert tokens.count("(") == tokens.count(")") and tokens[0] == "("
    assert len([t for t in tokens if t not in "()"]) == length


def test_generation_does_not_depend_on_worker_count():
    settings = ListOpsSettings(max_depth=4, max_args=4, min_length=5, max_length=40)
    assert generate(1200, settings, seed=7, workers=1) == generate(1200, settings, seed=7, workers=2)
    assert generate(1200, settings, seed=7, workers=1) != generate(1200, settings, seed=8, workers=1)


def test_generated_source_is_written_in_release_format_and_reused(tmp_path: Path):
    options = {
        "source": "generate",
        "max_length": 64,
        "num_train": 40,
        "num_val": 8,
        "num_test": 8,
        "generator": {"max_depth": 4, "max_args": 4, "min_length": 6, "max_length": 64},
        "generator_workers": 1,
    }
    dm = datamodule(tmp_path, **options)
    dm.prepare_data()
    files = dm.describe_source()["files"]
    rows = read_tsv(Path(files["train"]))
    assert len(rows) == 40 and (Path(files["train"]).parent / "generation.json").is_file()
    again = datamodule(tmp_path, **options)
    again.prepare_data()
    assert again.cache_dir == dm.cache_dir and again.describe_source()["files"] == files
    pointed = datamodule(tmp_path, source_dir=str(Path(files["train"]).parent), max_length=64)
    pointed.prepare_data()
    # what the data is, not where it lies: the label of the folder the module generated itself
    assert pointed.describe_source()["data_source"] == again.describe_source()["data_source"] == (
        "generated with LRA's released listops rules (seed 0, 40/8/8)")


def test_taylorshift_trees_have_the_drawn_length_and_their_values():
    settings = ListOpsSettings(operators=TAYLORSHIFT_OPERATORS, min_length=40, max_length=120)
    seen = Counter()
    for seed in range(40):
        length, trees = taylorshift_batch(random.Random(seed), 3, settings)
        assert 40 <= length <= 120
        for tokens, value in trees:
            assert len(tokens) == length
            assert evaluate_tokens(tokens, upper_median=True) == value
            _, arities = _depth_and_arity(tokens)
            assert all(2 <= a <= 10 for a in arities)  # (depth is not capped: see generate/listops.py)
            seen.update(t for t in tokens if t.startswith("["))
    assert set(seen) == set(TAYLORSHIFT_OPERATORS)


def test_upper_median_differs_from_lras_median():
    tokens = ["[MED", "1", "2", "7", "8", "]"]
    assert evaluate_tokens(tokens, upper_median=True) == 7
    assert evaluate_tokens(tokens) == 4  # int(np.median) = int(4.5)


def test_unknown_variant_and_options_are_named(tmp_path: Path):
    with pytest.raises(ValueError, match="task.variant must be one of lra, taylorshift"):
        datamodule(tmp_path, variant="long")
    with pytest.raises(ValueError, match="unknown operator"):
        datamodule(tmp_path, generator={"operators": ["[MIN", "[AVG"]})
