"""The packages of ``lra`` on layers: nothing imports upward.

Data flows one way (README, Layout): config -> data module -> model (attention inside) -> Lightning module ->
loggers and the results store -> tables. So ``lra.attention`` knows no tasks, ``lra.data`` knows no models, and
``lra.tables`` reads records and bench rows through ``lra.results`` without importing training code. Every
import in ``lra/`` (function-level and ``TYPE_CHECKING`` ones too, read with ``ast``) is checked against the
layers declared here, once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LRA = Path(__file__).resolve().parents[1] / "lra"

# Bottom to top. A package may import packages of lower layers only, never one of its own layer or above.
LAYERS: list[tuple[str, ...]] = [
    ("lra", "results", "conf"),  # the version; run-record and bench-row schemas, the store; composing conf/
    ("attention", "data"),  # backends know no tasks, tasks know no backends
    ("model",),  # embedding, encoder (a backend inside), heads
    ("train",),  # the Lightning module, callbacks, runs
    ("bench", "probe", "campaign", "analysis"),  # what runs training or the model: benchmarks, the data probe, ...
    ("tables",),  # records and bench rows -> tables (see NEVER)
]
# Above training in the flow, but reading only what the results store holds: no training code.
NEVER = {"tables": {"model", "train", "bench", "probe", "campaign", "analysis"}}
LAYER = {package: height for height, packages in enumerate(LAYERS) for package in packages}


def package_of(path: Path, root: Path) -> str:
    """``lra/data/x.py`` -> ``data``; ``lra/conf.py`` -> ``conf``; ``lra/__init__.py`` -> ``lra``."""
    parts = path.relative_to(root).with_suffix("").parts
    return "lra" if parts == ("__init__",) else parts[0]


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every ``lra`` import in the file; ``from lra import x`` counts as ``lra.x``."""
    module = ".".join(("lra", *path.relative_to(root).with_suffix("").parts))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package upward
                anchor = module.split(".")[: -node.level] if path.name != "__init__.py" or node.level > 1 \
                    else module.split(".")[:-1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "lra" else [base]
            found += [(node.lineno, name) for name in names]
    return [(line, name) for line, name in found if name == "lra" or name.startswith("lra.")]


def target_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lra"


def violations(root: Path) -> list[str]:
    """One line per import that runs from a lower layer to a higher one (or within a layer, or into NEVER)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = package_of(path, root)
        for line, module in imported_modules(path, root):
            imported = target_package(module)
            if imported == importer or importer not in LAYER or imported not in LAYER:
                continue
            where = f"{path.relative_to(root.parent)}:{line} imports {module}"
            if imported in NEVER.get(importer, ()):
                found.append(f"{where}: lra.{importer} never imports lra.{imported}")
            elif LAYER[imported] >= LAYER[importer]:
                found.append(f"{where}: lra.{importer} (layer {LAYER[importer]}) may import only lower layers, "
                             f"lra.{imported} is layer {LAYER[imported]}")
    return found


def test_no_import_runs_against_the_layers() -> None:
    assert violations(LRA) == []


def test_every_package_has_a_layer() -> None:
    packages = {package_of(path, LRA) for path in LRA.rglob("*.py")}
    assert packages - set(LAYER) == set(), "add the new package to LAYERS in tests/test_layers.py"


@pytest.mark.parametrize(("source", "expected"), [
    ("from lra.train import probe\n", "lra/data/__main__.py:1 imports lra.train: lra.data (layer 1) may import "
                                      "only lower layers, lra.train is layer 3"),
    ("def f():\n    import lra.model.heads\n", "lra/data/__main__.py:2 imports lra.model.heads: lra.data"),
    ("from lra import attention\n", "lra/data/__main__.py:1 imports lra.attention: lra.data (layer 1)"),
    ("from ..attention import base\n", "lra/data/__main__.py:1 imports lra.attention: lra.data (layer 1)"),
])
def test_an_upward_import_is_named_with_its_file(tmp_path: Path, source: str, expected: str) -> None:
    root = tmp_path / "lra"
    (root / "data").mkdir(parents=True)
    (root / "data" / "__main__.py").write_text(source)
    (root / "data" / "fine.py").write_text("import lra\nfrom lra.conf import compose\nfrom lra.data import base\n")
    (root / "tables").mkdir()
    (root / "tables" / "x.py").write_text("from lra.train.records import read_record\n")
    found = violations(root)
    assert len(found) == 2 and found[0].startswith(expected)
    assert found[1] == "lra/tables/x.py:1 imports lra.train.records: lra.tables never imports lra.train"
