"""One-off studies: each measured one question once and reproduces the committed reports named at
its top. protocol, letterbox and cpp_latency are not maintained (their settings are fixed in the
study, not taken from the shared dataset and protocol flags); traffic is, as gpu_report runs it.

    python -m benchmarks.studies.protocol CHECKPOINT        # docs/bench/protocol/{scene,rss,speed}.md
    python -m benchmarks.studies.letterbox CHECKPOINT --size HxW   # docs/bench/protocol/letterbox.md
    python -m benchmarks.studies.cpp_latency BINARY MODEL IMAGE    # the C++ table in docs/cpp.md
    python -m benchmarks.studies.traffic                    # gpu_report's bandwidth-floor step
"""
