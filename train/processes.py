"""Nothing the trainer starts outlives it, whatever ends it; SIGTERM and SIGINT end it cleanly.

Why children would outlive a killed trainer: DataLoader workers are forked by a multiprocessing
fork server, so their parent is the fork server, which torch's worker watchdog watches. Every
worker also holds the fork server's "alive" pipe and the resource tracker's pipe open, and those
two exit only at EOF on their pipe. So, after a SIGKILL, all of them would wait for each other for
ever. The fix: every worker kills itself as soon as the trainer process ends (it waits on a pidfd
of the trainer in a thread); then both pipes reach EOF and the fork server and tracker exit too.
A torchrun rank does the same with torchrun, which sends its ranks nothing when it is SIGKILLed.
(Not prctl(PR_SET_PDEATHSIG): a worker's parent is the fork server, not the trainer, and the death
signal follows the parent *thread*, which for a rank is whichever torchrun thread started it.)
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

LAUNCHER_ENV = "TORCHELASTIC_RUN_ID"  # set by torchrun in every rank's environment


def exit_with(pid: int) -> None:
    """SIGKILL this process as soon as process `pid` ends (no-op where Linux pidfds are missing)."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:  # already ended
        _kill_self()
    except OSError:  # pidfds unsupported here (kernel before 5.3, a seccomp filter): no watcher
        return
    threading.Thread(target=_kill_self_when_readable, args=(pidfd,), name=f"exit-with-{pid}", daemon=True).start()


def _kill_self_when_readable(pidfd: int) -> None:
    poller = select.poll()  # not select.select, which fails on descriptors past 1023
    poller.register(pidfd, select.POLLIN)  # a pidfd becomes readable when its process has ended
    poller.poll()
    _kill_self()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def tie_to_launcher() -> None:
    """Under torchrun, end with torchrun (its parent), however torchrun ends."""
    if LAUNCHER_ENV in os.environ:
        exit_with(os.getppid())


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, like KeyboardInterrupt: no `except Exception` stops it."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}{detail}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by this signal"


class _Deferral:
    active = False
    pending: int | None = None


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside, the first SIGTERM or SIGINT raises Interrupted in the main thread (after the end of
    an `interrupts_deferred` block); a second one ends the process at once, should unwinding hang."""
    watched = (signal.SIGTERM, signal.SIGINT)

    def interrupt(signum: int, _frame) -> None:
        for sig in watched:
            signal.signal(sig, signal.SIG_DFL)
        if _Deferral.active:
            _Deferral.pending = signum
        else:
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in watched}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Work that must not be cut in the middle: an interrupt arriving inside is raised on the way out."""
    _Deferral.active = True
    try:
        yield
    finally:
        _Deferral.active = False
        if _Deferral.pending is not None:
            signum, _Deferral.pending = _Deferral.pending, None
            raise Interrupted(signum)
