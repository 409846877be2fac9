"""Commands run under one time budget, and reports that stay valid whenever the run is killed.

Each command runs in a process group of its own with a timeout; when it runs out, the whole group
(its children too) is killed. On Linux a command also dies with the process that started it, so a
report killed with SIGKILL leaves no step running. Reports are written atomically (a temporary
file renamed over the old one), so a reader sees the previous version or the new one, never half.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sunet_deploy.lifetime import die_with_parent


class Budget:
    """Seconds left until a deadline, and the timeout a step may take out of them."""

    def __init__(self, seconds: float, reserve: float) -> None:
        self.seconds, self.reserve = seconds, reserve
        self.start = time.monotonic()
        self.deadline = self.start + seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds a step may still use (the reserve for the last report write kept back)."""
        return self.deadline - time.monotonic() - self.reserve

    def timeout(self, share: float) -> float:
        """At most `share` of the whole budget, and never more than is left."""
        return min(share * self.seconds, self.left())


def _new_group_dying_with_parent() -> Callable[[], None]:
    """A preexec_fn: its own process group, and SIGKILL when the parent dies (sunet_deploy.lifetime)."""
    parent = os.getpid()

    def preexec() -> None:
        os.setpgid(0, 0)
        die_with_parent(parent, signal.SIGKILL)

    return preexec


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def run_with_timeout(argv: list[str], log: Path, timeout: float, env: dict | None = None,
                     on_start: Callable[[int], None] = lambda pid: None) -> int | None:  # fmt: skip
    """Run `argv` with stdout and stderr to `log`; its exit status, or None when it ran past `timeout`
    seconds. Whatever happens (a timeout, an exception, a signal to this process), the command's
    process group is killed before this returns, so nothing it started keeps running."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_new_group_dying_with_parent())  # fmt: skip
        try:
            on_start(proc.pid)
            return proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            return None
        finally:
            kill_group(proc.pid)  # also takes what a finished command left behind in its group
            proc.wait()


def last_line(log: Path) -> str:
    """The last non-empty line of a log (a failed command's reason), '' if none."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""
