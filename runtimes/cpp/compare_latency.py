"""Latency of the C++ ONNX Runtime backend beside the Python ONNX Runtime adapter (runtimes.ort, CPU
provider): same model, image and thread count, in one run.

    python runtimes/cpp/compare_latency.py build/cpp/sunet_predict model.onnx image.png --threads 1 2

Both sides time image -> mask after one untimed run in a warm session: C++ `sunet::segment`
(normalise, Run, argmax) through `sunet_predict --repeat`, Python `Predictor.mask` (to_tensor_input,
InferenceSession.run, output_to_mask). Rounds alternate the two, so that a slower moment of the
machine hits both; each cell is the median of the rounds' medians, and the minimum of all runs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime

from runtimes import open_runtime
from runtimes.predict import Predictor
from sunet_deploy.preprocess import read_image

CPP_TIMES = re.compile(r"more runs: median ([0-9.]+) ms, min ([0-9.]+) ms")


def cpp_round(binary: Path, model: Path, image: Path, threads: int, repeat: int) -> tuple[float, float]:
    """(median, min) ms of `repeat` runs after the first, as sunet_predict prints them."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([str(binary), "--threads", str(threads), "--repeat", str(repeat), str(model), str(image),
                               str(Path(folder) / "mask.png")], capture_output=True, text=True, check=True)
    median, fastest = CPP_TIMES.search(done.stdout).groups()
    return float(median), float(fastest)


def python_round(predictor: Predictor, image, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predictor.mask(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def summarize(rounds: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(median for median, _ in rounds), min(fastest for _, fastest in rounds)


def compare(binary: Path, model: Path, image_path: Path, threads: int, repeat: int,
            rounds: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((median, min) of C++, (median, min) of Python), in ms."""
    image = read_image(image_path)
    cpp, python = [], []
    with open_runtime(model, threads=threads) as runtime:
        predictor = Predictor(runtime)
        predictor.mask(image)
        for _ in range(rounds):
            cpp.append(cpp_round(binary, model, image_path, threads, repeat))
            python.append(python_round(predictor, image, repeat))
    return summarize(cpp), summarize(python)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sunet_predict", type=Path, help="sunet_predict built with the ONNX Runtime backend")
    parser.add_argument("model", type=Path, help="ONNX model from python -m export.onnx")
    parser.add_argument("image", type=Path, help="PNG image")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="intra-op thread counts (default 1)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per round and side (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)
    height, width = read_image(args.image).shape[:2]
    print(f"{args.model.name}, {height}x{width} image, ONNX Runtime {onnxruntime.__version__} (CPU), "
          f"{args.rounds} rounds x {args.repeat} runs per side\n")
    print("| threads | C++ median / min (ms) | Python median / min (ms) | C++ / Python (median) |")
    print("|---|---|---|---|")
    for threads in args.threads:
        (cpp, cpp_min), (python, python_min) = compare(args.sunet_predict, args.model, args.image, threads,
                                                       args.repeat, args.rounds)
        print(f"| {threads} | {cpp:.1f} / {cpp_min:.1f} | {python:.1f} / {python_min:.1f} | {cpp / python:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
