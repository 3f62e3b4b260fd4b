"""The benchmark end to end on CPU: tiny sweeps through the real config file, checked through its files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.attention import available
from lra.bench.run import config_from, run
from lra.results.bench import COLUMNS

ROOT = Path(__file__).resolve().parents[2]
TINY = ["bench.lengths=[16,48]", "bench.batch_size=2", "bench.heads=2", "bench.head_dim=8",
        "bench.dtype=[fp32,bf16]", "bench.device=cpu", "bench.wandb.enabled=false",
        "bench.timing.warmup=1", "bench.timing.repeats=2"]


def run_bench(tmp_path: Path, overrides: list[str]) -> dict[str, Path]:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("bench", overrides=[*TINY, f"bench.out_dir={tmp_path}", *overrides])
    return run(config_from(OmegaConf.to_container(cfg.bench, resolve=True)), "pytest")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_core_sweep_writes_every_series_and_point(tmp_path, test_backends):
    requested = [*available(), {"backend": "taylorshift", "mode": "direct", "label": "ts-direct"},
                 {"backend": "taylorshift", "mode": "efficient", "label": "ts-efficient"}]
    entries = ",".join(e if isinstance(e, str) else "{" + ",".join(f"{k}:{v}" for k, v in e.items()) + "}"
                       for e in requested)
    paths = run_bench(tmp_path, [f"bench.attention=[{entries}]"])
    columns, rows = read_rows(paths["csv"])
    assert columns == list(COLUMNS)
    labels = [e if isinstance(e, str) else e["label"] for e in requested]
    assert {r["series"] for r in rows} == set(labels)
    assert len(rows) == len(labels) * 2 * 2  # series x lengths x dtypes
    by = {(r["series"], r["head_dim"], r["dtype"], r["length"]): r for r in rows}
    assert by["softmax", "8", "fp32", "16"]["status"] == "ok"
    assert float(by["softmax", "8", "fp32", "16"]["time_ms"]) > 0
    assert all(r["timer"] == "wall_clock" and r["device"] == "cpu" and r["command"] == "pytest" for r in rows)
    # a backend that fails at one size is recorded and the sweep goes on; out of memory stops the series
    failing = by["failing_above_32", "8", "bf16", "48"]
    assert failing["status"] == "error" and "no kernel for length 48" in failing["note"]
    assert by["oom_above_32", "8", "bf16", "48"]["status"] == "oom"
    assert by["ts-direct", "8", "bf16", "48"]["status"] == "ok"
    markdown = paths["markdown"].read_text()
    for label in labels:
        assert label in markdown
    assert "## Crossovers, d=8, bf16" in markdown and "ts-efficient | ts-direct | time | 73 |" in markdown
    plots = sorted(tmp_path.glob("core_fwd_bwd_d*_*.png"))
    assert [p.name for p in plots] == ["core_fwd_bwd_d8_bf16.png", "core_fwd_bwd_d8_fp32.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


def test_slow_series_stop_growing_and_the_budget_skips_the_rest(tmp_path):
    paths = run_bench(tmp_path, ["bench.attention=[softmax]", "bench.stop_above_ms=0", "bench.head_dim=4",
                                 "bench.dtype=fp32"])
    _, rows = read_rows(paths["csv"])
    assert [r["status"] for r in rows] == ["ok", "skipped"] and "stop_above_ms" in rows[1]["note"]
    paths = run_bench(tmp_path, ["bench.attention=[softmax]", "bench.time_budget_s=1e-9",
                                 "bench.name=budget"])
    _, rows = read_rows(paths["csv"])
    assert {r["status"] for r in rows} == {"skipped"} and paths["csv"].name == "budget.csv"
    paths = run_bench(tmp_path, ["bench.attention=[{backend:softmax,up_to:16}]", "bench.name=up_to"])
    _, rows = read_rows(paths["csv"])
    assert {r["length"] for r in rows} == {"16"}


@pytest.mark.parametrize("level", ["layer", "model"])
def test_layer_and_model_levels_report_throughput_against_softmax(tmp_path, level, test_backends):
    series = "bench.attention=[softmax,{backend:taylorshift,mode:direct}]"
    paths = run_bench(tmp_path, [f"bench.level={level}", series, "bench.head_dim=4", "bench.dtype=bf16",
                                 "bench.model.layers=1", "bench.model.mlp_dim=16"])
    _, rows = read_rows(paths["csv"])
    assert {r["status"] for r in rows} == {"ok"} and {r["level"] for r in rows} == {level}
    assert all(float(r["tokens_per_s"]) > 0 for r in rows)
    markdown = paths["markdown"].read_text()
    assert "## Throughput, d=4, bf16" in markdown and "| softmax | 16 |" in markdown and "1.00x" in markdown


def test_the_model_level_compiles_the_model_where_asked_and_labels_its_series(tmp_path):
    paths = run_bench(tmp_path, ["bench.level=model", "bench.attention=[softmax]", "bench.head_dim=4",
                                 "bench.dtype=fp32", "bench.lengths=[16]", "bench.model.layers=1",
                                 "bench.model.mlp_dim=16", "bench.model.compile=true"])
    _, rows = read_rows(paths["csv"])
    assert [(r["series"], r["status"]) for r in rows] == [("softmax+compile", "ok")]
    assert "torch.compile (default mode), the optimizer step eager" in paths["markdown"].read_text()
    with pytest.raises(ValueError, match="bench.model.compile='fast'; valid: true, false, default"):
        run_bench(tmp_path, ["bench.level=model", "bench.attention=[softmax]", "bench.model.compile=fast",
                             "bench.lengths=[16]", "bench.dtype=fp32", "bench.timing.warmup=1"])


TINY_LISTOPS = ("lra/listops model.d_model=16 model.qkv_dim=16 model.num_heads=2 model.num_layers=1 "
                "model.mlp_dim=16 task.max_length=48 task.generator.min_length=8 task.generator.max_length=48 "
                "task.generator.max_depth=3 task.num_train=64 task.num_val=8 task.num_test=8 task.batch_size=4 "
                "precision=32")


def test_loop_level_runs_every_runner_on_every_preset(tmp_path):
    presets = f"['{TINY_LISTOPS}','{TINY_LISTOPS} model.pooling=mean']"
    runners = "[lean,bare,lightning,harness,'harness task.bucket=true']"
    paths = run_bench(tmp_path, ["bench.level=loop", f"bench.loop.presets={presets}", f"bench.loop.runners={runners}",
                                 "bench.loop.warmup_steps=1", "bench.loop.steps=2", "bench.loop.rounds=1"])
    _, rows = read_rows(paths["csv"])
    runners_run = ["lean", "bare", "lightning", "harness", "harness task.bucket=true"]
    assert [r["series"] for r in rows] == runners_run * 2
    assert len({r["options"] for r in rows}) == 2 and {r["level"] for r in rows} == {"loop"}
    assert all(float(r["time_ms"]) > 0 for r in rows)
    params = {r["note"].split("; ")[1] for r in rows}
    assert len(params) == 2 and "parameters differ" not in " ".join(r["note"] for r in rows)  # lean = harness
    bucketed = next(r for r in rows if r["series"] == "harness task.bucket=true")
    assert "bucket=True" in bucketed["note"] and "compile=off" in bucketed["note"]
    markdown = paths["markdown"].read_text()
    assert "## Training loops" in markdown and "| lean |" in markdown and "| 1.000 |" in markdown
    assert paths["plot0"].name == "loop.png" and paths["plot0"].stat().st_size > 10_000


def test_loop_level_profiles_the_lean_and_bare_loops_where_asked(tmp_path):
    paths = run_bench(tmp_path, ["bench.level=loop", f"bench.loop.presets=['{TINY_LISTOPS}']",
                                 "bench.loop.runners=[lean,bare,harness]", "bench.loop.warmup_steps=1",
                                 "bench.loop.steps=2", "bench.loop.rounds=2", "bench.loop.profile_steps=2"])
    profiles = sorted((paths["csv"].parent / "loop_profile").glob("*.txt"))
    assert [p.name.rsplit("__", 1)[1] for p in profiles] == ["bare.txt", "lean.txt"]  # round 0 only; not harness
    for profile in profiles:
        text = profile.read_text()
        assert text.startswith("preset: lra/listops") and "2 steps" in text
        assert "Self CPU" in text and "aten::" in text
    _, rows = read_rows(paths["csv"])
    assert len(rows) == 6  # the profiled steps add no rows


def test_unknown_backend_fails_before_measuring(tmp_path):
    with pytest.raises(ValueError, match="unknown attention backend 'flashy'; known backends: .*softmax"):
        run_bench(tmp_path, ["bench.attention=[softmax,flashy]"])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("given", "read_as"), [("48e3180", "inf"), ("1234567", "1234567")])
def test_a_commit_read_as_a_number_is_refused(tmp_path, given: str, read_as: str):
    with pytest.raises(ValueError, match=f"bench.commit={read_as} was read as a number; quote the hash"):
        run_bench(tmp_path, [f"bench.commit={given}"])
    assert not list(tmp_path.iterdir())  # refused before measuring anything


def test_command_line_entry_point_with_offline_wandb(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    overrides = [o for o in TINY if not o.startswith("bench.wandb")]
    command = [sys.executable, "-m", "lra.bench", "bench.attention=[softmax]", "bench.head_dim=4",
               "bench.dtype=fp32", *overrides[3:], f"bench.out_dir={tmp_path}", f"bench.wandb.dir={tmp_path}",
               "hydra.run.dir=" + str(tmp_path / "hydra")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _, rows = read_rows(tmp_path / "core_fwd_bwd.csv")
    assert rows[0]["command"].startswith("python -m lra.bench 'bench.attention=[softmax]'")
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
