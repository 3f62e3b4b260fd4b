"""How a run's configuration departs from its preset: the part of its protocol that lives in the config.

The preset is composed as ``train.py`` would (``experiment=<preset> attention=<backend>``) and compared key by
key with the run's resolved config. A run with fewer steps than its preset is *shortened*: shortened runs of one
setting are pooled whatever step each stopped at (a wall-clock cap stops every run at a different step), and the
table shows their span of steps. Every other difference (``task.max_length=1000``, ``attention.nb_features=128``)
makes it a variant, never averaged with runs of the preset as published.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lra.results.keys import COMPARISON_NEUTRAL, is_neutral

STEP_KEY = "trainer.max_steps"


@dataclass(frozen=True)
class Departure:
    """A run's config against its preset: ``differences`` as ``key=value`` and the shortening, if any."""

    differences: tuple[str, ...] = ()
    preset_steps: int | None = None  # the preset's steps, set only when the run trained fewer (shortened)

    @property
    def shortened(self) -> bool:
        return self.preset_steps is not None

    def label(self) -> str:
        parts = list(self.differences)
        if self.shortened:
            parts.insert(0, f"shortened (of {self.preset_steps:,} steps)")
        return "; ".join(parts)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def compare(run_config: dict[str, Any], preset_config: dict[str, Any], steps_done: int | None = None) -> Departure:
    """The differences of a run's config from its preset's, with max_steps below the preset's as shortening."""
    ours, preset = flatten(run_config), flatten(preset_config)
    differences, preset_steps = [], None
    for key in sorted(set(ours) | set(preset)):
        # A key the run's config lacks is an option added after the run; options are added with a default that
        # keeps what earlier code did, so the run had the preset's value.
        if is_neutral(key, COMPARISON_NEUTRAL) or key not in ours or ours[key] == preset.get(key, "<absent>"):
            continue
        if key == STEP_KEY and _fewer(ours.get(key), preset.get(key)):
            preset_steps = int(preset[key])
            continue
        differences.append(f"{key}={ours.get(key, '<absent>')}")
    planned = ours.get(STEP_KEY)
    if steps_done is not None and isinstance(planned, int) and steps_done < planned:  # stopped before its last step
        preset_steps = preset_steps or preset.get(STEP_KEY, planned)
    return Departure(tuple(differences), preset_steps)


def _fewer(ours: Any, preset: Any) -> bool:
    return isinstance(ours, int) and isinstance(preset, int) and ours < preset


class PresetConfigs:
    """Composes ``experiment=<preset> attention=<backend>`` from a config folder, once per pair."""

    def __init__(self, conf_dir: Path):
        self.conf_dir = Path(conf_dir).resolve()
        self._cache: dict[tuple[str, str], dict[str, Any] | str] = {}

    def get(self, preset: str, attention: str) -> dict[str, Any] | str:
        """The composed config, or a one-line reason it cannot be composed here."""
        key = (preset, attention)
        if key not in self._cache:
            self._cache[key] = self._compose(preset, attention)
        return self._cache[key]

    def _compose(self, preset: str, attention: str) -> dict[str, Any] | str:
        overrides = [f"experiment={preset}", f"attention={attention}"]
        try:
            if GlobalHydra.instance().is_initialized():  # inside `python -m lra.tables` (a Hydra app)
                cfg = compose(config_name="train", overrides=overrides)
            else:
                with initialize_config_dir(config_dir=str(self.conf_dir), version_base="1.3"):
                    cfg = compose(config_name="train", overrides=overrides)
        except Exception as error:  # a preset or backend this checkout does not have
            return f"preset {preset} with attention {attention} does not compose here ({type(error).__name__})"
        return OmegaConf.to_container(cfg, resolve=True)

    def departure(self, preset: str, attention: str, run_config: dict[str, Any],
                  steps_done: int | None) -> Departure:
        composed = self.get(preset, attention)
        if isinstance(composed, str):  # nothing to compare with: runs group only with identical configs
            return Departure((f"{composed}; config {fingerprint(run_config)}",))
        return compare(run_config, composed, steps_done)


def fingerprint(config: dict[str, Any]) -> str:
    kept = {key: value for key, value in flatten(config).items() if not is_neutral(key, COMPARISON_NEUTRAL)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]
