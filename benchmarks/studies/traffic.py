"""`python -m benchmarks.studies.traffic`: the least bytes one inference moves, and the memory-bandwidth floor.

    python -m benchmarks.studies.traffic --arch sunet64 --batch 1 8 --size 512x512
    python -m benchmarks.studies.traffic --arch sunet64 --batch 1 8 --bandwidth-from docs/bench/gpu/latency/latency.json

A lower bound on the bytes: every weight read once and every convolution's input and output
activations read or written once (every other layer fused perfectly), at 2 bytes a value (FP16).
Those bytes over the device's memory bandwidth are a latency no runtime can beat. The bandwidth is
--bandwidth GB/s, or the device-to-device copy rate a CUDA `benchmarks.latency` run measured
(its latency.json); without one only the bytes are reported. The model is built on PyTorch's meta
device: nothing is allocated and no GPU is needed.

Maintained, unlike the other studies: gpu_report's bandwidth-floor step runs it. It reads no
images, so it takes no dataset or protocol flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sunet_deploy.cli import EXIT_OK, EXIT_STATUS_HELP
from sunet_deploy.flags import add_flag, add_renamed
from sunet_deploy.models import ModelSpec, build_model


def min_traffic_bytes(model: torch.nn.Module, shape: tuple[int, ...], bytes_per_value: int = 2) -> int:
    """A lower bound on the bytes an inference moves: every weight read once and every convolution's
    input and output activations read/written once (layers fused perfectly), at `bytes_per_value`."""
    activations: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: activations.append(i[0].numel() + o.numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]  # fmt: skip
    with torch.no_grad():
        model(torch.empty(shape, device="meta"))
    for hook in hooks:
        hook.remove()
    return bytes_per_value * (sum(p.numel() for p in model.parameters()) + sum(activations))


def measured_bandwidth(latency_json: Path) -> float | None:
    """The memory bandwidth (GB/s) a `benchmarks.latency` run measured, None if it measured none (CPU)."""
    return json.loads(latency_json.read_text()).get("floor", {}).get("rates", {}).get("bandwidth_gbs")


def floors(args: argparse.Namespace) -> dict:
    with torch.device("meta"):
        model = build_model(ModelSpec(args.model, num_classes=args.num_classes, output_stride=args.output_stride)).eval()
    bandwidth = args.bandwidth or (measured_bandwidth(args.bandwidth_from) if args.bandwidth_from else None)
    result = {"model": args.model, "output_stride": args.output_stride, "size": list(args.size),
              "bytes_per_value": args.bytes_per_value, "bandwidth_gbs": bandwidth, "floors": {}}  # fmt: skip
    for batch in args.batch:
        nbytes = min_traffic_bytes(model, (batch, 3, *args.size), args.bytes_per_value)
        floor = 1000 * nbytes / (bandwidth * 1e9) if bandwidth else None
        result["floors"][f"batch {batch}"] = {"bytes": nbytes, "floor_ms": floor}
    return result


def describe(result: dict) -> str:
    lines = [f"{result['model']} OS{result['output_stride']} {'x'.join(map(str, result['size']))}, "
             f"{result['bytes_per_value']} bytes a value, bandwidth "
             + (f"{result['bandwidth_gbs']:.0f} GB/s" if result["bandwidth_gbs"] else "not measured (no CUDA run)")]
    for batch, floor in result["floors"].items():
        ms = f", floor {floor['floor_ms']:.3f} ms" if floor["floor_ms"] is not None else ""
        lines.append(f"  {batch}: at least {floor['bytes'] / 2**20:.1f} MiB moved{ms}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.traffic", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_flag(parser, "--arch", dest="model", default="sunet64", help="architecture (default sunet64)")
    add_flag(parser, "--output-stride")
    add_flag(parser, "--num-classes", default=21)
    add_flag(parser, "--batch", nargs="+", default=[1], help="batch sizes (default 1)")
    add_flag(parser, "--size", default=(512, 512))
    parser.add_argument("--bytes-per-value", type=int, default=2, help="2 for FP16 (default), 4 for FP32")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--bandwidth", type=float, metavar="GBS", help="memory bandwidth in GB/s")
    source.add_argument("--bandwidth-from", type=Path, metavar="LATENCY_JSON",
                        help="the latency.json of a CUDA benchmarks.latency run (its measured copy bandwidth)")
    add_flag(parser, "--output", help="also write the result as JSON here")
    add_renamed(parser, "--model")
    args = parser.parse_args(argv)
    try:
        result = floors(args)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(describe(result))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.output}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
