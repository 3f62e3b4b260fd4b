"""``python -m lra.attention check BACKEND [option=value ...]``: which parts of the contract a backend holds;
``python -m lra.attention table``: the registered backends and their capability flags (the README's table).

BACKEND is a registered name, an ``lra.attention`` entry point or ``module:Class`` (your own subclass of
``lra.attention.AttentionBackend``); options are its constructor's keyword options, in Hydra's value syntax
(``window=5 sliding=true``). Prints one line a part (passed, failed with the failing case, or skipped with
the reason) and exits 1 when a part fails, 2 when the backend cannot be found or an option is unknown.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from lra.attention.contract import Outcome, check_all
from lra.attention.registry import UnknownBackendError, capability_table

USAGE = ("usage: python -m lra.attention check BACKEND [option=value ...]   (BACKEND: a name or module:Class)\n"
         "       python -m lra.attention table")
MARKS = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}


def report(name: str, outcomes: list[Outcome]) -> str:
    lines = [f"contract of attention {name}:"]
    for outcome in outcomes:
        detail = f": {outcome.detail}" if outcome.detail else ""
        lines.append(f"  {MARKS[outcome.status]} {outcome.part}{detail}")
    failed = sum(outcome.status == "failed" for outcome in outcomes)
    lines.append(f"{failed} of {len(outcomes)} parts failed" if failed else "every part that applies holds")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv == ["table"]:
        print(capability_table())
        return 0
    if len(argv) < 2 or argv[0] != "check" or any("=" not in arg for arg in argv[2:]):
        print(USAGE, file=sys.stderr)
        return 2
    name, overrides = argv[1], argv[2:]
    try:
        options = OmegaConf.to_container(OmegaConf.from_dotlist(overrides))
        outcomes = check_all(name, options)
    except UnknownBackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(name, outcomes))
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
