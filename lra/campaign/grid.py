"""A campaign's grid: presets x backends x seeds, each cell the config ``python train.py`` would run."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from lra.train.config import ConfigError, validate
from lra.train.identity import identity_key

CONF = Path(__file__).resolve().parents[2] / "conf"
ENTRY_KEYS = ("experiment", "overrides", "backends")
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


@dataclass(frozen=True)
class Entry:
    """One preset of the grid with the overrides of its own (``lra/text`` at ``task.max_length=1000``)."""

    experiment: str | None
    overrides: tuple[str, ...] = ()
    backends: tuple[str, ...] | None = None  # None: the campaign's

    @property
    def label(self) -> str:
        return " ".join([self.experiment or "(no preset)", *self.overrides])

    def train_overrides(self) -> list[str]:
        return ([f"experiment={self.experiment}"] if self.experiment else []) + list(self.overrides)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid: the train.py overrides that make it, its composed config and its identity."""

    entry: Entry
    backend: str
    seed: int
    overrides: tuple[str, ...]
    config: DictConfig
    identity: str

    @property
    def max_steps(self) -> int:
        return int(self.config.trainer.max_steps)

    @property
    def label(self) -> str:
        return f"{self.entry.label} | {self.backend} | seed {self.seed}"

    @property
    def slug(self) -> str:
        """A file name for the run's log: preset, backend, seed and identity."""
        name = f"{self.entry.experiment or 'run'}-{self.backend}-s{self.seed}-{self.identity}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def parse_duration(value: Any, key: str) -> float:
    """Seconds in ``90``, ``90s``, ``9m``, ``1h30m``; a short error naming the key otherwise."""
    text = str(value).strip()
    match = DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ConfigError(f"{key}={value!r} is not a duration; write seconds, minutes or hours: 90s, 9m, 1h30m")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    return 3600 * hours + 60 * minutes + seconds


def entries(presets: ListConfig) -> list[Entry]:
    """The campaign's ``presets``: names, or ``{experiment: NAME, overrides: [...], backends: [...]}``."""
    found = []
    for item in presets:
        if isinstance(item, str):
            found.append(Entry(item))
        elif isinstance(item, DictConfig) and "experiment" in item and set(item) <= set(ENTRY_KEYS):
            backends = item.get("backends")
            found.append(Entry(item.experiment, tuple(str(o) for o in item.get("overrides") or ()),
                               None if backends is None else tuple(str(b) for b in backends)))
        else:
            raise ConfigError(f"presets: {OmegaConf.to_yaml(item).strip()!r} is neither a preset name nor "
                              "{experiment: NAME, overrides: [KEY=VALUE, ...], backends: [NAME, ...]}")
    return found


def compose_train(overrides: list[str]) -> DictConfig:
    """The config ``python train.py OVERRIDES`` runs with."""
    if GlobalHydra.instance().is_initialized():  # inside `python -m lra.campaign` (a Hydra app on conf/)
        return compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@functools.cache
def preset_config(experiment: str | None, backend: str) -> DictConfig:
    """``experiment=NAME attention=BACKEND`` and nothing else: the values a preset gives (composed once)."""
    return compose_train([*([f"experiment={experiment}"] if experiment else []), f"attention={backend}"])


def expand(cfg: DictConfig) -> list[PlannedRun]:
    """Every run of the grid, preset by preset, then seed by seed, then backend by backend: the order runs start
    in, so that each preset gets a first seed of every backend before it gets a second."""
    grid = entries(cfg.presets)
    backends_of = {entry: entry.backends or tuple(str(b) for b in cfg.backends) for entry in grid}
    if not grid or not all(backends_of.values()) or not cfg.seeds:
        raise ConfigError("a campaign needs presets, backends and seeds (conf/campaign/NAME.yaml)")
    common = [str(o) for o in cfg.overrides]
    composed = {(entry, backend): _compose(entry, backend, common) for entry in grid for backend in backends_of[entry]}
    runs = []
    for entry in grid:
        for seed in cfg.seeds:
            for backend in backends_of[entry]:
                overrides = (*entry.train_overrides(), f"attention={backend}", *common, f"seed={seed}")
                config = composed[entry, backend].copy()
                config.seed = int(seed)  # as the override seed=S would set it: composing once per seed costs ~0.1 s
                runs.append(PlannedRun(entry, str(backend), int(seed), overrides, config, identity_key(config)))
    return runs


def _compose(entry: Entry, backend: str, common: list[str]) -> DictConfig:
    overrides = [*entry.train_overrides(), f"attention={backend}", *common]
    try:
        config = compose_train(overrides)
    except Exception as error:  # Hydra's errors for a missing preset or a bad override
        raise ConfigError(f"{entry.label} with attention={backend} does not compose: {error}") from None
    validate(config)
    return config
