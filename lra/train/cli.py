"""Turn the errors a user can fix into one short message instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from lra.attention import UnknownBackendError
from lra.data import DataError, UnknownTaskError
from lra.train.config import ConfigError

USER_ERRORS = (ConfigError, DataError, UnknownBackendError, UnknownTaskError)


def run_or_explain(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
