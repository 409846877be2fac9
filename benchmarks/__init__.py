"""Latency, memory and parity of every runtime, with Markdown/JSON/PNG reports (docs/benchmarks.md).

The top level holds only the standing benchmarks (commands kept working and tested); beside them
`harness/` is their library (timing, memory, environment, reports, compute floor, FLOPs, the
runtime rows and their artifacts, time budgets), `gpu/` gpu_report's steps and tables, `serving/`
the serving suite (a Triton-served model) and `studies/` one-off measurements, each behind
committed reports. Every command (`--help` gives its flags):

    python -m benchmarks.latency --preset cpu               # latency, throughput, memory of every runtime
    python -m benchmarks.parity CHECKPOINT                  # every runtime's masks against PyTorch FP32
    python -m benchmarks.output_stride                      # the paper's output-stride claim: FLOPs, latency
    python -m benchmarks.select CHECKPOINT -o DIR           # what to ship: fastest artifact that keeps mIoU
    python -m benchmarks.gpu_report                         # everything a lent GPU should measure, in a budget
    python -m benchmarks.serving.serve URI                  # a served model under concurrent clients (+ --search)
    python -m benchmarks.serving.serve_transports URI       # one client's latency per transport
    python -m benchmarks.serving.labels_dtype prepare DIR   # uint8 against int64 labels through the server
    python -m benchmarks.studies.traffic                    # least bytes an inference moves, bandwidth floor
    python -m benchmarks.studies.protocol CHECKPOINT        # the inference protocol on large images
    python -m benchmarks.studies.letterbox CHECKPOINT --size HxW   # letterbox or windows for a fixed size
    python -m benchmarks.studies.cpp_latency BINARY MODEL IMAGE    # the C++ backend beside the Python adapter
    python -m benchmarks.studies.large_images MODEL         # images larger than memory: RSS per size, resume
    python -m benchmarks.studies.cluster_predict MODEL      # a local Ray cluster against one process
"""

from sunet_deploy.cli import say_missing_extras

say_missing_extras()  # first: an entry point missing an extra's package says so in one line
