"""benchmarks.gpu_report: the rehearsal runs end to end where onnxslim, tritonclient and TensorRT cannot be
imported; steps keep to the budget and a step that runs out is killed with its children; a run killed
with SIGKILL half-way leaves a report that parses; without a GPU (no --rehearsal) nothing is written."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import gpu_report
from benchmarks.gpu.steps import REHEARSAL, STEPS, Context, Step
from benchmarks.harness.budget import Budget, run_with_timeout
from benchmarks.studies.traffic import min_traffic_bytes

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = Path(__file__).parent / "without_optional"  # its sitecustomize makes the packages unimportable
FINAL = {"ok", "failed", "skipped", "timed out"}


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def rehearsal(tmp_path: Path, budget: int, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BLOCKER), str(ROOT)])}
    command = [sys.executable, "-m", "benchmarks.gpu_report", "--rehearsal", "--budget", str(budget),
               "--output", str(tmp_path / "report"), "--workdir", str(tmp_path / "work"), *flags]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_optional_packages_are_blocked_for_every_process_the_rehearsal_starts():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BLOCKER), str(ROOT)])}
    code = ("import importlib\nfor m in ('onnxslim', 'tritonclient.grpc', 'tensorrt', 'pycuda.driver'):\n"
            "    try:\n        importlib.import_module(m)\n    except ModuleNotFoundError:\n        continue\n"
            "    raise SystemExit(m + ' imported')\nimport export.onnx, runtimes.triton, export.tensorrt")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_export_without_onnxslim_says_it_did_not_slim(monkeypatch):
    from onnx import helper

    from export.onnx import transform

    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim now raises ImportError
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [], [])
    proto, messages = helper.make_model(graph), []
    assert transform(proto, simplify=True, fp16=False, progress=messages.append) is proto
    assert messages == ["onnxslim is not installed: the graph is not slimmed (pip install onnxslim)"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_rehearsal_runs_every_step_without_the_optional_packages(tmp_path):
    budget = 240
    start = time.monotonic()
    proc = rehearsal(tmp_path, budget, "--skip", "gpu-tests-slow")  # gpu-tests runs the same code, and costs 10 s
    output, _ = proc.communicate(timeout=budget + 60)
    assert proc.returncode == 0, output[-3000:]
    assert time.monotonic() - start < budget + 30
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert report["state"] == "finished" and report["environment"]["tensorrt"] is None
    assert [s["name"] for s in report["steps"]] == [s.name for s in STEPS]
    for step in report["steps"]:
        assert step["outcome"] in FINAL - {"failed"}, step
        assert step["outcome"] == "ok" or step["reason"], step
    slow = next(step for step in report["steps"] if step["name"] == "gpu-tests-slow")
    assert (slow["outcome"], slow["reason"]) == ("skipped", "left out with --skip")
    latency = report["steps"][0]
    assert latency["outcome"] == "ok" and {r["batch"] for r in latency["result"]["rows"]} == {1, 2}
    if not torch.cuda.is_available():  # the CUDA rows are skipped with the reason, the CPU stand-in measured
        assert "onnxruntime-cpu" in {r["variant"] for r in latency["result"]["rows"]}
        assert "no CUDA device" in latency["result"]["skipped"]["pytorch-fp16-cuda"]
    assert (tmp_path / "report/README.md").read_text().count("### ") == len(STEPS)
    lines = output.strip().splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("row "))
    assert lines[table].split() == ["row", "batch", "median", "ms", "speedup", "x", "floor", "peak", "memory"]
    assert len(lines) - table - 1 == len(latency["result"]["rows"]), "the table is the last thing printed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_run_killed_half_way_leaves_a_valid_report_and_no_step_running(tmp_path):
    proc = rehearsal(tmp_path, 240)
    path, deadline = tmp_path / "report/report.json", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # until a step runs
            report = json.loads(path.read_text()) if path.exists() else None
            if report and any("pid" in step for step in report["steps"]):
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    report = json.loads(path.read_text())  # whatever moment the kill hit, the file parses
    assert report["state"] == "running" and report["steps"][-1]["outcome"] == "pending"
    assert "NOT FINISHED" in (tmp_path / "report/README.md").read_text()
    pids = [step["pid"] for step in report["steps"] if "pid" in step]
    time.sleep(1)
    assert pids and not [pid for pid in pids if alive(pid)], "a step outlived the report killed with SIGKILL"


def test_a_step_past_its_timeout_is_killed_with_its_children(tmp_path):
    child_pid = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(child_pid)!r}, 'w').write(str(child.pid))\ntime.sleep(60)")  # fmt: skip
    start = time.monotonic()
    assert run_with_timeout([sys.executable, "-c", code], tmp_path / "log.txt", timeout=3) is None
    assert time.monotonic() - start < 20
    time.sleep(0.5)
    assert child_pid.exists() and not alive(int(child_pid.read_text()))


def test_steps_share_the_budget_and_the_report_is_written_after_each(tmp_path):
    def step(name: str, seconds: float, share: float) -> Step:
        return Step(name, f"sleeps {seconds} s", share, lambda ctx: ["-c", f"import time; time.sleep({seconds})"],
                    lambda ctx: {"slept": seconds})  # fmt: skip

    # while it runs, "check" reads report.json: "quick" is recorded as done, itself as running
    check = ("import json, sys; steps = {s['name']: s for s in json.load(open(sys.argv[1]))['steps']}; "
             "sys.exit(not (steps['quick']['outcome'] == 'ok' and steps['check']['outcome'] == 'running' "
             "and steps['late']['outcome'] == 'pending'))")  # fmt: skip
    checking = Step("check", "reads the report", 0.5, lambda ctx: ["-c", check, str(ctx.out / "report.json")],
                    lambda ctx: {})  # fmt: skip
    # 8 s in all, 1 s kept back: "hangs" may take a quarter (2 s); "late" gets what is left, if 5 s or more
    steps = [step("quick", 0, 0.5), checking, step("hangs", 60, 0.25), step("late", 60, 1.0), step("starved", 0, 1)]
    (tmp_path / "report").mkdir()
    ctx = Context(REHEARSAL, tmp_path / "report", tmp_path / "work")
    data = gpu_report.run(ctx, Budget(8, reserve=1), rehearsal=True, steps=steps)
    outcomes = {s["name"]: (s["outcome"], s.get("reason", "")) for s in data["steps"]}
    assert outcomes["quick"] == ("ok", "") and outcomes["check"] == ("ok", "")
    assert outcomes["hangs"] == ("timed out", "timed out after 2 s")
    assert outcomes["late"][0] in ("timed out", "skipped")
    assert outcomes["starved"][0] == "skipped" and outcomes["starved"][1].startswith("budget spent")
    assert data["state"] == "finished" and data["elapsed_s"] < 9
    assert json.loads((tmp_path / "report/report.json").read_text()) == json.loads(json.dumps(data, default=str))


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_report.main(["--output", str(tmp_path / "gpu"), "--workdir", str(tmp_path / "work")]) == 0
    assert "no GPU here" in capsys.readouterr().out
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "work").exists()


def test_an_earlier_report_is_kept_unless_overwrite(tmp_path, capsys):
    (tmp_path / "report.json").write_text("{}")
    assert gpu_report.main(["--rehearsal", "--output", str(tmp_path)]) == 2
    assert "holds an earlier report" in capsys.readouterr().err
    assert (tmp_path / "report.json").read_text() == "{}"


def test_minimum_traffic_of_a_hand_computable_model():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    weights = (3 * 8 * 9 + 8) + (8 * 4 + 4)
    activations = (3 + 8) * 16 * 16 + (8 + 4) * 16 * 16
    assert min_traffic_bytes(model, (1, 3, 16, 16)) == 2 * (weights + activations)
