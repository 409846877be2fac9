"""Nothing `python -m train` starts outlives it, whatever signal ends it: DataLoader workers, the
multiprocessing fork server and resource tracker, torchrun's ranks and everything they started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train.processes import Interrupted, interrupts_deferred, signals_interrupt

psutil = pytest.importorskip("psutil", reason="psutil is not installed (the [torch] extra)")

REPO = Path(__file__).resolve().parents[1]
ENDLESS = ("--arch sunet_tiny --crop-size 32 --batch-size 4 --synthetic-samples 32 --val-synthetic-samples 4 --synthetic-size 40x48 "
           "--iterations 1000000 --val-every 1000000 --no-progress --log-every 1 --device cpu")  # fmt: skip


@pytest.fixture
def start(tmp_path):
    """start(launcher, workers): an endless training run in a subprocess, killed with all its
    descendants at the end of the test whatever happened."""
    started = []

    def start_(launcher: list[str], workers: int) -> subprocess.Popen:
        cmd = [sys.executable, *launcher, "-m", "train", *ENDLESS.split(), "--workers", str(workers),
               "--out-dir", str(tmp_path / "run")]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        with open(tmp_path / "output.txt", "w") as output:  # not a pipe: orphans would hold it open
            started.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT))
        return started[-1]

    yield start_
    for proc in started:
        if proc.poll() is None:
            for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                process.kill()
            proc.wait()


def wait_for_training(proc: subprocess.Popen, tmp_path: Path, processes: int) -> list[psutil.Process]:
    """The descendants of `proc` once training runs (a step logged) and `processes` of them exist."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "output.txt").read_text()[-2000:]
        descendants = psutil.Process(proc.pid).children(recursive=True)
        if len(descendants) >= processes and (tmp_path / "run" / "metrics.jsonl").exists():
            return descendants
        time.sleep(0.2)
    pytest.fail(f"training did not start within 90 s: {(tmp_path / 'output.txt').read_text()[-2000:]}")


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    def running(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [p for p in processes if running(p)]


def survivors_after(proc: subprocess.Popen, descendants: list[psutil.Process], sig: int, seconds: float = 10) -> list[str]:
    """Send `sig` to `proc`; what of `descendants` still runs `seconds` after `proc` ended (then killed)."""
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + seconds
    while alive(descendants) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(descendants)
    described = [f"{p.pid} {' '.join(p.cmdline())[:90]}" for p in left]
    for p in left:  # never leak them, even when the test fails
        p.kill()
    return described


def test_sigkilled_trainer_leaves_no_process_behind(start, tmp_path):
    proc = start([], workers=2)
    descendants = wait_for_training(proc, tmp_path, 2 + 2)  # the workers, fork server, resource tracker
    assert survivors_after(proc, descendants, signal.SIGKILL) == []


def test_sigterm_ends_the_trainer_promptly_with_one_line(start, tmp_path):
    proc = start([], workers=1)
    descendants = wait_for_training(proc, tmp_path, 1 + 2)
    assert survivors_after(proc, descendants, signal.SIGTERM) == []
    assert proc.returncode == 128 + signal.SIGTERM
    output = (tmp_path / "output.txt").read_text()
    assert "Traceback" not in output and "error: interrupted by SIGTERM at step" in output, output[-2000:]


def test_sigkilled_torchrun_leaves_no_rank_behind(start, tmp_path):
    proc = start(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], workers=1)
    descendants = wait_for_training(proc, tmp_path, 2 * (1 + 3))  # per rank: worker, fork server, tracker
    assert survivors_after(proc, descendants, signal.SIGKILL) == []


def test_an_interrupt_inside_a_deferred_block_is_raised_on_its_way_out():
    reached_the_end, handler_before = False, signal.getsignal(signal.SIGTERM)
    with signals_interrupt():
        with pytest.raises(Interrupted) as caught:
            with interrupts_deferred():  # as around receiving a batch from a worker
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # python runs signal handlers between bytecodes: it has run by now
                reached_the_end = True
    assert reached_the_end and caught.value.signum == signal.SIGTERM and caught.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) == handler_before
