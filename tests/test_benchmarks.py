"""benchmarks: statistics, timing loop, parity judgement and exit status, reports, FLOP counting."""

import dataclasses
import json
import time

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from benchmarks import latency, parity
from benchmarks.harness.flops import count_flops, model_table
from benchmarks.harness.measure import Samples, time_iterations
from benchmarks.harness.variants import VARIANTS, Variant, variants_for
from benchmarks.parity import ParityStats, Tolerance, judge, run_parity, tolerances
from runtimes.base import Runtime, TensorInfo, Timing
from runtimes.options import PyTorchOptions
from sunet_deploy.artifact import ArtifactInfo, read_checkpoint_info
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.data import DatasetSpec, validation_spec
from sunet_deploy.formats import OnnxRecipe
from sunet_deploy.models import ModelSpec, build_model, count_parameters

TINY_RUN = ["--arch", "sunet_tiny", "--size", "32x32", "--warmup", "0.05", "--duration", "0.1",
            "--min-iterations", "3", "--rounds", "2", "--threads", "1", "--no-flops"]  # fmt: skip


class FakeRuntime(Runtime):
    """Returns fixed logits (plus an offset on class 1), sleeping a fixed time: a controllable engine."""

    name = "fake"

    def __init__(self, path, logits: np.ndarray, offset: float = 0.0, sleep_s: float = 0.0) -> None:
        super().__init__(path, PyTorchOptions())
        self.info = ArtifactInfo(ModelMetadata(model={"arch": "fake", "num_classes": 3}, classes=["a", "b", "c"],
                                               palette=[[0, 0, 0]] * 3), "checkpoint")  # fmt: skip
        self.logits = logits.copy()
        self.logits[:, 1] += offset
        self.sleep_s = sleep_s

    def inputs(self):
        return [TensorInfo("input", (1, 3, 4, 4), "float32")]

    def outputs(self):
        return [TensorInfo("logits", (1, 3, 4, 4), "float32")]

    def _activate(self):
        pass

    def _deactivate(self):
        pass

    def _infer(self, batch):
        time.sleep(self.sleep_s)
        return self.logits, Timing(0.0, compute_ms=self.sleep_s * 1000)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A random sunet_tiny whose metadata records a small synthetic validation set, as training does."""
    spec = DatasetSpec("synthetic", split="val", num_samples=4, size=(32, 32), num_classes=5, seed=0)
    meta = ModelMetadata(model=ModelSpec("sunet_tiny", num_classes=5).to_dict(), classes=spec.build().classes,
                         palette=[[i, i, i] for i in range(5)], training={"dataset": {"val": spec.to_dict()}})
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=5)), meta)


@pytest.fixture
def fake_file(tmp_path):
    path = tmp_path / "model.fake"
    path.write_bytes(b"x")
    return path


# ---------------------------------------------------------------- statistics and timing


def test_summary_of_known_samples():
    samples = Samples(total_ms=[float(v) for v in range(1, 101)], wall_s=2.0, images=100)
    summary = samples.summary()
    lat = summary["latency_ms"]
    assert (lat["min"], lat["max"], lat["count"]) == (1.0, 100.0, 100)
    assert lat["mean"] == pytest.approx(50.5) and lat["median"] == pytest.approx(50.5)
    assert lat["p90"] == pytest.approx(90.1) and lat["p95"] == pytest.approx(95.05) and lat["p99"] == pytest.approx(99.01)
    assert summary["throughput_ips"] == pytest.approx(50.0)
    assert "compute" not in summary


def test_timing_runs_at_least_the_count_and_the_duration(fake_file):
    runtime = FakeRuntime(fake_file, np.zeros((1, 3, 4, 4), np.float32), sleep_s=0.002)
    batch = np.zeros((2, 3, 4, 4), np.float32)
    with runtime:
        by_count = Samples()
        time_iterations(runtime, batch, by_count, min_seconds=0.0, min_count=7)
        by_time = Samples()
        time_iterations(runtime, batch, by_time, min_seconds=0.1, min_count=1)
    assert len(by_count.total_ms) == 7 and by_count.images == 14
    assert by_time.wall_s >= 0.1 and len(by_time.total_ms) >= 10
    assert by_time.throughput() == pytest.approx(by_time.images / by_time.wall_s)
    assert by_count.summary()["compute"]["median"] == pytest.approx(2.0)
    assert min(by_count.total_ms) >= 2.0


def test_speedup_is_reference_median_over_row_median():
    rows = [{"variant": "pytorch-fp32", "latency_ms": {"median": 30.0}},
            {"variant": "fast", "latency_ms": {"median": 10.0}}]  # fmt: skip
    assert [r["speedup"] for r in latency.with_speedups(rows, "pytorch-fp32")] == [1.0, 3.0]
    assert latency.with_speedups(rows[1:], "pytorch-fp32")[0]["speedup"] is None


def test_variant_selection_puts_the_reference_first():
    names = [v.name for v in variants_for("cpu", ["onnxruntime-cpu"])]
    assert names == ["pytorch-fp32", "onnxruntime-cpu"]
    assert all(v.device == "cuda" for v in variants_for("cuda"))
    with pytest.raises(ValueError, match="unknown variant"):
        variants_for("cpu", ["no-such-runtime"])


# ---------------------------------------------------------------- parity


def _stats(pred: np.ndarray, target: np.ndarray, reference: np.ndarray) -> ParityStats:
    stats = ParityStats(ConfusionMatrix(3))
    stats.update(pred, target, reference)
    return stats


def test_parity_judgement_on_crafted_masks():
    target = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    reference = _stats(target, target, target)
    wrong = target.copy()
    wrong[0, 0] = 1  # one of 8 pixels differs: class 0 IoU 1 -> 1/2, class 1 IoU 1 -> 2/3
    result = judge(_stats(wrong, target, target), reference, Tolerance(min_agreement=99.9, max_delta_miou=0.05), ["a", "b", "c"])
    assert result["agreement"] == pytest.approx(100 * 7 / 8)
    assert result["class_iou_delta"] == pytest.approx({"a": -50.0, "b": -100 / 3, "c": 0.0})
    assert result["delta_miou"] == pytest.approx((-50 - 100 / 3) / 3)
    assert not result["passed"] and len(result["failures"]) == 2
    same = judge(_stats(target, target, target), reference, Tolerance(min_agreement=99.9, max_delta_miou=0.05), ["a", "b", "c"])
    assert same["passed"] and same["delta_miou"] == 0 and same["agreement"] == 100
    assert judge(_stats(wrong, target, target), reference, Tolerance(max_delta_miou=30.0), ["a", "b", "c"])["passed"]


def test_logit_errors_and_fake_runtimes_through_run_parity(fake_file):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    runtimes = {"ref": FakeRuntime(fake_file, logits), "close": FakeRuntime(fake_file, logits, offset=1e-4),
                "off": FakeRuntime(fake_file, logits, offset=5.0)}  # fmt: skip
    dataset = [(np.zeros((4, 4, 3), np.uint8), logits[0].argmax(0).astype(np.uint8))] * 2
    for rt in runtimes.values():
        rt.activate()
    stats = run_parity(runtimes, "ref", dataset, 3)
    assert stats["close"].max_abs_logit == pytest.approx(1e-4, rel=1e-3)
    assert stats["close"].sum_abs_logit / stats["close"].logit_count == pytest.approx(1e-4 / 3, rel=1e-3)
    assert judge(stats["close"], stats["ref"], Tolerance(min_agreement=99.9, max_delta_miou=0.05), ["a", "b", "c"])["passed"]
    off = judge(stats["off"], stats["ref"], Tolerance(min_agreement=99.9, max_delta_miou=0.05), ["a", "b", "c"])
    assert not off["passed"] and off["agreement"] < 99.9 and off["delta_miou"] < 0


def test_parity_cli_exits_non_zero_when_a_runtime_fails(fake_file, tmp_path, monkeypatch, tiny_checkpoint):
    logits = np.random.default_rng(1).standard_normal((1, 5, 32, 32)).astype(np.float32)
    fakes = {"pytorch-fp32": FakeRuntime(fake_file, logits), "bad": FakeRuntime(fake_file, logits, offset=5.0)}
    for rt in fakes.values():
        rt.info = ArtifactInfo(ModelMetadata(model={"arch": "fake"}, classes=[f"c{i}" for i in range(5)],
                                             palette=[[0, 0, 0]] * 5), "checkpoint")
        rt.activate()
    monkeypatch.setattr(parity, "open_runtimes", lambda args, shape: (fakes, {}))
    code = parity.main([str(tiny_checkpoint), "--limit", "2", "--output", str(tmp_path / "p")])
    assert code == 1
    report = json.loads((tmp_path / "p" / "parity.json").read_text())
    assert report["runtimes"]["bad"]["passed"] is False
    assert "NO:" in (tmp_path / "p" / "parity.md").read_text()


def test_parity_cli_passes_for_real_fp32_runtimes(tmp_path, tiny_checkpoint):
    out = tmp_path / "parity"
    code = parity.main([str(tiny_checkpoint), "--limit", "2", "--threads", "1",
                        "--variants", "pytorch-fp32-channels-last,onnxruntime-cpu",
                        "--workdir", str(tmp_path / "work"), "--output", str(out)])  # fmt: skip
    records = json.loads((out / "parity.json").read_text())["runtimes"]
    assert code == 0 and set(records) == {"pytorch-fp32-channels-last", "onnxruntime-cpu"}
    assert all(r["agreement"] >= 99.9 and r["max_abs_logit_error"] < 1e-3 for r in records.values())


def test_parity_under_the_protocol_matches_train_evaluate(tmp_path, tiny_checkpoint):
    from sunet_deploy.checkpoint import load_model
    from sunet_deploy.protocol import Protocol
    from train.data import to_input
    from train.evaluate import protocol_masks

    out = tmp_path / "parity"
    knobs = ["--scales", "0.75", "1.25", "--base-size", "0", "--tile", "24", "--tile-overlap", "8", "--flip"]
    code = parity.main([str(tiny_checkpoint), "--limit", "2", "--threads", "1", "--multi-scale", *knobs,
                        "--variants", "pytorch-fp32,onnxruntime-cpu,aoti-cpu",
                        "--workdir", str(tmp_path / "work"), "--output", str(out)])  # fmt: skip
    report = json.loads((out / "parity.json").read_text())
    assert code == 0 and report["runtimes"]["onnxruntime-cpu"]["agreement"] >= 99.9
    assert report["protocol"]["window"] == [24, 24] and report["protocol"]["stride"] == [16, 16]
    assert "views and windows vary" in report["skipped"]["aoti-cpu"]
    model, ckpt = load_model(tiny_checkpoint)  # train.evaluate's path: its own normalisation, the model as a runtime
    dataset = validation_spec(ckpt.meta).build()
    cm, protocol = ConfusionMatrix(5), Protocol((0.75, 1.25), 0, True, (24, 24), (16, 16))
    for image, label in (dataset[i] for i in range(2)):
        cm.update(protocol_masks(model.eval(), to_input(image)[None], protocol, 5)[0], label)
    assert 100 * cm.scores().miou == pytest.approx(report["reference_miou"], abs=0.01)


def test_label_outputs_and_fixed_sizes_are_not_compared_under_the_protocol(fake_file):
    runtime = FakeRuntime(fake_file, np.zeros((1, 3, 4, 4), np.float32))
    assert parity.protocol_obstacle(runtime) is None
    runtime.info = dataclasses.replace(runtime.info, input_shape=(1, 3, 64, 64))
    assert "one input size" in parity.protocol_obstacle(runtime)
    runtime.info = dataclasses.replace(runtime.info, input_shape=(None, 3, None, None),
                                       metadata=dataclasses.replace(runtime.info.metadata, output="labels"))
    assert "vote one-hot" in parity.protocol_obstacle(runtime)


def test_parity_reads_the_protocol_flags_as_every_command_does(tiny_checkpoint, capsys):
    from sunet_deploy.protocol import DEFAULT_BATCH, PAPER, Protocol, protocol_from_args

    def protocol(*flags):
        return protocol_from_args(parity.parse_args([str(tiny_checkpoint), *flags]), crop_size=16)

    assert protocol() is None
    assert protocol("--scales", "0.5") == Protocol((0.5,), batch=DEFAULT_BATCH)  # any protocol flag asks for it
    assert protocol("--multi-scale") == protocol("--protocol", "paper") == dataclasses.replace(PAPER, batch=DEFAULT_BATCH)
    assert protocol("--multi-scale", "--tile", "96", "--tile-overlap", "32", "--base-size", "0", "--tile-batch", "2") == \
        Protocol(PAPER.scales, 0, True, (96, 96), (64, 64), batch=2)
    assert protocol("--tile") == Protocol(window=(16, 16), stride=(12, 12), batch=DEFAULT_BATCH)  # the training crop
    with pytest.raises(SystemExit):
        parity.parse_args([str(tiny_checkpoint), "--multi-scale", "--window", "96"])
    assert "--window is now --tile" in capsys.readouterr().err


def test_parity_takes_dataset_and_precision_from_the_artifacts(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    out = tmp_path / "parity"
    logits = np.random.default_rng(1).standard_normal((1, 5, 32, 32)).astype(np.float32)
    fakes = {"pytorch-fp32": FakeRuntime(tmp_path / "tiny.safetensors", logits),
             "engine": FakeRuntime(tmp_path / "tiny.safetensors", logits, offset=0.5)}  # fmt: skip
    for name, rt in fakes.items():  # an FP32 engine is judged by FP32's tolerance, whatever its variant
        rt.info = ArtifactInfo(ModelMetadata(model={"arch": "f"}, classes=[f"c{i}" for i in range(5)],
                                             palette=[[0, 0, 0]] * 5), "tensorrt" if name == "engine" else "checkpoint")
        rt.activate()
    seen = {}
    monkeypatch.setattr(parity, "open_runtimes", lambda args, shape: (seen.setdefault("shape", shape), (fakes, {}))[1])
    assert parity.main([str(tiny_checkpoint), "--output", str(out)]) == 1
    report = json.loads((out / "parity.json").read_text())
    assert report["dataset"] == "synthetic val: 4 images 32x32, 5 classes, seed 0" and report["samples"] == 4
    assert seen["shape"] == (1, 3, 32, 32)  # the recorded images' size, for fixed-size artifacts
    assert report["runtimes"]["engine"]["precision"] == "fp32"
    assert report["runtimes"]["engine"]["tolerance"] == {"max_delta_miou": 0.05, "min_agreement": 99.9}
    assert parity.main([str(tiny_checkpoint), "--dataset", "folder", "--data-root", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err


def test_parity_of_given_artifacts_by_their_own_precision(tmp_path, tiny_checkpoint, capsys):
    """--artifact: files made elsewhere, each judged by the precision it reports; nothing else is built."""
    from export.onnx import export_onnx

    fp32, fp16 = tmp_path / "model.onnx", tmp_path / "model_fp16.onnx"
    export_onnx(tiny_checkpoint, fp32)
    export_onnx(tiny_checkpoint, fp16, OnnxRecipe(fp16=True))
    out, work = tmp_path / "parity", tmp_path / "work"
    argv = [str(tiny_checkpoint), "--limit", "2", "--threads", "1", "--workdir", str(work), "--output", str(out)]
    assert parity.main(argv + ["--artifact", str(fp32), "--artifact", str(fp16)]) == 0
    records = json.loads((out / "parity.json").read_text())["runtimes"]
    assert list(records) == [str(fp32), str(fp16)] and not list(work.glob("*"))
    assert records[str(fp32)]["precision"] == "fp32" and records[str(fp32)]["max_abs_logit_error"] < 1e-3
    assert records[str(fp16)]["precision"] == "fp16" and records[str(fp16)]["tolerance"]["min_agreement"] is None
    other = save_checkpoint(tmp_path / "other.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=5)),
                            read_checkpoint_info(tiny_checkpoint).metadata)
    assert parity.main([str(other), "--artifact", str(fp32), "--output", str(out)]) == 2
    assert "exported from another checkpoint" in capsys.readouterr().err
    static = export_onnx(tiny_checkpoint, tmp_path / "static.onnx", OnnxRecipe(static=(64, 96))).path
    assert parity.main(argv + ["--artifact", str(static)]) == 2
    assert "takes inputs ?x3x64x96, and the images are 32x32" in capsys.readouterr().err


def test_tolerance_overrides():
    assert tolerances(["fp16=0.2"])["fp16"] == Tolerance(max_delta_miou=0.2)
    assert tolerances([])["fp32"] == Tolerance(min_agreement=99.9, max_delta_miou=0.05)
    assert tolerances([])["int8"] == Tolerance(max_delta_miou=1.0)
    with pytest.raises(ValueError, match="unknown precision"):
        tolerances(["fp8=1"])



def test_one_tolerance_type_in_percent_for_export_verification_and_parity():
    """export.verify and benchmarks.parity judge with sunet_deploy.tolerance.Tolerance, agreement in percent:
    1998 of 2000 pixels alike is 99.9 % and passes both FP32 gates, 1997 fails both, each printed as before."""
    from export.verify import TOLERANCES as VERIFY
    from export.verify import compare, describe

    assert type(VERIFY["fp32"]) is type(parity.TOLERANCES["fp32"]) is Tolerance
    assert VERIFY["fp32"].min_agreement == parity.TOLERANCES["fp32"].min_agreement == 99.9
    assert describe(VERIFY["fp32"]) == "max |logit error| <= 0.001 + 0.001 * max|logit|, pixel-label agreement >= 0.999"
    reference = np.zeros((1, 2, 40, 50), np.float32)
    reference[:, 0] = 1.0  # every pixel class 0
    target = np.zeros((1, 40, 50), np.int64)
    for wrong, passes in ((2, True), (3, False)):
        labels = target.copy()
        labels.flat[:wrong] = 1
        failures = compare(labels, reference, VERIFY["fp32"]).failures(VERIFY["fp32"])
        assert failures == ([] if passes else [f"1x3x40x50: pixel-label agreement {1 - wrong / 2000:.5f} is below "
                                               f"0.999 by {0.999 - (1 - wrong / 2000):.5f}"])  # fmt: skip
        stats = ParityStats(ConfusionMatrix(2), agree=2000 - wrong, pixels=2000)
        stats.confusion.update(target[0], target[0])
        reference_stats = ParityStats(ConfusionMatrix(2), agree=2000, pixels=2000)
        reference_stats.confusion.update(target[0], target[0])
        record = judge(stats, reference_stats, parity.TOLERANCES["fp32"], ["a", "b"])
        assert record["passed"] is passes
        assert record["failures"] == ([] if passes else [f"agreement {100 * (2000 - wrong) / 2000:.3f} % < 99.9 %"])


# ---------------------------------------------------------------- reports


def test_tiny_latency_run_writes_every_report(tmp_path):
    out = tmp_path / "report"
    args = TINY_RUN + ["--variants", "pytorch-fp32-channels-last,onnxruntime-cpu",
                       "--workdir", str(tmp_path / "work"), "--output", str(out)]  # fmt: skip
    assert latency.main(args) == 0
    result = json.loads((out / "latency.json").read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"pytorch-fp32", "pytorch-fp32-channels-last", "onnxruntime-cpu"}
    assert rows["pytorch-fp32"]["speedup"] == 1.0
    for row in rows.values():
        assert len(row["samples_ms"]["total"]) == row["latency_ms"]["count"] >= 4  # 2 rounds x ceil(3 / 2)
        assert row["artifact_mib"] > 0 and row["memory"]["peak_rss_mib"] > 0
    assert result["environment"]["threads"] == 1 and "torch" in result["environment"]
    text = (out / "latency.md").read_text()
    assert "| onnxruntime-cpu |" in text and "## Environment" in text
    for png in ("latency.png", "speedup.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_available_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Variant, "availability", lambda self: "not on this machine")
    out = tmp_path / "report"
    assert latency.main(TINY_RUN + ["--workdir", str(tmp_path / "work"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing was measured" in err and "pytorch-fp32: not on this machine" in err
    assert not out.exists()


# ---------------------------------------------------------------- FLOPs


def test_flop_counter_on_a_hand_computable_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 3, 16, 16)) == 2 * (8 * 16 * 16) * (3 * 3 * 3)
    assert count_flops(nn.Sequential(conv, nn.ReLU(), nn.BatchNorm2d(8)), (2, 3, 16, 16)) == 2 * 110_592


def test_model_table_measures_params_and_flops():
    (row,) = model_table(("sunet_tiny",), size=(64, 64))
    assert row["params"] == count_parameters(build_model(ModelSpec("sunet_tiny", num_classes=21)))
    assert row["gflops"] > 0
    (bigger,) = model_table(("sunet_tiny",), size=(128, 128))
    assert bigger["gflops"] == pytest.approx(4 * row["gflops"], rel=0.02)
    assert bigger["params"] == row["params"]


# ---------------------------------------------------------------- AOTInductor build


def test_freezing_without_binary_folding_keeps_transposed_conv_bn_exact():
    import torch

    from export.aoti import compile_settings

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(4))
    bn = model[1]
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.2, 3), bn.weight.data.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(1, 4, 8, 8)
    torch._dynamo.reset()
    with torch.no_grad(), compile_settings():
        out = torch.compile(model)(x)
        assert (out - model(x)).abs().max().item() < 1e-5


# ---------------------------------------------------------------- compute floor and output stride


def test_floor_is_flops_over_the_rate_of_the_precision():
    from benchmarks.harness.floor import floor_ms, merge_best

    rates = merge_best([{"fp32_gflops": 80.0, "fp16_gflops": 900.0}, {"fp32_gflops": 100.0, "fp16_gflops": 700.0}])
    assert rates == {"fp32_gflops": 100.0, "fp16_gflops": 900.0}
    assert floor_ms(28.0, rates) == pytest.approx(280.0)
    assert floor_ms(28.0, rates, "fp16") == pytest.approx(28.0 / 900 * 1000)
    assert floor_ms(28.0, rates, "int8") == pytest.approx(280.0)  # no INT8 rate measured: the FP32 floor


def test_cpu_matmul_rate_is_flops_over_the_best_repetition(monkeypatch):
    import benchmarks.harness.floor as floor

    # A clock that makes the three timed products take 3, 1 and 2 ms: the rate is 2 x 64^3 FLOPs
    # over the best, 1 ms, i.e. 0.524288 GFLOP/s, counted by hand.
    ticks = iter([0.0, 0.0, 0.003, 0.003, 0.004, 0.004, 0.006, 0.006])
    monkeypatch.setattr(floor.time, "perf_counter", lambda: next(ticks))
    assert floor.matmul_gflops("cpu", size=64, min_seconds=0.0) == pytest.approx(2 * 64**3 / 1e-3 / 1e9)
    monkeypatch.undo()
    assert set(floor.measure_rates("cpu", threads=1)) == {"fp32_gflops"}


def test_latency_rows_state_their_distance_to_the_floor(tmp_path):
    out = tmp_path / "report"
    args = TINY_RUN + ["--variants", "onnxruntime-cpu", "--workdir", str(tmp_path / "work"), "--output", str(out)]
    assert latency.main(args) == 0
    result = json.loads((out / "latency.json").read_text())
    assert len(result["floor"]["measurements"]) == 2 and result["floor"]["rates"]["fp32_gflops"] > 0
    for row in result["rows"]:
        floor = 1000 * row["gflops"] / result["floor"]["rates"]["fp32_gflops"]
        assert row["floor_ms"] == pytest.approx(floor)
        assert row["x_floor"] == pytest.approx(row["latency_ms"]["median"] / floor)
    text = (out / "latency.md").read_text()
    assert "## Compute floor" in text and "x floor" in text and "FP32" in text


def test_output_stride_report(tmp_path):
    from benchmarks import output_stride

    out = tmp_path / "os"
    assert output_stride.main(["--arch", "sunet_tiny", "--size", "64x64", "--train-size", "32x32", "--rounds", "1",
                               "--infer-iterations", "1", "--threads", "1", "--output", str(out)]) == 0
    rows = json.loads((out / "output-stride.json").read_text())["rows"]
    assert [r["output_stride"] for r in rows] == [8, 16, 32]
    assert rows[0]["infer_speedup_vs_os8"] == rows[0]["train_speedup_vs_os8"] == 1.0
    assert rows[2]["flops_ratio_vs_os8"] > rows[1]["flops_ratio_vs_os8"] > 1
    assert "| sunet_tiny | 16 |" in (out / "output-stride.md").read_text()


def test_int8_row_opens_the_int8_export(tmp_path):
    out = tmp_path / "report"
    args = TINY_RUN + ["--variants", "onnxruntime-cpu-int8", "--workdir", str(tmp_path / "work"), "--output", str(out)]
    assert latency.main(args) == 0
    rows = {r["variant"]: r for r in json.loads((out / "latency.json").read_text())["rows"]}
    assert rows["onnxruntime-cpu-int8"]["precision"] == "int8"
    graph = onnx.load(rows["onnxruntime-cpu-int8"]["artifact"]).graph  # uint8 activations: what ORT fuses on x86
    zero_points = {t.name: t.data_type for t in graph.initializer}
    activations = [zero_points[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert activations and set(activations) == {onnx.TensorProto.UINT8}


def test_letterbox_cost_report(tmp_path, tiny_checkpoint):
    from benchmarks.studies import letterbox

    out = tmp_path / "report"
    assert letterbox.main([str(tiny_checkpoint), "--size", "32x32", "24x40", "--limit", "2",
                           "--workdir", str(tmp_path / "work"), "--output", str(out)]) == 0  # fmt: skip
    rows = {(r["size"], r["mode"]): r for r in json.loads((out / "letterbox.json").read_text())["rows"]}
    for mode in ("letterbox", "windows"):  # at the images' own size both are the whole image
        assert rows["32x32", mode]["agreement"] == 100.0 and rows["32x32", mode]["delta_miou"] == 0.0
    assert 0 <= rows["24x40", "letterbox"]["agreement"] <= 100.0 and "| 24x40 | windows |" in (out / "letterbox.md").read_text()


def test_benchmarked_aoti_package_is_compiled_as_python_m_export_aoti_compiles_it(tmp_path, tiny_checkpoint, monkeypatch):
    """Both paths reach AOTInductor through export_aoti with the same Inductor settings (freezing on,
    binary folding off, one compile thread) and the same package metadata; the compile itself is
    stopped at its door, so this takes a second."""
    from torch._inductor.fx_passes import freezing_patterns

    from benchmarks.harness.artifacts import artifact_for
    from export.aoti import main as export_main

    class Stop(Exception):
        pass

    seen = []

    def record(program, package_path, inductor_configs):
        config = torch._inductor.config
        seen.append({"freezing": config.freezing, "compile_threads": config.compile_threads,
                     "binary_folding_patterns": len(freezing_patterns.binary_folding_pass.patterns),
                     "metadata": {k: v for k, v in inductor_configs["aot_inductor.metadata"].items()
                                  if k != "sunet_deploy.artifact"}})  # fmt: skip
        raise Stop

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", record)
    with pytest.raises(Stop):
        export_main([str(tiny_checkpoint), "-o", str(tmp_path / "cli.pt2"), "--size", "32x32"])
    with pytest.raises(Stop):
        artifact_for(VARIANTS["aoti-cpu"], tiny_checkpoint, tmp_path / "work", (1, 3, 32, 32))
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0]["freezing"] and seen[0]["compile_threads"] == 1 and seen[0]["binary_folding_patterns"] == 0
    assert not list(tmp_path.rglob("*.pt2")), "a stopped compile left a file behind"
