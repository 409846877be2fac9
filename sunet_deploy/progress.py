"""Progress bars for long work, readable in a terminal and in a log file (torch-free).

    for job in progress(jobs, desc="predict", unit="file"):
        ...

`progress` is tqdm's bar where its stream is a terminal. Where it is not (a log file, a pipe, a CI
job), tqdm would still redraw the bar ten times a second with carriage returns, so one run's log
held thousands of redraws; there the same call gives `LogBar`: a tqdm whose drawing is replaced by
plain lines, one at most each `LogBar.step` of the total and `LogBar.gap` seconds apart (or each
`LogBar.silence` seconds without a total or without progress), and a last line at the end. Every
progress bar in the project is made here, so every one behaves so.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm


def progress(iterable: Iterable | None = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A progress bar over `iterable` (or updated by hand), with tqdm's keyword arguments: a tqdm bar on a
    terminal, plain lines (`LogBar`) elsewhere."""
    stream = sys.stderr if file is None else file
    if is_terminal(stream):
        return tqdm(iterable, file=stream, **{"dynamic_ncols": True, **kwargs})
    kwargs.pop("dynamic_ncols", None)
    return LogBar(iterable, file=stream, **kwargs)


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _Discard:
    """Where tqdm's own drawing goes (carriage returns, clearing, cursor moves): nowhere."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class LogBar(tqdm):
    """A tqdm that writes plain lines: at most one each `step` of the total, `gap` seconds apart, or after
    `silence` seconds; a last line when it closes (when it is left, or once it has said anything)."""

    step = 0.1
    gap = 5.0
    silence = 60.0
    clock = staticmethod(time.time)  # tqdm's own clock; tests replace it

    def __init__(self, iterable: Iterable | None = None, *, file: IO[str] | None = None, **kwargs: Any) -> None:
        self.stream = sys.stderr if file is None else file
        self.lines = 0
        self.said_at = self.said_n = None  # set once tqdm's counters exist
        kwargs.setdefault("mininterval", 1.0)  # how often tqdm asks display() whether a line is due
        super().__init__(iterable, file=_Discard(), **kwargs)
        self._time = self.clock
        self.start_t = self.last_print_t = self.said_at = self.clock()
        self.said_n = self.n

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.said_at is None or msg == "":  # tqdm's first draw, or its clearing of a bar not left
            return True
        now = self.clock()
        if self.disable:  # closing: tqdm asks for the final draw of a bar that is left
            self.say(final=True)
        elif self.total and self.n >= self.total:  # the last line says it, at close
            pass
        elif now - self.said_at >= self.silence and self.n != self.said_n:
            self.say()
        elif self.total and now - self.said_at >= self.gap and (self.n - self.said_n) >= self.step * self.total:
            self.say()
        return True

    def close(self) -> None:
        if not self.disable and not self.leave and self.lines:
            self.say(final=True)  # tqdm draws no last line for a bar that is not left
        super().close()

    def say(self, final: bool = False) -> None:
        self.said_at, self.said_n = self.clock(), self.n
        self.lines += 1
        self.stream.write(self.line(final) + "\n")
        self.stream.flush()

    def line(self, final: bool = False) -> str:
        """"predict: 10/20 files (50 %), 3.1 s, 3.2 files/s, about 3.1 s left" (the last: "done in ...")."""
        elapsed = self.clock() - self.start_t
        unit = self.unit if self.n == 1 or self.unit in ("it", "B") or self.unit.endswith("s") else f"{self.unit}s"
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc or 'progress'}: {count} {unit}"]
        if self.total and not final:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else None
        parts.append(f"done in {elapsed:.1f} s" if final else f"{elapsed:.1f} s")
        if rate:
            parts.append(f"{rate:.3g} {unit}/s")
            if self.total and not final and self.n < self.total:
                parts.append(f"about {(self.total - self.n) / rate:.0f} s left")
        if self.postfix:
            parts.append(str(self.postfix).strip(", "))
        return ", ".join(parts)
