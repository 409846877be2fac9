# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv the first time.
# TORCH_SPEC pins a CPU-friendly torch; a GPU user installs a CUDA build first (see README).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The serving environment: nvidia-pytriton's tritonserver pins numpy<2, so it gets a venv of its own
# (runtimes.serve.create_serve_venv: the wheel, onnxruntime, numpy<2, OpenCV, Pillow, this project, no torch;
# and NVIDIA's perf_analyzer under .venv-serve/perf_analyzer, from the pinned tritonclient 2.41.0 wheel).
SERVE_VENV ?= .venv-serve
SERVE_PY := $(SERVE_VENV)/bin/python

.PHONY: setup serve-venv demo test bench bench-int8 bench-os gpu-report clean clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[torch,onnx,dev,serve,large,cluster,openvino]"
	touch $(STAMP)

# Idempotent: reinstalls only when runtimes.serve's package list changed.
serve-venv: setup
	$(PY) -c 'from runtimes.serve import create_serve_venv; create_serve_venv("$(SERVE_VENV)")'

DEMO := runs/demo

# The end-to-end demo on built-in synthetic data (CPU, no download): train, evaluate, export,
# predict on image files, check every runtime against PyTorch FP32 (single scale, then under the inference
# protocol: scales, flips and 96-pixel windows, docs/inference.md), then serve the model on Triton
# (python backend, CPU) and predict through the server; last, benchmarks.select: every candidate artifact gated by
# mIoU against PyTorch FP32 and timed, the fastest that keeps mIoU written to $(DEMO)/deploy.
demo: setup serve-venv
	@if [ -e $(DEMO) ]; then echo "$(DEMO) holds an earlier demo run, kept as it is: remove it with 'make clean-demo', or run 'make demo DEMO=runs/demo2'" >&2; exit 2; fi
	$(PY) -m train --config demo --out-dir $(DEMO)
	$(PY) -m train.evaluate $(DEMO)/best.safetensors --output $(DEMO)/eval.json
	$(PY) -m export.onnx $(DEMO)/best.safetensors -o $(DEMO)/model.onnx
	$(PY) -m sunet_deploy.data $(DEMO)/samples --synthetic-samples 8 --synthetic-size 160x224
	$(PY) -m runtimes.predict $(DEMO)/model.onnx $(DEMO)/samples/images -o $(DEMO)/predictions --tile
	$(PY) -m benchmarks.parity $(DEMO)/best.safetensors --output $(DEMO)/parity
	$(PY) -m benchmarks.parity $(DEMO)/best.safetensors --multi-scale --base-size 0 --tile 96 --tile-overlap 32 \
		--output $(DEMO)/parity_multiscale
	$(PY) -m export.triton $(DEMO)/model.onnx -o $(DEMO)/model_repository --backend python --io tensor
	$(SERVE_PY) -m runtimes.serve $(DEMO)/model_repository -- \
		$(PY) -m runtimes.predict triton://127.0.0.1:8000/sunet $(DEMO)/samples/images -o $(DEMO)/served_predictions --tile
	$(PY) -m benchmarks.select $(DEMO)/best.safetensors -o $(DEMO)/deploy --warmup 0.5 --duration 1

# CPU latency report: SUNet-64 OS16, 512x512, batch 1, every CPU runtime against PyTorch FP32.
bench: setup
	$(PY) -m benchmarks.latency --preset cpu --output docs/bench/cpu

# INT8 against FP32 ONNX Runtime and PyTorch (one interleaved run), and the paper's output-stride claim.
bench-int8: setup
	$(PY) -m benchmarks.latency --preset cpu-int8 --output docs/bench/cpu-int8

bench-os: setup
	$(PY) -m benchmarks.output_stride --output docs/bench

# On a lent GPU, offline: `make gpu-report PY=python3` runs that interpreter as it is (no venv, no pip):
# latency of every CUDA runtime, AMP training, parity, GPU tests, compile-heavy rows, within a budget
# (GPU_REPORT_ARGS="--budget 300"), to docs/bench/gpu. Without a GPU it says so and writes nothing;
# `python -m benchmarks.gpu_report --rehearsal` runs the same steps on a CPU.
gpu-report:
	@command -v $(PY) >/dev/null || { echo "$(PY) not found: on a lent GPU run 'make gpu-report PY=python3'; here run 'make setup' first" >&2; exit 2; }
	$(PY) -m benchmarks.gpu_report $(GPU_REPORT_ARGS)

test: setup serve-venv
	$(PY) -m pytest -q -n 2 --durations=15

clean-demo:
	rm -rf $(DEMO)

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(SERVE_VENV).lock runs build *.egg-info
