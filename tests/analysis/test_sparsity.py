"""Part 2: per-row sparsity of a trained checkpoint's attention, measured through hooks that change nothing;
and ``python -m lra.analysis sparse`` end to end on a tiny checkpoint and a tiny sweep."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.analysis.run import config_from, run
from lra.analysis.sparsity import SparsityProbe, SparsitySettings, checkpoint_sparsity, row_sparsity
from lra.tables import sparse_section
from lra.tables.build import Settings, build
from lra.train.run import CONFIG_KEY, build_module, load_checkpoint, prepare_data, train
from tests.helpers import CONF, ROOT, TINY_RUN, compose_train, user_environment


def test_row_sparsity_counts_keys_for_the_mass_and_column_loads() -> None:
    weights = torch.tensor([[0.7, 0.25, 0.05, 0.0],
                            [0.25, 0.25, 0.25, 0.25],
                            [0.0, 0.0, 1.0, 0.0],
                            [0.5, 0.0, 0.45, 0.05]])
    k, load, effective = row_sparsity(weights, mass=0.9)
    assert k.tolist() == [2, 4, 1, 2]
    assert load.tolist() == [3, 2, 3, 1]  # key 0 is in rows 0, 1, 3; key 2 in rows 1, 2, 3
    assert effective[1] == pytest.approx(4.0) and effective[2] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with one tiny softmax run trained on CPU (shared by this module's tests)."""
    root = tmp_path_factory.mktemp("sparsity")
    with pytest.MonkeyPatch.context() as patch:
        for name, sub in (("LRA_DATA_DIR", "data"), ("LRA_MODELS_DIR", "models"), ("LRA_RESULTS_DIR", "results")):
            patch.setenv(name, str(root / sub))
        patch.chdir(root)
        train(compose_train([*TINY_RUN, "logger=none", "run_id=sparse1"]))
    return root


@pytest.fixture
def tiny_checkpoint(project: Path) -> Path:
    (best,) = project.glob("models/**/sparse1/checkpoints/best-*.ckpt")
    return best


def test_a_trained_checkpoints_sparsity_per_layer_and_head(tiny_checkpoint: Path, project: Path) -> None:
    paths = OmegaConf.create({"data_dir": str(project / "data"), "models_dir": str(project / "models"),
                              "results_dir": str(project / "results")})
    settings = SparsitySettings(batches=2, batch_size=4, max_nonzeros=8)
    rows = checkpoint_sparsity(tiny_checkpoint, paths, settings, torch.device("cpu"))
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1)]  # model=tiny: 1 layer, 2 heads
    for r in rows:
        assert r["task"] == "listops" and r["attention"] == "softmax" and r["head_dim"] == 16
        assert r["rows"] == pytest.approx(8 * r["mean_length"])  # every real query of the 8 examples
        assert 1 <= r["k_median"] <= r["k_p90"] <= r["k_max"] and 0 < r["k_fraction_median"] <= 1
        assert r["in_regime"] == (r["k_p90"] <= 8 and r["column_p90"] <= 8)
        assert 0 <= r["rows_within"] <= 1 and 0 <= r["columns_within"] <= 1


def test_the_probe_leaves_the_models_output_unchanged(tiny_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    datamodule = prepare_data(run_cfg)
    module = build_module(run_cfg, datamodule.spec)
    module.load_state_dict(checkpoint["state_dict"])
    model = module.model.eval()
    batch = datamodule.splits["test"].__getitems__(list(range(6)))
    with torch.no_grad():
        plain = model(batch["inputs"], batch.get("padding_mask"))
        with SparsityProbe(model, mass=0.9) as probe:
            probed = model(batch["inputs"], batch.get("padding_mask"))
        after = model(batch["inputs"], batch.get("padding_mask"))
    assert torch.equal(plain, probed) and torch.equal(plain, after)
    real = (~batch["padding_mask"]).sum(1) + int(model.encoder.use_cls)  # the CLS position is a real query
    assert probe.heads[(0, 0)].lengths == real.tolist()
    assert len(probe.heads) == 2 and not probe._handles  # the hooks are gone


@pytest.mark.slow
def test_the_command_writes_both_parts(tiny_checkpoint: Path, project: Path) -> None:
    out = project / "analysis"
    args = ["sparse", f"sparse.out_dir={out}", "sparse.lengths=[32,64,128]", "sparse.seeds=[0]",
            "sparse.targets=[{pattern:random,s:[1,2]},{pattern:block,s:[2]}]", "sparse.dims=[2,4,8,16,32,64]",
            "sparse.learned.lengths=[32]", "sparse.learned.dims=[2,4,8]", "sparse.learned.steps=50",
            f"sparse.ckpt=[{tiny_checkpoint}]", "sparse.checkpoints.batches=1", "sparse.checkpoints.batch_size=2"]
    result = subprocess.run([sys.executable, "-m", "lra.analysis", *args], cwd=project, env=user_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "smallest d with tv <= 0.1" in result.stdout and "fits d_min = a + b ln L" in result.stdout

    errors = list(csv.DictReader((out / "construction_errors.csv").open()))
    methods = {row["method"] for row in errors}
    assert methods == {"projection", "solve", "learned"}
    assert {int(row["dim"]) for row in errors if row["length"] == "32"} <= {2, 4, 8, 16, 32}  # d stops at L
    d_min = list(csv.DictReader((out / "construction_dmin.csv").open()))
    assert {row["metric"] for row in d_min} == {"tv", "max_abs", "ratio"}
    fits = list(csv.DictReader((out / "construction_fit.csv").open()))
    assert any(row["method"] == "solve" and row["nonzeros"] == "1" for row in fits)  # s = 1 reaches at every L
    record = json.loads((out / "construction_run.json").read_text())
    assert record["command"].startswith("python -m lra.analysis sparse ") and record["environment"]["torch"]
    for name in ("construction_dmin_vs_logL.png", "construction_error_vs_d_tv.png", "attention_sparsity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sparsity = list(csv.DictReader((out / "attention_sparsity.csv").open()))
    assert [(row["layer"], row["head"]) for row in sparsity] == [("0", "0"), ("0", "1")]
    assert np.isclose(float(sparsity[0]["mass"]), 0.9)

    # the report's section reads these files
    section = sparse_section.analysis_section(out)
    tv_table, _, _, sparsity_table = section.tables
    assert section.heading.startswith("Sparse patterns") and len(section.figures) == 5
    assert tv_table.title.startswith("Smallest d with mean total variation ≤ 0.1")
    row = next(r for r in tv_table.rows if r[:2] == ["solve", "random s=1"])
    tv = [float(r["d_min"]) for r in d_min if (r["method"], r["pattern"], r["nonzeros"], r["metric"], r["length"])
          == ("solve", "random", "1", "tv", "32")]
    assert row[2] == f"{tv[0]:.1f}"
    assert sparsity_table.rows[0][5] == " / ".join(f"{float(r['k_median']):.0f}" for r in sparsity)
    assert any("python -m lra.analysis sparse" in note for note in section.notes)
    built = build(Settings(runs_dir=project / "results/runs", bench_dir=project / "none",
                           tables_dir=project / "tables", report=project / "report.html", analysis_dir=out))
    assert "Sparse patterns: a fixed attention" in (project / "report.html").read_text() and built


def test_checkpoints_analysed_apart_add_up_in_one_table(tiny_checkpoint: Path, project: Path) -> None:
    # One machine per checkpoint (each where its run trained): each call keeps the rows of the other runs.
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("analysis", overrides=[f"paths.data_dir={project / 'data'}", "sparse.sweep=false",
                                             f"sparse.ckpt=[{tiny_checkpoint}]", f"sparse.out_dir={project / 'a'}",
                                             "sparse.checkpoints.batches=1", "sparse.checkpoints.batch_size=2"])
    run(cfg, "first call")
    csv_path = project / "a/attention_sparsity.csv"
    csv_path.write_text(csv_path.read_text().replace(",sparse1,", ",elsewhere,"))  # as if another run's rows
    run(cfg, "second call")
    both = ["elsewhere", "elsewhere", "sparse1", "sparse1"]
    assert [row["run_id"] for row in csv.DictReader(csv_path.open())] == both
    record = json.loads((project / "a/attention_run.json").read_text())
    assert record["command"] == "second call" and [r["command"] for r in record["earlier_runs"]] == ["first call"]
    notes = sparse_section.analysis_section(project / "a").notes
    assert any("earlier rows kept: `first call`" in note for note in notes)

    run(cfg, "second call")  # the same run again replaces its own rows
    assert [row["run_id"] for row in csv.DictReader(csv_path.open())] == both
    run(OmegaConf.merge(cfg, {"sparse": {"keep_other_runs": False}}), "afresh")
    assert [row["run_id"] for row in csv.DictReader(csv_path.open())] == ["sparse1", "sparse1"]
    assert "earlier_runs" not in json.loads((project / "a/attention_run.json").read_text())


def test_bad_settings_are_one_line_naming_the_key() -> None:
    base = OmegaConf.to_container(OmegaConf.load(CONF / "analysis.yaml").sparse, resolve=False)
    base["out_dir"] = "unused"
    for key, value, message in [("targets", [{"pattern": "diagonal", "s": [1]}], "pattern='diagonal'; valid"),
                                ("criteria", {"kl": [0.1]}, "sparse.criteria.kl: not a criterion"),
                                ("dims", [0, 4], "sparse.dims must be a list of positive integers"),
                                ("rules", ["exact"], "sparse.rules=\\['exact'\\]; valid: projection, solve")]:
        with pytest.raises(ValueError, match=message):
            config_from({**base, key: value})
    with pytest.raises(ValueError, match="nothing to do"):
        config_from({**base, "sweep": False})
    result = subprocess.run([sys.executable, "-m", "lra.analysis", "sparse", "sparse.sweep=false",
                             "sparse.ckpt=[missing.ckpt]"], cwd=ROOT, env=user_environment(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip() == "lra.analysis: checkpoint missing.ckpt does not exist"
