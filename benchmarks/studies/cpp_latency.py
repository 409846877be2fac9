"""Latency of the C++ ONNX Runtime backend beside the Python ONNX Runtime adapter (runtimes.ort, CPU
provider): same model, image and thread count, in one run.

    python -m benchmarks.studies.cpp_latency build/cpp/sunet_predict model.onnx image.png --threads 1 2

Both sides time image -> mask after one untimed run in a warm session: C++ `sunet::segment`
(normalise, Run, argmax) through `sunet_predict --repeat`, Python `Predictor.mask` (Normalization,
InferenceSession.run, output_to_mask). Rounds alternate the two, so that a slower moment of the
machine hits both. Two numbers per side, each the median over the rounds: the wall-clock median
per image, and the CPU time per image (process CPU time over the timed runs; the C++ side's is
that of `--repeat N` less that of `--repeat 0`, which loads the model and runs once). CPU time is
the steadier on a shared machine; it also counts ONNX Runtime's spinning worker threads.

A study, not maintained: it reproduces the C++-against-Python table in docs/cpp.md. One model and
one image, so no dataset or protocol flags.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime

from runtimes import open_runtime
from runtimes.predict import Predictor
from sunet_deploy.flags import add_flag
from sunet_deploy.pipeline.images import read_image

CPP_MEDIAN = re.compile(r"more runs: median ([0-9.]+) ms")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cpp(binary: Path, model: Path, image: Path, threads: int, repeat: int) -> tuple[str, float]:
    """sunet_predict's output and CPU seconds."""
    start = children_cpu_s()
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([str(binary), "--threads", str(threads), "--repeat", str(repeat), str(model), str(image),
                               str(Path(folder) / "mask.png")], capture_output=True, text=True, check=True)
    return done.stdout, children_cpu_s() - start


def cpp_round(binary: Path, model: Path, image: Path, threads: int, repeat: int) -> tuple[float, float]:
    """(wall-clock median, CPU time per image) in ms."""
    _, base_cpu = run_cpp(binary, model, image, threads, 0)
    output, cpu = run_cpp(binary, model, image, threads, repeat)
    return float(CPP_MEDIAN.search(output).group(1)), (cpu - base_cpu) * 1000 / repeat


def python_round(predictor: Predictor, image, repeat: int) -> tuple[float, float]:
    """(wall-clock median, CPU time per image) in ms."""
    times = []
    cpu_start = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        predictor.mask(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), (time.process_time() - cpu_start) * 1000 / repeat


def summarize(rounds: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(wall for wall, _ in rounds), statistics.median(cpu for _, cpu in rounds)


def compare(binary: Path, model: Path, image_path: Path, threads: int, repeat: int,
            rounds: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((wall median, CPU per image) of C++, the same of Python), in ms."""
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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.cpp_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sunet_predict", type=Path, help="sunet_predict built with the ONNX Runtime backend")
    parser.add_argument("model", type=Path, help="ONNX model from python -m export.onnx")
    parser.add_argument("image", type=Path, help="PNG image")
    add_flag(parser, "--threads", nargs="+", default=[1], help="intra-op thread counts (default 1)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per round and side (default 20)")
    add_flag(parser, "--rounds", default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)

    height, width = read_image(args.image).shape[:2]
    print(f"{args.model.name}, {height}x{width} image, ONNX Runtime {onnxruntime.__version__} (CPU), "
          f"{args.rounds} rounds x {args.repeat} runs per side\n")
    print("| threads | C++ wall / CPU (ms) | Python wall / CPU (ms) | C++ / Python, wall | C++ / Python, CPU |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        (cpp, cpp_cpu), (python, python_cpu) = compare(args.sunet_predict, args.model, args.image, threads,
                                                       args.repeat, args.rounds)
        print(f"| {threads} | {cpp:.1f} / {cpp_cpu:.1f} | {python:.1f} / {python_cpu:.1f} | {cpp / python:.2f} "
              f"| {cpp_cpu / python_cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
