"""What ``train.py`` and ``evaluate.py`` share around Hydra: a short message instead of a traceback for an
error a user can fix (``HYDRA_FULL_ERROR=1`` shows the traceback), exit codes, a run folder per process,
and one console line per log message.

Exit codes: 0 done (or already finished), 2 a config, data or checkpoint error (nothing was started, or the
record says ``failed``), 3 the run diverged (the record says ``diverged``), 1 anything else.

This module is imported before Hydra composes the config, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def register_resolvers() -> None:
    """``${lra.pid:}`` in ``conf/hydra/default.yaml``: runs started in the same second get their own folder.
    Cached, as Hydra's ``now``: a sweep's jobs share the folder their launcher resolved."""
    OmegaConf.register_new_resolver("lra.pid", lambda: os.getpid(), use_cache=True, replace=True)


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Exit with the valid keys when an override names a key the config does not have.

    Hydra's own message for ``model.d_modle=64`` suggests ``+model.d_modle=64``, which would add the typo;
    this composes the config as Hydra will, first, and names the keys of ``model`` instead.
    """
    message = None if full_errors() else unknown_override(config_name, argv)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def unknown_override(config_name: str, argv: list[str]) -> str | None:
    """The message for the first override of a key that does not exist; None if there is none (or if the
    command line is one Hydra itself will refuse or handle: sweeps, a bad group, a bad flag)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from lra.conf import CONF_DIR, unknown_key, unknown_key_message

    try:
        from hydra._internal.utils import get_args_parser

        args = get_args_parser().parse_args(argv)
    except (ImportError, SystemExit):
        return None
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        try:
            compose(args.config_name or config_name, overrides=overrides)
        except ConfigCompositionException as error:
            found = unknown_key(error)
            if found is None:
                return None
            key, parent, valid = found
            if parent == "attention" and "attention=custom" in overrides:
                return (f"attention.{key}: the options of a backend of your own are added with a +: "
                        f"+attention.{key}=... (python -m lra.attention check TARGET checks them)")
            return unknown_key_message(key, parent, valid)
        except Exception:  # anything else: Hydra says it in its own words
            return None
    return None


def one_console_line_per_message() -> None:
    """Lightning prints its messages with a handler of its own on stderr and also passes them on to the root
    logger, which Hydra prints to stdout and ``train.log``: every line came twice. Where the root logger has
    handlers (Hydra's), Lightning's own console handlers go."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix (config, data, checkpoint), each with a message that says how."""
    from lra.attention import UnknownBackendError
    from lra.data import DataError, UnknownTaskError
    from lra.train.config import ConfigError

    return ConfigError, DataError, UnknownBackendError, UnknownTaskError


def run_or_explain(function: Callable[..., Any], *args: Any) -> Any:
    """Run an entry point; an error a user can fix becomes ``error: <message>`` and exit code 2, a diverged
    run its message and exit code 3."""
    from lra.train.run import RunDiverged

    one_console_line_per_message()
    try:
        return function(*args)
    except RunDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except user_errors() as error:
        if full_errors():
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
