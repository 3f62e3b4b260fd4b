from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lra.attention import UnknownBackendError, available, registry
from lra.attention.softmax import SoftmaxAttention
from lra.bench.series import parse_series


def test_names_and_mappings_become_labelled_series(test_backends):
    fused = {"backend": "taylorshift", "mode": "efficient", "impl": "triton", "label": "fused"}
    series = parse_series(["softmax", {"backend": "taylorshift", "mode": "direct"}, fused])
    assert [s.label for s in series] == ["softmax", "taylorshift(mode=direct)", "fused"]
    assert series[1].options == {"mode": "direct"}
    assert [s.role() for s in series] == ["softmax", "direct", "fused"]
    assert [s.cost_kind() for s in series] == ["softmax", "direct", "efficient"]
    assert series[2].describe_options() == "impl=triton;mode=efficient"


def test_up_to_limits_a_series_lengths():
    (series,) = parse_series([{"backend": "softmax", "up_to": 4096}])
    assert series.up_to == 4096 and series.options == {} and series.label == "softmax"
    with pytest.raises(ValueError, match="up_to must be a positive length"):
        parse_series([{"backend": "softmax", "up_to": "long"}])


def test_a_single_name_is_a_list_of_one():
    assert [s.label for s in parse_series("softmax")] == ["softmax"]


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(UnknownBackendError, match="known backends: .*softmax"):
        parse_series(["softmax", "flashy"])


def test_unknown_option_lists_the_backends_options(test_backends):
    with pytest.raises(UnknownBackendError, match="no option.*kernel.*its options: .*impl, mode"):
        parse_series([{"backend": "taylorshift", "kernel": "x"}])
    with pytest.raises(UnknownBackendError, match=r"its options: \(none\)"):
        parse_series([{"backend": "linear", "mode": "direct"}])


def test_bad_entries_fail_with_the_expected_form():
    with pytest.raises(ValueError, match="no 'backend' key"):
        parse_series([{"mode": "direct"}])
    with pytest.raises(ValueError, match="twice"):
        parse_series(["softmax", {"backend": "softmax"}])
    with pytest.raises(ValueError, match="empty"):
        parse_series([])


def test_all_is_every_registered_backend_in_the_forms_its_class_lists(monkeypatch):
    """conf/bench.yaml's default (bench.attention: all) follows the registry: a backend registered later is
    benchmarked without the config being edited, in each of its bench_forms, a quadratic form up to 16384."""
    class Quadratic(SoftmaxAttention):
        bench_forms = {"": {}, "masked": {"padding": "mask"}}

    monkeypatch.setitem(registry._BACKENDS, "zz_quadratic", Quadratic)
    series = parse_series("all")
    assert {s.backend for s in series} == set(available())
    assert series[0].label == "softmax" and series[-1].backend == "local"  # local compiles per shape
    by_label = {s.label: s for s in series}
    assert by_label["zz_quadratic-masked"].options == {"padding": "mask"}
    assert by_label["zz_quadratic"].up_to == by_label["taylorshift-direct"].up_to == 16384
    assert by_label["taylorshift-triton"].options == {"mode": "efficient", "impl": "triton"}
    assert by_label["taylorshift-triton"].up_to is None and by_label["performer"].up_to is None


def test_the_default_config_benchmarks_every_registered_backend():
    config = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "bench.yaml")
    assert {s.backend for s in parse_series(config.bench.attention)} == set(available())
