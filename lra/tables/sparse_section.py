"""The report's section on the sparse-approximation result, read from the files ``python -m lra.analysis sparse``
writes under ``results/analysis/`` (CSV, PNG, run JSON). Reads files only: no analysis code is imported."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from lra.results.records import read_record
from lra.results.table import Table
from lra.tables.plots import data_uri, palette_png
from lra.tables.report import Section

if TYPE_CHECKING:  # sections imports this module: the inputs' type only
    from lra.tables.sections import ReportInputs

HEADING = "Sparse patterns: a fixed attention with d = O(log L) (Likhosherstov et al. 2021)"
FIGURES = [("construction_dmin_vs_logL.png", "Smallest d reaching each error, against ln L"),
           ("construction_error_vs_d_tv.png", "Mean total variation against d"),
           ("construction_error_vs_d_max_abs.png", "Max absolute error against d"),
           ("construction_error_vs_d_ratio.png", "Ratio error against d"),
           ("attention_sparsity.png", "Trained checkpoints: keys holding 90% of a row's attention")]
INTRO = ("Can softmax attention with fixed parameters approximate any sparse pattern by its inputs alone, with "
         "d = O(log L)? The construction of Likhosherstov, Choromanski and Weller (arXiv 2106.03764), reconstructed "
         "from its abstract, measured against d and L; and how sparse trained checkpoints' attention is.")
CRITERION_NAMES = {"tv": "mean total variation", "max_abs": "max |error|", "ratio": "ratio error"}
METHODS = ["projection", "solve", "learned"]
PATTERNS = ["random", "banded", "block", "permutation"]


def section(inputs: ReportInputs) -> Section | None:
    """The report's builder (``lra.tables.sections.SECTIONS``): the folder is ``settings.analysis_dir``."""
    return analysis_section(inputs.settings.analysis_dir)


def analysis_section(directory: Path | None) -> Section | None:
    """The section from the files in ``directory``; None when no analysis folder is configured."""
    if directory is None:
        return None
    tables, notes = [], []
    if (directory / "construction_dmin.csv").is_file():
        d_min, fits = _rows(directory / "construction_dmin.csv"), _rows(directory / "construction_fit.csv")
        criteria = dict.fromkeys((r["metric"], float(r["threshold"])) for r in d_min)
        tables += [d_min_table(d_min, fits, metric, threshold) for metric, threshold in criteria]
        notes += construction_notes(directory)
    if (directory / "attention_sparsity.csv").is_file():
        tables.append(sparsity_table(_rows(directory / "attention_sparsity.csv")))
        notes += _provenance(directory / "attention_run.json", "Checkpoint sparsity")
    if not tables:
        notes.append(f"No results in {directory}: run `python -m lra.analysis sparse` (make analysis).")
    figures = [(title, data_uri(palette_png((directory / name).read_bytes())))
               for name, title in FIGURES
               if (directory / name).is_file()]
    return Section(HEADING, intro=INTRO, tables=tables, notes=notes, figures=figures)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def d_min_table(rows: list[dict[str, str]], fits: list[dict[str, str]], metric: str, threshold: float) -> Table:
    """Mean smallest d per (method, target) and length for one criterion; '> D' where some seed never reached it
    by the largest d measured (d = L or the grid's end); the fit d = a + b ln L beside it."""
    rows = [r for r in rows if r["metric"] == metric and float(r["threshold"]) == threshold]
    lengths = sorted({int(r["length"]) for r in rows})
    cells: dict[tuple, dict[int, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cells[(r["method"], r["pattern"], int(r["nonzeros"]))][int(r["length"])].append(r)
    fit_of = {(f["method"], f["pattern"], int(f["nonzeros"])): f for f in fits
              if f["metric"] == metric and float(f["threshold"]) == threshold}
    table = Table(f"Smallest d with {CRITERION_NAMES.get(metric, metric)} ≤ {threshold:g} (mean over seeds)",
                  ["method", "target", *[f"L={n}" for n in lengths], "b (per ln L)", "a", "r²", "p in d ~ (ln L)^p"],
                  caption="projection: the queries X(1) = B R of the abstract's random projection; solve: the "
                          "support logits solved exactly (our variant); learned: inputs by gradient descent, same "
                          "fixed W_Q, W_K. Fit d = a + b ln L over the lengths where every seed reached the "
                          "threshold (at least 3).")

    def order(key: tuple) -> tuple:
        method, pattern, s = key
        return (_index(METHODS, method), _index(PATTERNS, pattern), s)

    for key in sorted(cells, key=order):
        method, pattern, s = key
        fit = fit_of.get(key)
        fitted = [f"{float(fit[k]):.2f}" for k in ("slope", "intercept", "r2", "exponent")] if fit else ["–"] * 4
        table.add([method, f"{pattern} s={s}", *[_d_cell(cells[key].get(n, [])) for n in lengths], *fitted],
                  "ours" if method == "solve" else "")
    return table


def _index(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _d_cell(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    if any(not r["d_min"] for r in rows):
        return f"> {max(int(r['d_largest']) for r in rows)}"
    return f"{sum(float(r['d_min']) for r in rows) / len(rows):.1f}"


def sparsity_table(rows: list[dict[str, str]]) -> Table:
    """Per checkpoint and layer: k (keys holding the mass) per head, median and 90th percentile, the column
    loads' 90th percentile, and how many heads lie in the result's regime."""
    table = Table("Trained checkpoints: per-row sparsity of the attention",
                  ["run", "task / attention", "step", "layer", "real keys", "median k per head", "p90 k per head",
                   "p90 column load per head", "max column load per head", "heads in regime"],
                  caption="k: keys holding the mass (0.9) of a query's weight, largest first; column load: rows "
                          "whose mass set holds a key. In regime: p90 of k and of the column load both at most "
                          "max_nonzeros (the largest s of the construction's sweep). The result bounds every "
                          "column: a max column load near the real keys is a hub, one key in almost every row's "
                          "set, which the p90 test lets through.")
    layers: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        layers[(r["checkpoint"], int(r["layer"]))].append(r)
    for (_, layer), heads in layers.items():
        first = heads[0]
        inside = sum(h["in_regime"] == "True" for h in heads)
        table.add([first["run_id"], f"{first['task']} / {first['attention']}", first["step"], str(layer),
                   f"{float(first['mean_length']):.0f}", " / ".join(f"{float(h['k_median']):.0f}" for h in heads),
                   " / ".join(f"{float(h['k_p90']):.0f}" for h in heads),
                   " / ".join(f"{float(h['column_p90']):.0f}" for h in heads),
                   " / ".join(f"{float(h['column_max']):.0f}" for h in heads),
                   f"{inside}/{len(heads)} (≤ {first['max_nonzeros']})"])
    return table


def construction_notes(directory: Path) -> list[str]:
    return [
        "Reconstructed from the abstract only (lra/analysis/construction.py says what is ours): logits B = Delta + "
        "log(A/max A) on the support, random unit keys X(2), queries X(1) combining each row's support keys, and "
        "fixed W_Q, W_K that select the two halves of the input; Delta is chosen per target and d from a grid.",
        "Errors: mean TV = mean over rows of half the L1 distance; max |err| = largest entry error; ratio = "
        "max(worst log-ratio distortion on a support, largest off-support entry / smallest support entry), our "
        "reading of the abstract's 'preserving matrix element ratios'.",
        *_provenance(directory / "construction_run.json", "Construction sweep"),
    ]


def _provenance(path: Path, what: str) -> list[str]:
    if not path.is_file():
        return []
    record = read_record(path)
    environment = record.get("environment", {})
    earlier = [f"{what}, earlier rows kept: `{run['command']}` on {run['device']}, {run['created']}, {run['wall_s']} s."
               for run in record.get("earlier_runs", [])]
    return [*earlier, f"{what}: `{record.get('command')}` on {environment.get('device')}, torch "
            f"{environment.get('torch')}, commit {environment.get('git_commit')}, {record.get('created')}, "
            f"{record.get('wall_s')} s, {record.get('threads')} CPU threads."]
