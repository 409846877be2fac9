"""`python -m benchmarks.gpu_report` (`make gpu-report`): everything a lent GPU should measure, within a budget.

    make gpu-report PY=python3                          # that interpreter as it is: no venv, no install
    python -m benchmarks.gpu_report --budget 480        # the same, by hand
    python -m benchmarks.gpu_report --rehearsal         # the same steps, tiny sizes, on this machine (CPU)

Steps, in order of value (benchmarks.gpu.steps): latency of the CUDA rows (SUNet-64 OS16 512x512,
batch 1 and 8, PyTorch FP32 eager the reference), the memory-bandwidth floor, a short AMP training
run (images/s, and the checkpoint parity needs), parity against PyTorch FP32, the tests marked gpu
or tensorrt, then the compile-heavy rows (TensorRT, AOTInductor, max-autotune). Each step runs as a
subprocess with a timeout taken from what is left of --budget; one that runs out is killed with its
children and reported as timed out, and the next one starts. A row that cannot run here (a library
missing, no GPU) is reported as skipped with the reason.

Everything goes to one folder (--output): report.json and README.md, rewritten after every step so
that a run killed at any moment leaves a valid report of what finished, each step's log, and the
reports of the steps. Large files (checkpoints, engines) go to --workdir. The last thing printed is
a short latency table. Without a GPU (and without --rehearsal) it says so and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.flags import add_flag
from sunet_deploy.fileio import atomic_write_bytes

from .harness.budget import Budget, last_line, run_with_timeout
from .harness.env import environment
from .gpu.steps import GPU, REHEARSAL, ROOT, STEPS, Context, Plan, Step
from .gpu.tables import markdown, summary_text
from .harness.report import write_json

RESERVE_S = 3.0  # kept back from every step's timeout for the report's last write
MIN_STEP_S = 5.0  # a step is not started with less time than this
REPORT_FILES = ("report.json", "README.md", "logs", "bandwidth-floor.json",
                *(s.name for s in STEPS))  # fmt: skip


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived while a step ran."""


class Report:
    """report.json and README.md in one folder, rewritten (atomically) at every change."""

    def __init__(self, ctx: Context, budget: Budget, rehearsal: bool, steps: list[Step]) -> None:
        self.ctx, self.budget = ctx, budget
        self.data = {
            "title": ctx.plan.title, "rehearsal": rehearsal, "device": ctx.plan.device, "state": "running",
            "budget_s": budget.seconds, "elapsed_s": 0.0, "started_utc": _utc(), "updated_utc": _utc(),
            "environment": environment(),
            "steps": [{"name": s.name, "about": s.about, "outcome": "pending"} for s in steps],
        }  # fmt: skip

    def step(self, name: str) -> dict:
        return next(record for record in self.data["steps"] if record["name"] == name)

    def save(self) -> None:
        self.data.update(updated_utc=_utc(), elapsed_s=round(self.budget.elapsed(), 1))
        write_json(self.data, self.ctx.out / "report.json")
        atomic_write_bytes(self.ctx.out / "README.md", markdown(self.data).encode())


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def run_step(step: Step, ctx: Context, budget: Budget, report: Report) -> None:
    """Run one step and record its outcome: ok, failed, skipped (with the reason) or timed out."""
    record = report.step(step.name)
    reason = step.needs(ctx)
    timeout = budget.timeout(step.share)
    if reason is None and budget.left() < MIN_STEP_S:
        reason = f"budget spent ({max(budget.left(), 0):.0f} s left)"
    if reason:
        record.update(outcome="skipped", reason=reason)
        print(f"== {step.name}: skipped: {reason}", flush=True)
        return report.save()
    argv, log = [sys.executable, *step.command(ctx)], ctx.out / "logs" / f"{step.name}.log"
    record.update(outcome="running", timeout_s=round(timeout), command=shlex.join(["python", *argv[1:]]),
                  log=str(log.relative_to(ctx.out)))  # fmt: skip
    print(f"== {step.name} (at most {timeout:.0f} s; log {log})", flush=True)
    start = time.monotonic()

    def started(pid: int) -> None:
        record["pid"] = pid
        report.save()

    try:
        status = run_with_timeout(argv, log, timeout, env=child_environment(), on_start=started)
    finally:
        record.pop("pid", None)
        record["seconds"] = round(time.monotonic() - start, 1)
    record.update(outcome_of(step, ctx, status, timeout, log))
    print(f"   {record['outcome']} in {record['seconds']} s" + (f": {record['reason']}" if record.get("reason") else ""),
          flush=True)  # fmt: skip
    report.save()


def outcome_of(step: Step, ctx: Context, status: int | None, timeout: float, log: Path) -> dict:
    """The record fields of a finished command: outcome, reason, and the result its files hold."""
    try:
        result, unread = step.read(ctx), None
    except Exception as exc:  # a step that wrote nothing (or half) is reported, not fatal to the run
        result, unread = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    fields = {"result": result} if result is not None else {}
    if status is None:
        return {**fields, "outcome": "timed out", "reason": f"timed out after {timeout:.0f} s"}
    if status == 5 and step.name.startswith("gpu-tests"):  # pytest: no test selected
        return {**fields, "outcome": "skipped", "reason": "no test carries these markers"}
    if status != 0:
        return {**fields, "outcome": "failed", "reason": f"exit {status}: {last_line(log)}"}
    if unread:
        return {"outcome": "failed", "reason": f"exit 0 but its result cannot be read: {unread}"}
    return {**fields, "outcome": "ok"}


def child_environment() -> dict[str, str]:
    """This process's environment, with this copy of the code first on the path of every step."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run(ctx: Context, budget: Budget, rehearsal: bool, steps: list[Step] = STEPS) -> dict:
    """Every step in order, the report rewritten at each change; returns the report's data."""
    report = Report(ctx, budget, rehearsal, steps)
    report.save()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for step in steps:
            run_step(step, ctx, budget, report)
        report.data["state"] = "finished"
    except (Interrupted, KeyboardInterrupt) as exc:
        running = [r for r in report.data["steps"] if r["outcome"] == "running"]
        for record in running:
            record.update(outcome="interrupted", reason=f"interrupted ({exc or 'SIGINT'})")
        report.data["state"] = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        report.save()
    return report.data


def prepare_output(out: Path, overwrite: bool) -> str | None:
    """Create the report folder; None, or why it cannot be used (an earlier report without --overwrite)."""
    if (out / "report.json").exists():
        if not overwrite:
            return f"{out} holds an earlier report: pass --overwrite to replace it, or choose another --output"
        for name in REPORT_FILES:  # only what a report writes: nothing of the earlier run mixes into this one
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_report", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rehearsal", action="store_true",
                        help="the same steps with SUNet-tiny at 64x64 on the device here (CPU: CUDA rows skipped), "
                             f"default budget {REHEARSAL.budget_s:.0f} s")  # fmt: skip
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help=f"the whole run's time (default {GPU.budget_s:.0f}: 9 minutes less a margin for "
                             "starting Python and packing the report)")  # fmt: skip
    add_flag(parser, "--output", help="report folder (default docs/bench/gpu; rehearsal: runs/gpu-report-rehearsal)")
    add_flag(parser, "--workdir", help="checkpoints and artifacts (default runs/gpu-report, or runs/gpu-report-rehearsal-work)")
    add_flag(parser, "--overwrite", help="replace an earlier report in --output")
    parser.add_argument("--skip", default="", metavar="STEP,...",
                        help=f"steps to leave out (reported as skipped): {', '.join(s.name for s in STEPS)}")
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be positive")
    args.skip = [name for name in args.skip.split(",") if name]
    unknown = sorted(set(args.skip) - {s.name for s in STEPS})
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)} in --skip")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget or (REHEARSAL if args.rehearsal else GPU).budget_s, RESERVE_S)
    cuda = torch.cuda.is_available()
    if not cuda and not args.rehearsal:
        print(f"no GPU here: torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda}); nothing "
              "measured, nothing written (python -m benchmarks.gpu_report --rehearsal runs the steps on this CPU)")
        return EXIT_OK
    plan: Plan = dataclasses.replace(REHEARSAL if args.rehearsal else GPU, device="cuda" if cuda else "cpu")
    default = Path("runs/gpu-report-rehearsal") if args.rehearsal else Path("docs/bench/gpu")
    out = args.output or default
    ctx = Context(plan, out, args.workdir or Path("runs/gpu-report-rehearsal-work" if args.rehearsal else "runs/gpu-report"))
    problem = prepare_output(out, args.overwrite)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{plan.title} on {plan.device}, budget {budget.seconds:.0f} s; report in {out} (code from {ROOT})", flush=True)
    steps = [s if s.name not in args.skip else dataclasses.replace(s, needs=lambda ctx: "left out with --skip")
             for s in STEPS]  # fmt: skip
    data = run(ctx, budget, args.rehearsal, steps)
    print(f"wrote {out / 'README.md'} and {out / 'report.json'} ({data['state']}, {data['elapsed_s']} s)")
    print(summary_text(data), flush=True)
    if data["state"] == "interrupted":
        return EXIT_FAILED
    return EXIT_FAILED if any(r["outcome"] == "failed" for r in data["steps"]) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
