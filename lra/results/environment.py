"""Where a run or a benchmark ran: the device, the versions, the commit and the host; one description for all."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def git_commit() -> str | None:
    """HEAD of the checkout lra runs from (``-dirty`` with uncommitted changes); ``LRA_COMMIT`` where the
    tree has no ``.git`` (a copy sent to a GPU machine)."""
    if os.environ.get("LRA_COMMIT"):
        return os.environ["LRA_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def describe_device(device: torch.device | None = None) -> str:
    """The GPU's name ("NVIDIA H200"), or the CPU's architecture and cores; the current GPU by default."""
    import torch

    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """The ``environment`` of a record: device (the current GPU by default), torch, lightning, python,
    git_commit, hostname."""
    import lightning
    import torch

    return {
        "device": describe_device(device),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
    }
