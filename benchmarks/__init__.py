"""Latency, memory and parity harness for every runtime, with Markdown/JSON/PNG reports.

    python -m benchmarks.latency --preset cpu        # SUNet-64 OS16 512x512 on this CPU
    python -m benchmarks.parity CHECKPOINT           # mIoU parity of every runtime vs PyTorch FP32
"""

from sunet_deploy.cli import say_missing_extras

say_missing_extras()  # first: an entry point missing an extra's package says so in one line
