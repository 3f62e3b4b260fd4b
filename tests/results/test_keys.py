"""The one list of identity-neutral keys, and the few more that the tables pool."""

from __future__ import annotations

from lra.results.keys import COMPARISON_NEUTRAL, IDENTITY_NEUTRAL, is_neutral, without


def test_what_leaves_the_identity_as_it_is_also_leaves_a_comparison_as_it_is() -> None:
    assert set(IDENTITY_NEUTRAL) < set(COMPARISON_NEUTRAL)
    assert "seed" in COMPARISON_NEUTRAL and "seed" not in IDENTITY_NEUTRAL  # another seed is another run


def test_a_key_below_a_neutral_one_is_neutral() -> None:
    assert is_neutral("logger.wandb.project", IDENTITY_NEUTRAL) and is_neutral("trainer.devices", IDENTITY_NEUTRAL)
    assert not is_neutral("trainer.max_steps", COMPARISON_NEUTRAL)
    assert not is_neutral("loggers", ("logger",))


def test_without_drops_neutral_keys_at_any_depth_and_leaves_the_input_as_it_is() -> None:
    config = {"seed": 1, "logger": {"wandb": {"project": "x"}}, "trainer": {"devices": 2, "max_steps": 9},
              "task": None}
    assert without(config, ("logger", "trainer.devices", "task.num_workers")) == {
        "seed": 1, "trainer": {"max_steps": 9}, "task": None}
    assert config["trainer"] == {"devices": 2, "max_steps": 9}
