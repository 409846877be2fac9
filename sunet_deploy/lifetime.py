"""A child process that dies with its parent, however the parent dies (SIGKILL included).

Used as (part of) a subprocess `preexec_fn`: the served Triton server (runtimes.serve) and the GPU
report's steps (benchmarks.harness.budget). Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
For processes started by others (a Ray cluster's), `processes_with` finds them by a variable they
inherit, and `process_table` and `descendants` find the ones they start in turn.
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


def process_table() -> dict[int, tuple[int, int]]:
    """Every live process (zombies left out): pid -> (parent pid, start time in clock ticks since boot; with
    the pid it names one process, not a later one given the same pid)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[int]:
    """The children of `roots`, their children, and so on, in a process_table."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
