"""The configs under ``conf/``, composed the way every entry point composes them, and one short message for an
override that names a key, a group option or a syntax the configs do not have.

At the bottom layer with ``lra.results``: the data, probe and training commands all use it.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class OverrideError(ValueError):
    """A command-line override the config cannot take; the message says which and what would do."""


def unknown_key_message(key: str, parent: str, valid: list[str]) -> str:
    """``key`` is not among ``valid`` (the keys of ``parent``, "" for the top level): say so, with the
    closest valid names."""
    where = f"{parent} has" if parent else "the config has"
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"{(parent + '.') if parent else ''}{key}: no such key{hint}\n"
            f"{where}: {', '.join(sorted(valid))}")


def unknown_key(error: Exception) -> tuple[str, str, list[str]] | None:
    """``(key, parent, valid keys)`` when Hydra refused an override of a key the config lacks, else None.

    Hydra's own message for ``model.d_modle=64`` suggests ``+model.d_modle=64``, which would add the typo."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__
    if (isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.parent_node is not None
            and str(error).startswith("Could not override")):
        return str(cause.key), (cause.full_key or "").rpartition(".")[0], [
            str(key) for key in cause.parent_node if key != "hydra"]
    return None


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides`` (Hydra's syntax); a mistake raises ``OverrideError``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=overrides)
    except MissingConfigException as error:  # a group option that has no yaml: name the ones there are
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        raise OverrideError(f"{group}={option}: no such config; {group}: {', '.join(sorted(error.options))}"
                            if group and error.options else str(error).splitlines()[0]) from None
    except OverrideParseException as error:
        bad = next((o for o in overrides if "=" not in o), None)
        raise OverrideError(f"{bad!r} is not KEY=VALUE (settings are Hydra overrides: key=value, group=option)"
                            if bad else str(error).splitlines()[0]) from None
    except ConfigCompositionException as error:
        found = unknown_key(error)
        raise OverrideError(unknown_key_message(*found) if found else str(error).splitlines()[0]) from None


def integer(cfg: DictConfig, key: str) -> int | None:
    """``cfg[key]`` as an int (None stays None): YAML and Hydra read ``seed=x`` as the string 'x'."""
    value = cfg[key]
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise OverrideError(f"{key} must be an integer, got {value!r}")


def number(cfg: DictConfig, key: str) -> float:
    """``cfg[key]`` as a float; an int is one too."""
    value = cfg[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise OverrideError(f"{key} must be a number, got {value!r}")


def exit_status(command: Callable[[], object], user_errors: tuple[type[Exception], ...]) -> int:
    """Run a command-line entry point: 0 when it is done; 2 and one ``error: <message>`` on stderr for an error a
    user can fix (``user_errors``, and ``OverrideError``), not a traceback (``HYDRA_FULL_ERROR=1`` shows it)."""
    try:
        command()
    except (OverrideError, *user_errors) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
