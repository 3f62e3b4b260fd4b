"""The lists generated from the registry cover every registered backend: the test cases (contract, causal, GPU,
memory), conf/attention/*.yaml, the benchmark's default series and the README's table. A backend missing from
any of them fails here, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

import lra.attention
from lra.attention import registry
from lra.attention.softmax import SoftmaxAttention
from lra.bench.series import parse_series
from tests.attention import cases

ROOT = Path(__file__).resolve().parents[2]


def generated() -> dict[str, set[str]]:
    """Which backends each generated list holds."""
    return {
        "cases.all_forms()": {form[1] for form in cases.all_forms()},
        "cases.gpu_forms()": {name for name, _ in cases.gpu_forms()},
        "cases.memory_forms()": {name for name, _ in cases.memory_forms()},
        "conf/attention/*.yaml": {path.stem for path in (ROOT / "conf" / "attention").glob("*.yaml")},
        "bench.attention: all": {series.backend for series in parse_series("all")},
        "capability_table()": {line.split("`")[1] for line in registry.capability_table().splitlines()[2:]},
    }


def missing(names: list[str]) -> dict[str, list[str]]:
    return {where: sorted(set(names) - held) for where, held in generated().items() if set(names) - held}


def test_every_registered_backend_is_in_every_generated_list():
    assert missing(lra.attention.available()) == {}


def test_a_backend_registered_later_is_generated_everywhere_but_in_its_yaml(monkeypatch):
    """The lists follow the registry; the one file a new backend brings itself is its yaml."""
    class Later(SoftmaxAttention):
        pass

    monkeypatch.setitem(registry._BACKENDS, "zz_later", Later)
    assert missing(lra.attention.available()) == {"conf/attention/*.yaml": ["zz_later"]}


def test_causal_cases_cover_every_backend_with_a_causal_form():
    causal = {name for name in lra.attention.available() if lra.attention.backend_class(name).supports_causal}
    assert {form[1] for form in cases.forms("supports_causal")} == causal


def test_the_readme_table_is_the_registry_s():
    """README's backend table is ``python -m lra.attention table``; after adding a backend, paste its output."""
    readme = (ROOT / "README.md").read_text()
    assert registry.capability_table() in readme, "README's backend table differs: python -m lra.attention table"


@pytest.mark.parametrize("name", lra.attention.available())
def test_every_backend_states_its_capabilities(name):
    cls = lra.attention.backend_class(name)
    assert cls.complexity.startswith("O("), f"{name}: complexity not stated"
    assert isinstance(cls.permutation_equivariant, bool), f"{name}: permutation_equivariant not stated"
    for path, options in cls.gpu_paths.items():
        assert set(options) <= set(lra.attention.options(name)), f"{name}: gpu path {path} has unknown options"
    for form, options in cls.bench_forms.items():
        assert set(options) <= set(lra.attention.options(name)), f"{name}: bench form {form!r} has unknown options"


def test_needs_max_length_is_enforced_by_the_base_class():
    for name in lra.attention.available():
        if lra.attention.backend_class(name).needs_max_length:
            with pytest.raises(ValueError, match=f"{name} needs max_length"):
                lra.attention.create(name, num_heads=1, head_dim=4)
