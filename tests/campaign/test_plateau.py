"""The ListOps init probe behind the recipes, on a small model: its numbers obey the formulas they measure."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lra.campaign.plateau import main

SMALL = ["model.d_model=32", "model.num_heads=2", "model.qkv_dim=32", "model.mlp_dim=64", "model.num_layers=1",
         "task.max_length=128", "task.generator.min_length=40", "task.generator.max_length=128",
         "task.generator.max_depth=4"]


def test_the_probe_measures_what_the_formulas_bound(workdir: Path, capsys) -> None:
    variants = "softmax,taylorshift,taylorshift+output_normalized=false,taylorshift+tau=8,performer"
    main([f"variants={variants}", "batches=2", "batch_size=4", f"out={workdir}", *SMALL])
    assert "taylorshift+tau=8" in capsys.readouterr().out
    with open(workdir / "listops_plateau.csv") as f:
        rows = {(row["variant"], row["layer"]): row for row in csv.DictReader(f)}
    value = lambda variant, key, layer="1": float(rows[variant, layer][key])  # noqa: E731
    # tau = 1: every weight 0.5 s^2 + s + 1 lies in [0.5, 2.5], so no query gives a key more than 5x the mean weight
    assert value("taylorshift", "top x N") < 5
    assert value("taylorshift+tau=8", "top x N") > value("taylorshift", "top x N")  # a temperature sharpens
    assert value("taylorshift", "entropy") > 0.99 > value("taylorshift+tau=8", "entropy")
    # the output normalisation multiplies the attention branch by sqrt(N/d), N the real keys (40..129), d = 16
    ratio = value("taylorshift", "branch/res") / value("taylorshift+output_normalized=false", "branch/res")
    assert math.sqrt(41 / 16) <= ratio <= math.sqrt(129 / 16)
    assert value("performer", "noise/signal") > 0 and rows["softmax", "1"]["noise/signal"] == ""
    assert 0 < value("taylorshift", "tau sign agree", "all") <= 1 and value("taylorshift", "|dL/dtau|", "all") > 0
    assert -1 <= value("softmax", "collapse", "all") <= 1
