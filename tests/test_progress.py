"""Every progress bar (sunet_deploy.progress): tqdm's bar on a terminal; in a log file or a pipe, plain lines
(no carriage return), few of them, and a last one saying how long the work took."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from sunet_deploy.progress import LogBar, progress

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(LogBar, "clock", clock)
    return clock


def test_a_log_gets_a_line_every_tenth_at_most_every_few_seconds(clock):
    out = io.StringIO()
    for _ in progress(range(1000), desc="predict", unit="file", file=out, mininterval=0):
        clock.now += 0.1  # 100 s in all: a tenth every 10 s
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10, lines  # nine tenths, then the last line
    assert lines[0].startswith("predict: 100/1000 files (10 %), 10.0 s, 10 files/s, about 90 s left")
    assert lines[-1] == "predict: 1000/1000 files, done in 100.0 s, 10 files/s"

    out = io.StringIO()
    for _ in progress(range(1000), desc="fast", file=out, mininterval=0):
        clock.now += 0.001  # 1 s in all: no line before the last
    assert out.getvalue().splitlines() == ["fast: 1000/1000 it, done in 1.0 s, 1e+03 it/s"]


def test_a_long_step_without_a_total_says_it_is_alive(clock):
    out = io.StringIO()
    bar = progress(desc="frames", unit="frame", file=out, leave=False, mininterval=0)
    for _ in range(10):
        clock.now += 30
        bar.update(1)
        bar.set_postfix(loss="0.5", refresh=False)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6, lines  # every 60 s, then a last line (a bar not left, but it said something)
    assert lines[0] == "frames: 2 frames, 60.0 s, 0.0333 frames/s, loss=0.5"
    assert lines[-1].startswith("frames: 10 frames, done in 300.0 s")

    quiet = io.StringIO()
    for _ in progress(range(3), desc="quiet", file=quiet, leave=False, mininterval=0):
        clock.now += 1
    assert quiet.getvalue() == ""  # a short bar that is not left says nothing


def test_a_disabled_bar_says_nothing(clock):
    out = io.StringIO()
    bar = progress(total=10, file=out, disable=True)
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_tqdm(clock):
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            bar = progress(range(5), desc="tty", file=terminal)
            assert not isinstance(bar, LogBar)
            list(bar)
            terminal.flush()
        assert b"\r" in os.read(leader, 10000)
    finally:
        os.close(leader)
        os.close(follower)


def test_a_command_writes_a_log_without_redraws(tmp_path):
    """A real command, its stderr a pipe: one progress line at its end, no carriage return."""
    result = subprocess.run([sys.executable, "-m", "sunet_deploy.data", str(tmp_path / "data"), "--synthetic-samples", "40",
                             "--synthetic-size", "32x32"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"writing {tmp_path / 'data'}: 40/40 images, done in")
    assert len(result.stderr.splitlines()) <= 11
