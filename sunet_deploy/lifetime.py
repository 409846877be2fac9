"""A child process that dies with its parent, however the parent dies (SIGKILL included).

Used as (part of) a subprocess `preexec_fn`: the served Triton server (runtimes.serve) and the GPU
report's steps (benchmarks.harness.budget). Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Run in a child before exec: `signum` when the parent (pid `parent`) dies."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
