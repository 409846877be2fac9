"""benchmarks.select: a candidate that fails the accuracy gate is never chosen, even when it is the fastest;
a second run reuses the cache and says so; an earlier selection is never overwritten silently; the
strategies and their tie rules."""

import json

import pytest

import benchmarks.select as select
from benchmarks.harness.selection import Candidate, Gate, Strategy
from benchmarks.harness.variants import VARIANTS
from factory import blank_calibrated_int8, validated_checkpoint

FAST = ["--limit", "3", "--threads", "1", "--warmup", "0.05", "--duration", "0.2", "--min-iterations", "2", "--rounds", "1"]


@pytest.fixture(scope="module")
def made_to_fail(tmp_path_factory):
    """A checkpoint with a recorded validation set, and an INT8 model of it calibrated on blank images."""
    root = tmp_path_factory.mktemp("select")
    checkpoint = validated_checkpoint(root / "model.safetensors")
    return checkpoint, blank_calibrated_int8(checkpoint, root / "blank_int8.onnx")


def test_a_candidate_that_fails_the_gate_is_not_chosen_though_fastest(made_to_fail, tmp_path, monkeypatch):
    checkpoint, blank = made_to_fail
    real_time_rows = select.time_rows

    def blank_is_fastest(case, rows, args):  # the timing is injected; the gate below is the real one
        records, rates = real_time_rows(case, rows, args)
        for record in records:
            if record["artifact"] == str(blank):
                record["latency_ms"]["median"], record["throughput_ips"] = 1e-3, 1e6
        return records, rates

    monkeypatch.setattr(select, "time_rows", blank_is_fastest)
    out = tmp_path / "deploy"
    code = select.main([str(checkpoint), "-o", str(out), "--workdir", str(tmp_path / "work"), "--only",
                        "onnxruntime-cpu", "--artifact", str(blank), "--measure-rejected", *FAST,
                        "--limit", "0", "--max-drop", "0.5"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "selection.json").read_text())
    rows = {c["name"]: c for c in result["candidates"]}
    bad = rows["blank_int8@onnxruntime"]
    timed = [c for c in rows.values() if c["median_ms"] is not None]
    assert bad["median_ms"] == min(c["median_ms"] for c in timed)  # the fastest of all ...
    for name in ("blank_int8@onnxruntime", "blank_int8@openvino"):  # ... and fails the gate, in either runtime
        assert not rows[name]["passed"] and rows[name]["miou_delta"] < -0.5 and "--max-drop 0.5" in rows[name]["reason"]
    assert result["chosen"] == "onnxruntime-cpu" and rows["onnxruntime-cpu"]["passed"]
    assert [c["name"] for c in rows.values() if c["chosen"]] == ["onnxruntime-cpu"]
    assert (out / "model.onnx").read_bytes() == open(rows["onnxruntime-cpu"]["artifact"], "rb").read()
    assert (out / "selection.png").stat().st_size > 0
    md = (out / "selection.md").read_text()
    assert "**chosen**" in md and "blank_int8@openvino" in md and "python -m runtimes.predict" in md


def test_a_second_run_reuses_the_cache_and_an_earlier_selection_is_kept(made_to_fail, tmp_path, capsys):
    checkpoint, _ = made_to_fail
    args = [str(checkpoint), "--workdir", str(tmp_path / "work"), "--only", "onnxruntime-cpu,openvino-cpu", *FAST]
    assert select.main([*args, "-o", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "selection.json").read_text())
    assert first["cache"]["artifacts_built"] == 1 and first["cache"]["gates_measured"] == 3

    assert select.main([*args, "-o", str(tmp_path / "first")]) == 2  # refused, nothing replaced
    assert "exists and is not empty" in capsys.readouterr().err
    assert json.loads((tmp_path / "first" / "selection.json").read_text()) == first

    assert select.main([*args, "-o", str(tmp_path / "second")]) == 0
    second = json.loads((tmp_path / "second" / "selection.json").read_text())
    assert second["cache"] == {"artifacts_reused": 1, "artifacts_built": 0, "gates_reused": 3, "gates_measured": 0}
    assert "1 artifact(s) reused" in (tmp_path / "second" / "selection.md").read_text()
    gates = {c["name"]: c["miou_delta"] for c in second["candidates"]}
    assert gates == {c["name"]: c["miou_delta"] for c in first["candidates"]}

    assert select.main([*args, "-o", str(tmp_path / "first"), "--overwrite", "--rebuild"]) == 0
    forced = json.loads((tmp_path / "first" / "selection.json").read_text())
    assert forced["cache"]["artifacts_built"] == 1 and forced["cache"]["gates_measured"] == 3


def candidate(name: str, precision: str, median: float, miou: float = 50.0, ips: float | None = None) -> Candidate:
    c = Candidate(name, VARIANTS["onnxruntime-cpu"], precision=precision, passed=True)
    c.gate = {"miou": miou, "delta_miou": miou - 50.0}
    c.row = {"latency_ms": {"median": median}, "throughput_ips": ips or 1000 / median}
    return c


def test_strategies_and_their_tie_rules():
    fp32, int8 = candidate("fp32", "fp32", 101.0), candidate("int8", "int8", 100.0, miou=49.5)
    assert Strategy.parse("latency", 0.03).choose([fp32, int8])[0] is fp32  # within 3 %: the higher precision
    assert Strategy.parse("latency", 0.005).choose([fp32, int8])[0] is int8  # outside the tie: the fastest
    slow = candidate("fp32-slow", "fp32", 150.0)
    assert Strategy.parse("latency", 0.03).choose([slow, int8])[0] is int8
    fast_batch = candidate("batched", "fp32", 300.0, ips=40.0)
    assert Strategy.parse("throughput", 0.03).choose([fast_batch, int8])[0] is fast_batch
    budget = Strategy.parse("latency-budget=120", 0.03)
    assert budget.choose([slow, int8, fp32])[0] is fp32  # most accurate under the budget, then the fastest
    assert Strategy.parse("latency-budget=50", 0.03).choose([slow, int8])[0] is None
    for bad in ("fastest", "latency-budget", "latency-budget=-1", "latency=3"):
        with pytest.raises(ValueError, match="--strategy takes"):
            Strategy.parse(bad, 0.03)


def test_max_drop_is_one_sided_and_zero_admits_no_drop():
    rise = {"delta_miou": 0.02, "agreement": 99.95, "class_iou_delta": {"a": 0.5, "b": -0.3}}
    drop = {**rise, "delta_miou": -0.001}
    assert Gate().failures(rise, "fp32") == [] and Gate(max_drop=0).failures(rise, "fp32") == []
    assert Gate(max_drop=0).failures(drop, "fp32") == ["mIoU drops 0.001 > --max-drop 0 points"]
    assert Gate(max_class_drop=0.2).failures(rise, "int8") == ["class 'b' drops 0.300 > --max-class-drop 0.2 points"]
    assert Gate().failures({**rise, "agreement": 99.0}, "fp32")  # FP32 must also label like PyTorch FP32
