"""`python -m sunet_deploy.models`: build a model, print its parameters and time one forward pass."""

from __future__ import annotations

import argparse
import time

import torch

from ..cli import EXIT_STATUS_HELP
from ..flags import add_flag, add_renamed
from . import MODEL_REGISTRY, ModelSpec, build_model, count_parameters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sunet_deploy.models", description=__doc__, epilog=EXIT_STATUS_HELP)
    add_flag(parser, "--arch", default="sunet64", choices=sorted(MODEL_REGISTRY))
    add_flag(parser, "--num-classes", default=21)
    add_flag(parser, "--output-stride")
    add_flag(parser, "--head")
    add_flag(parser, "--size", default=(512, 512), help="input HxW for the timing run")
    add_renamed(parser, "--classes")
    args = parser.parse_args(argv)

    spec = ModelSpec(args.arch, num_classes=args.num_classes, output_stride=args.output_stride, head=args.head)
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
