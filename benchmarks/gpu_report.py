"""`python -m benchmarks.gpu_report` (`make gpu-report`): everything a lent GPU should measure, in one go.

    1. the tests that need a GPU (CUDA runtime rows, TensorRT, the C++ CUDA path) - pytest, JUnit XML;
    2. AMP training throughput: SUNet-64 OS16 trained briefly on synthetic data with `python -m train`,
       which also gives the trained checkpoint the parity step needs;
    3. `benchmarks.latency`: SUNet-64 OS16 512x512, batch 1 and 8, every CUDA runtime that runs here
       (PyTorch FP32 eager is the reference row), with peak GPU memory and the compute floor;
    4. `benchmarks.parity` of every CUDA runtime against PyTorch FP32 on the trained checkpoint;
    5. the memory-bandwidth floor: the bytes SUNet-64 must move at least, over the measured bandwidth.

Reports go to --output (docs/bench/gpu by default) with the environment; a step that fails is
reported and the others go on. Without a visible GPU it says so and writes nothing. Runs in
about 10 minutes on one H100 (the max-autotune and AOTInductor rows compile for minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP
from sunet_deploy.models import ModelSpec, build_model

from .env import environment, format_environment
from .floor import cuda_copy_gbs

GPU_TESTS = ["tests/test_runtimes.py", "tests/test_trt_runtime.py", "tests/test_tensorrt_export.py",
             "tests/test_cpp_onnxruntime.py", "-k", "cuda or tensorrt or gpu"]  # fmt: skip
TRAIN_FLAGS = ("--arch sunet64 --output-stride 16 --dataset synthetic --synthetic-samples 2400 --val-synthetic-samples 200 "
               "--synthetic-size 256x256 --crop-size 256 --batch-size 16 --iterations 600 --val-every 600 "
               "--lr 0.05 --momentum 0.9 --head-lr-mult 1 --head-bias-lr-mult 1 --bn-momentum 0.1 "
               "--warmup-iterations 30 --amp --device cuda --workers 8 --log-every 20 --no-progress")
LATENCY_FLAGS = ("--model sunet64 --device cuda --batch 1 8 --size 512x512 --warmup 2 --duration 4 "
                 "--iterations 30 --rounds 2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_report", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("docs/bench/gpu"), help="report folder")
    parser.add_argument("--workdir", type=Path, default=Path("runs/gpu-report"), help="checkpoints and artifacts")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"no GPU here: torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda}); "
              f"nothing measured, nothing written to {args.output}")
        return EXIT_OK
    args.output.mkdir(parents=True, exist_ok=True)
    steps = {"gpu tests": lambda: gpu_tests(args.output), "amp training": lambda: amp_training(args.workdir),
             "latency": lambda: latency(args), "parity": lambda: parity(args),
             "bandwidth floor": bandwidth_floor}  # fmt: skip
    results = {name: run_step(name, step) for name, step in steps.items()}
    summary = {"environment": environment(), "steps": results}
    (args.output / "report.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (args.output / "README.md").write_text(markdown(summary))
    print(f"wrote {args.output / 'README.md'} and {args.output / 'report.json'}")
    return EXIT_FAILED if any("error" in r for r in results.values()) else EXIT_OK


def run_step(name: str, step) -> dict:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        result = step()
    except Exception as exc:  # one failed step is reported; the others still run
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    return {**result, "seconds": round(time.perf_counter() - start, 1)}


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], check=False, **kwargs)


def gpu_tests(output: Path) -> dict:
    xml = output / "gpu_tests.xml"
    done = _python("-m", "pytest", "-q", "-rs", f"--junitxml={xml}", *GPU_TESTS)
    suite = ElementTree.parse(xml).getroot().find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    skipped = sorted({s.get("message", "") for s in suite.iter("skipped")})
    return {"exit_status": done.returncode, **counts, "skip_reasons": skipped}


def amp_training(workdir: Path) -> dict:
    out = workdir / "train"
    done = _python("-m", "train", *TRAIN_FLAGS.split(), "--out-dir", str(out), "--overwrite")
    if done.returncode:
        raise RuntimeError(f"python -m train exited {done.returncode}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in records if r.get("event") == "train"][2:]  # after warm-up and autotuning
    val = [r for r in records if r.get("event") == "val"][-1]
    return {"command": f"python -m train {TRAIN_FLAGS}", "images_per_s_median": sorted(speeds)[len(speeds) // 2],
            "val_miou": 100 * val["miou"], "checkpoint": str(out / "best.safetensors")}  # fmt: skip


def latency(args: argparse.Namespace) -> dict:
    out = args.output / "latency"
    done = _python("-m", "benchmarks.latency", *LATENCY_FLAGS.split(), "--workdir", str(args.workdir / "work"),
                   "--output", str(out))  # fmt: skip
    result = json.loads((out / "latency.json").read_text())
    rows = [{k: r.get(k) for k in ("variant", "batch", "precision", "speedup", "x_floor", "memory")}
            | {"median_ms": r["latency_ms"]["median"]} for r in result["rows"]]  # fmt: skip
    return {"exit_status": done.returncode, "rows": rows, "skipped": result["skipped"], "report": str(out / "latency.md")}


def parity(args: argparse.Namespace) -> dict:
    out = args.output / "parity"
    checkpoint = args.workdir / "train" / "best.safetensors"
    done = _python("-m", "benchmarks.parity", str(checkpoint), "--device", "cuda", "--workdir",
                   str(args.workdir / "work"), "--output", str(out))  # fmt: skip
    result = json.loads((out / "parity.json").read_text())
    return {"exit_status": done.returncode, "report": str(out / "parity.md"),
            "runtimes": {n: {k: r[k] for k in ("precision", "delta_miou", "agreement", "passed")}
                         for n, r in result["runtimes"].items()}}  # fmt: skip


def min_traffic_bytes(model: torch.nn.Module, shape: tuple[int, ...], bytes_per_value: int = 2) -> int:
    """A lower bound on the bytes an inference moves: every weight read once and every convolution's
    input and output activations read/written once (layers fused perfectly), at `bytes_per_value`."""
    activations: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: activations.append(i[0].numel() + o.numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.empty(shape, device="meta"))
    for hook in hooks:
        hook.remove()
    return bytes_per_value * (sum(p.numel() for p in model.parameters()) + sum(activations))


def bandwidth_floor() -> dict:
    with torch.device("meta"):
        model = build_model(ModelSpec("sunet64", num_classes=21, output_stride=16)).eval()
    bandwidth = cuda_copy_gbs()
    floors = {}
    for batch in (1, 8):
        nbytes = min_traffic_bytes(model, (batch, 3, 512, 512))
        floors[f"batch {batch}"] = {"fp16_bytes": nbytes, "floor_ms": 1000 * nbytes / (bandwidth * 1e9)}
    return {"bandwidth_gbs": bandwidth, "floors": floors}


def markdown(summary: dict) -> str:
    parts = ["# GPU report: SUNet-64 OS16, 512x512", "## Environment", format_environment(summary["environment"])]
    for name, result in summary["steps"].items():
        parts += [f"## {name} ({result['seconds']} s)", "```json\n" + json.dumps(result, indent=1, default=str) + "\n```"]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
