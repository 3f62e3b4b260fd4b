"""A backend of your own: one module (and one yaml), trained, benchmarked and contract-tested, without an edit
to lra. Two ways in: a class in a package of your own (``attention=custom attention.target=module:Class``, and
``python -m lra.attention check module:Class``), and a module added to the package (``lra.attention.discover``
finds it; its ``conf/attention/NAME.yaml`` comes through Hydra's search path here, as from ``conf/``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import lra.attention
from lra.attention import contract, registry
from lra.attention.__main__ import main
from lra.bench.run import config_from, run
from lra.bench.series import parse_series
from lra.train.run import train
from tests.attention.cases import all_forms, gpu_forms, memory_forms
from tests.helpers import CONF, ROOT, TINY_RUN, compose_train, user_environment

# What a researcher writes: masked softmax over scaled cosine similarities, causal by a mask. Leaky ignores
# the padding mask, Peeking ignores causality: the contract check must catch both.
MODULE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F

    from lra.attention import AttentionBackend, register


    class CosineAttention(AttentionBackend):
        """softmax(scale cos(q_i, k_j)) v over the real keys (j <= i when causal). Time O(N^2 d)."""

        complexity = "O(N^2 d)"
        supports_causal = True
        permutation_equivariant = True

        def __init__(self, *, scale: float = 4.0, **common):
            super().__init__(**common)
            self.scale = scale

        def forward(self, q, k, v, key_padding_mask=None):
            scores = self.scale * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
            hidden = torch.zeros_like(scores, dtype=torch.bool)
            if key_padding_mask is not None:
                hidden = hidden | key_padding_mask[:, None, None, :]
            if self.causal:
                hidden = hidden | torch.ones_like(hidden[0, 0]).triu(1)
            return scores.masked_fill(hidden, float("-inf")).softmax(-1).nan_to_num() @ v


    class LeakyAttention(CosineAttention):
        def forward(self, q, k, v, key_padding_mask=None):
            return super().forward(q, k, v)


    class PeekingAttention(CosineAttention):
        def __init__(self, **options):
            super().__init__(**options)
            self.causal = False  # accepts causal=True, then attends to every key
''')
IN_PACKAGE = MODULE.replace("class CosineAttention", '@register("zz_cosine")\nclass CosineAttention')
BENCH = ["bench.lengths=[16]", "bench.batch_size=2", "bench.heads=2", "bench.head_dim=8", "bench.dtype=fp32",
         "bench.device=cpu", "bench.wandb.enabled=false", "bench.timing.warmup=1", "bench.timing.repeats=2"]
TRAIN = [*TINY_RUN, "logger=none", "test_after_fit=false"]


@pytest.fixture(scope="module")
def own_package(tmp_path_factory) -> Path:
    """``my_attn/cosine.py`` in a folder on sys.path: a package of the user's, outside lra."""
    root = tmp_path_factory.mktemp("user")
    (root / "my_attn").mkdir()
    (root / "my_attn" / "__init__.py").write_text("")
    (root / "my_attn" / "cosine.py").write_text(MODULE)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.startswith("my_attn")]:
        del sys.modules[name]


@pytest.fixture
def in_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``zz_cosine.py`` in a folder of lra.attention's path and ``attention/zz_cosine.yaml`` in a config
    folder; the registry and the module cache are restored afterwards."""
    modules, configs = tmp_path / "modules", tmp_path / "conf" / "attention"
    modules.mkdir()
    configs.mkdir(parents=True)
    (modules / "zz_cosine.py").write_text(IN_PACKAGE)
    (configs / "zz_cosine.yaml").write_text("name: zz_cosine\nscale: 4.0\n")
    monkeypatch.setattr(lra.attention, "__path__", [*lra.attention.__path__, str(modules)])
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    yield tmp_path / "conf"
    sys.modules.pop("lra.attention.zz_cosine", None)


def trained(overrides: list[str]) -> dict:
    record = train(compose_train([*overrides, *TRAIN]))
    assert record["status"] == "finished" and record["metrics"]["step"] == 20
    return record


def benchmarked(tmp_path: Path, series: str) -> list[str]:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("bench", overrides=[*BENCH, f"bench.out_dir={tmp_path}", f"bench.attention={series}"])
    paths = run(config_from(OmegaConf.to_container(cfg.bench, resolve=True)), "pytest")
    rows = paths["csv"].read_text().splitlines()
    return [row for row in rows[1:] if ",ok," in row]


def test_a_class_of_your_own_trains_benchmarks_and_holds_the_contract(own_package, workdir):
    target = "my_attn.cosine:CosineAttention"
    record = trained(["attention=custom", f"attention.target={target}", "+attention.scale=2.0"])
    assert record["attention"] == target
    assert len(benchmarked(workdir / "bench", f"[{{backend:'{target}',label:cosine}}]")) == 1
    assert holds(contract.check_all(target, {"scale": 2.0}))


def test_a_module_added_to_the_package_is_registered_tested_trained_and_benchmarked(in_package, workdir):
    assert "zz_cosine" in lra.attention.discover() and "zz_cosine" in lra.attention.available()
    assert lra.attention.options("zz_cosine") == {"scale": 4.0}
    for generated in (all_forms(), forms_of(gpu_forms()), forms_of(memory_forms())):
        assert "zz_cosine" in [form[1] for form in generated]
    assert "zz_cosine" in [series.backend for series in parse_series("all")]
    assert "| `zz_cosine` | O(N^2 d) | yes |" in registry.capability_table()
    assert holds(contract.check_all("zz_cosine"))
    record = trained([f"hydra.searchpath=[file://{in_package}]", "attention=zz_cosine"])
    assert record["attention"] == "zz_cosine"
    assert len(benchmarked(workdir / "bench", "[zz_cosine]")) == 1


def holds(outcomes: list[contract.Outcome]) -> bool:
    """Every part passes but the recurrent step, which CosineAttention does not claim."""
    status = {outcome.part: outcome.status for outcome in outcomes}
    return status.pop("recurrent steps") == "skipped" and set(status.values()) == {"passed"} and len(status) == 9


def forms_of(entries: list[tuple[str, dict]]) -> list[tuple[str, str, dict]]:
    return [("", name, options) for name, options in entries]


def test_check_passes_a_correct_backend(own_package, capsys):
    assert main(["check", "my_attn.cosine:CosineAttention", "scale=3.0"]) == 0
    out = capsys.readouterr().out
    assert "ok   padding invariance" in out and "ok   causal masking" in out
    assert out.rstrip().endswith("every part that applies holds")


@pytest.mark.parametrize(("target", "part", "case"), [
    ("LeakyAttention", "padding invariance", r"example 0 (29 of 40 tokens real) against itself unpadded"),
    ("PeekingAttention", "causal masking", "example 0 (70 real tokens), position 0: causal output"),
])
def test_check_fails_a_broken_backend_naming_the_part_and_the_case(own_package, capsys, target, part, case):
    assert main(["check", f"my_attn.cosine:{target}"]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith(f"  FAIL {part}:")]
    assert case in line
    assert "ok   shapes" in out and "parts failed" in out


def test_check_of_an_unknown_target_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "lra.attention", "check", "no_such_pkg.attn:Mine"], cwd=ROOT,
                            env=user_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: attention target 'no_such_pkg.attn")
    assert "cannot import 'no_such_pkg.attn'" in result.stderr


def test_check_of_an_unknown_option_names_the_valid_ones(own_package, capsys):
    assert main(["check", "my_attn.cosine:CosineAttention", "window=5"]) == 2
    assert "has no option(s) window; its options: scale" in capsys.readouterr().err
