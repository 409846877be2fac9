"""A child process that dies with its parent, however the parent dies (SIGKILL included).

Used as (part of) a subprocess `preexec_fn`: the served Triton server (runtimes.serve) and the GPU
report's steps (benchmarks.harness.budget). Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
For processes started by others (a Ray cluster's), `processes_with` finds them by a variable they
inherit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Run in a child before exec: `signum` when the parent (pid `parent`) dies."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def processes_with(variable: str, value: str) -> list[int]:
    """Pids of the processes whose environment has `variable=value` (all that inherited it; Linux /proc)."""
    marker = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return found


def command_line(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
