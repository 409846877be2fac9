"""`python -m sunet_deploy.models`: build a model, print its parameters and time one forward pass."""

from __future__ import annotations

import argparse
import time

import torch

from ..cli import EXIT_STATUS_HELP, parse_size
from . import MODEL_REGISTRY, ModelSpec, build_model, count_parameters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sunet_deploy.models", description=__doc__, epilog=EXIT_STATUS_HELP)
    parser.add_argument("--arch", default="sunet64", choices=sorted(MODEL_REGISTRY), help="architecture")
    parser.add_argument("--classes", type=int, default=21, help="number of classes")
    parser.add_argument("--output-stride", type=int, default=16, choices=(8, 16, 32))
    parser.add_argument("--head", default="plain", choices=("plain", "degrid"))
    parser.add_argument("--size", type=parse_size, default=(512, 512), help="input HxW for the timing run")
    args = parser.parse_args(argv)

    spec = ModelSpec(args.arch, num_classes=args.classes, output_stride=args.output_stride, head=args.head)
    model = build_model(spec).eval()
    x = torch.randn(1, 3, *args.size)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model(x)
        elapsed = time.perf_counter() - start
    print(f"{args.arch}  OS{args.output_stride}  head={args.head}  params={count_parameters(model):,}")
    print(f"input {tuple(x.shape)} -> logits {tuple(out.shape)} in {elapsed * 1000:.0f} ms (CPU, first call)")


if __name__ == "__main__":
    main()
