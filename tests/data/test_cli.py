"""``python -m lra.data``: prepare, generate and fetch from the command line; short errors."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.conf import CONF_DIR
from lra.data import TASKS, task_options
from lra.data.__main__ import main

from .fixtures import write_imdb


def test_prepare_composes_the_task_config_with_overrides(tmp_path: Path, capsys, hf_home):
    write_imdb(tmp_path / "src")
    code = main(
        [
            "prepare",
            "task=text",
            f"task.source_dir={tmp_path / 'src'}",
            "task.max_length=1000",
            f"paths.data_dir={tmp_path / 'data'}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "task text: cache" in out and "first 1000 bytes" in out
    assert len(list((tmp_path / "data" / "cache").glob("text-*"))) == 1


def test_generate_listops_prints_its_statistics(tmp_path: Path, capsys):
    code = main(
        [
            "generate",
            "listops",
            "seed=3",
            "num_train=30",
            "num_val=5",
            "num_test=5",
            "max_depth=4",
            "max_args=4",
            "min_length=5",
            "max_length=50",
            "workers=1",
            f"out={tmp_path / 'gen'}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "labels:" in out and "operators: [MAX:" in out
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == [
        "basic_test.tsv",
        "basic_train.tsv",
        "basic_val.tsv",
        "generation.json",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "task=nope"], "task=nope: no such config; task: image, listops, listops_small, pathfinder"),
        (["prepare"], "prepare needs task=NAME; tasks: image, listops, pathfinder, retrieval, text"),
        (["prepare", "task=text", "colour=red"], "colour: no such key\nthe config has: paths, seed, task"),
        (["prepare", "task=text", "task.max_lenght=9"], "task.max_lenght: no such key; did you mean max_length?"),
        (["prepare", "task=text", "seed"], "'seed' is not KEY=VALUE"),
        (["generate", "listops"], "generate listops needs seed=N"),
        (["generate", "listops", "seed=x"], "seed must be an integer"),
        (["fetch", "mnist"], "nothing to fetch called 'mnist'"),
        (["fetch", "imdb", "--force"], "'--force' is not KEY=VALUE"),
        (["pull", "imdb"], "'pull imdb': commands are fetch, prepare, generate listops, generate pathfinder"),
    ],
)
def test_bad_commands_give_one_short_error(argv, message, capsys, tmp_path: Path):
    assert main([*argv, f"paths.data_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 2


def test_missing_data_is_one_message_without_traceback(tmp_path: Path, hf_home):
    result = subprocess.run(
        [sys.executable, "-m", "lra.data", "prepare", "task=retrieval", f"paths.data_dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Looked in:" in result.stderr and "python -m lra.data fetch lra_release" in result.stderr


@pytest.mark.parametrize(
    "config",
    sorted(
        p.stem
        for p in (CONF_DIR / "task").glob("*.yaml")
        if p.stem in ("listops", "listops_small", "text", "retrieval", "image")
    ),
)
def test_task_configs_set_only_known_options(config: str):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        task = OmegaConf.to_container(compose(overrides=[f"+task={config}"]).task)
    assert task["name"] in TASKS
    assert set(task) <= task_options(task["name"])


def test_generate_pathfinder_dispatches_to_the_pathfinder_generator(tmp_path: Path, monkeypatch, capsys):
    import lra.data.generate

    calls = []

    def generate_dataset(
        out_root: Path, resolution: int, difficulty: str, num_images: int, seed: int, workers: int
    ) -> Path:
        calls.append((out_root, resolution, difficulty, num_images, seed, workers))
        return out_root / f"pathfinder{resolution}"

    fake = types.SimpleNamespace(generate_dataset=generate_dataset)
    monkeypatch.setitem(sys.modules, "lra.data.generate.pathfinder", fake)
    monkeypatch.setattr(lra.data.generate, "pathfinder", fake, raising=False)
    code = main(
        [
            "generate",
            "pathfinder",
            "resolution=64",
            "difficulty=easy",
            "num_images=10",
            "seed=4",
            "workers=2",
            f"out={tmp_path}",
        ]
    )
    assert code == 0 and calls == [(tmp_path, 64, "easy", 10, 4, 2)]
    assert str(tmp_path / "pathfinder64") in capsys.readouterr().out
