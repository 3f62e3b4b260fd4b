"""The benchmark levels that answer one question each: ``softmax_padding``, ``sdpa_kernels`` and
``taylorshift_kernels``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lra.bench import sdpa_kernels, softmax_padding, taylorshift_kernels
from lra.conf import compose

ROOT = Path(__file__).resolve().parents[2]
TINY = ["bench.batch_size=2", "bench.heads=2", "bench.head_dim=8", "bench.softmax_padding.lengths=[32]",
        "bench.timing.warmup=1", "bench.timing.repeats=2"]


def bench_settings(tmp_path: Path, *overrides: str) -> dict:
    return OmegaConf.to_container(compose("bench", [*TINY, f"bench.out_dir={tmp_path}", *overrides]).bench,
                                  resolve=True)


def test_softmax_padding_level_times_each_path_from_the_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lra.bench", "bench.level=softmax_padding", "bench.device=cpu", *TINY,
               f"bench.out_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "softmax_padding.csv", newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["unpadded", "mask", "varlen"]
    for path in ("unpadded", "mask"):
        assert rows[path]["status"] == "ok" and float(rows[path]["ms_fwd_bwd"]) > 0
        assert rows[path]["length"] == "32" and rows[path]["device"].startswith("cpu (")
    assert 0.25 <= float(rows["mask"]["real_fraction"]) <= 1
    assert rows["varlen"]["status"] == "error" and rows["varlen"]["note"]  # no varlen kernel on CPU
    assert "    32    8      mask" in done.stdout and f"wrote {tmp_path / 'softmax_padding.csv'}" in done.stdout


def test_sdpa_kernels_take_each_presets_attention_shape() -> None:
    assert sdpa_kernels.preset_shape("lra/listops") == sdpa_kernels.AttentionShape(
        "lra/listops", batch=32, heads=8, length=2001, head_dim=64, dropout=0.1)  # CLS included
    assert sdpa_kernels.preset_shape("lra/pathfinder") == sdpa_kernels.AttentionShape(
        "lra/pathfinder", batch=512, heads=4, length=1024, head_dim=4, dropout=0.1)  # mean pooling: no CLS
    retrieval = sdpa_kernels.preset_shape("lra/retrieval task.max_length=64")
    assert (retrieval.batch, retrieval.length) == (64, 65)  # both documents of 32 pairs go through one encoder


def test_sdpa_kernels_level_times_every_pass_and_says_which_kernel_cannot_run(tmp_path: Path, capsys) -> None:
    presets = '["lra/pathfinder task.batch_size=1","lra/text task.batch_size=2 task.max_length=31"]'
    paths = sdpa_kernels.run(bench_settings(tmp_path, "bench.device=cpu", f"bench.sdpa_kernels.presets={presets}",
                                            "bench.sdpa_kernels.kernels=[cudnn,math]"), "pytest")
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["pass"], row["kernel"]) for row in rows[:9]] == [
        (phase, kernel) for phase in ("train", "train_p0", "eval") for kernel in ("flash", "cudnn", "math")]
    assert {(row["length"], row["head_dim"], row["dropout"]) for row in rows if row["pass"] == "train"} == {
        ("1024", "4", "0.1"), ("32", "64", "0.1")}
    ok = {(row["preset"][:8], row["pass"], row["kernel"]) for row in rows if row["status"] == "ok"}
    assert ("lra/path", "train", "math") in ok and ("lra/text", "eval", "flash") in ok
    assert all(row["status"] == "error" and row["note"] for row in rows if row["kernel"] == "cudnn")  # no CUDA
    # over flash in the same pass, where flash ran (on the CPU it has no dropout: the train pass has no reference)
    assert all(float(row["vs_flash"]) > 0 for row in rows if row["kernel"] == "math" and row["pass"] != "train")
    assert "lra/text task.batch_size=2 task.max_length=31: B=2 H=4 N=32 d=64" in capsys.readouterr().out


def test_an_unknown_level_names_every_level(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "lra.bench", "bench.level=kernels",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "lra.bench: bench.level='kernels'; valid: core, layer, model, loop, softmax_padding, sdpa_kernels, " \
           "taylorshift_kernels" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal without CUDA")
def test_the_kernel_level_says_it_needs_cuda(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="bench.level=taylorshift_kernels needs a CUDA GPU"):
        taylorshift_kernels.run(bench_settings(tmp_path, "bench.level=taylorshift_kernels"), "pytest")


@pytest.mark.gpu
def test_the_kernels_pass_their_checks_on_the_gpu(tmp_path: Path) -> None:
    paths = taylorshift_kernels.run(bench_settings(tmp_path, "bench.taylorshift_kernels.sections=[check]"), "pytest")
    result = json.loads(paths["json"].read_text())
    assert result["check"] and all(check["ok"] for check in result["check"])
    assert result["env"]["triton"] and result["env"]["command"] == "pytest"


@pytest.mark.gpu
def test_the_direct_section_times_both_backward_passes_beside_sdpa_on_the_gpu(tmp_path: Path) -> None:
    paths = taylorshift_kernels.run(bench_settings(tmp_path, "bench.taylorshift_kernels.sections=[direct]",
                                                   "bench.taylorshift_kernels.dims=[32]",
                                                   "bench.taylorshift_kernels.direct_lengths=[1024]"), "pytest")
    rows = json.loads(paths["json"].read_text())["direct"]
    assert {r["impl"] for r in rows} == {"direct", "direct-atomic-dq", "sdpa"} and all(r["ms"] > 0 for r in rows)


@pytest.mark.gpu
def test_varlen_agrees_with_the_mask_on_the_gpu(tmp_path: Path, capsys) -> None:
    paths = softmax_padding.run(bench_settings(tmp_path, "bench.softmax_padding.lengths=[1024]",
                                               "bench.head_dim=32"), "pytest")
    with open(paths["csv"], newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert all(rows[path]["status"] == "ok" for path in softmax_padding.PATHS), rows
    difference = float(capsys.readouterr().out.split("varlen")[-1].split()[-1])
    assert difference < 5e-2  # bf16: the two kernels round differently
