# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv the first time.
# TORCH_SPEC pins a CPU-friendly torch; a GPU user installs a CUDA build first (see README).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[onnx,dev]"
	touch $(STAMP)

demo: setup
	$(PY) -m sunet_deploy.models --arch sunet64 --size 512x512

test: setup
	$(PY) -m pytest -q -n 2 --durations=15

clean:
	rm -rf $(VENV) runs build *.egg-info
