import pytest

from lra.attention import UnknownBackendError
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
