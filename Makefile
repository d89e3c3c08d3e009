# `make demo` runs the main job, `make test` the whole suite (modern + legacy POT environments).
# Each target creates what it needs: .venv (openvino 2026.4, nncf 3.4, torch CPU, the web extra) and .venv-pot.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0: an exact pin takes the CPU wheel where one is on disk; a loose spec may pull CUDA.
MODERN_PINS := "openvino==2026.4.1" "nncf==3.4.0" "torch==2.13.0"
STAMP := $(VENV)/.synthcalib-stamp

.PHONY: demo test test-modern pot-env lint bench-stream clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(MODERN_PINS) -e ".[train,dev,web]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m openvino_synthcalib.demo

pot-env:
	bash scripts/setup_pot_env.sh

test: $(STAMP) pot-env
	$(PY) -m pytest -q -p no:cacheprovider

test-modern: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench-stream: $(STAMP)
	$(PY) benchmarks/stream_throughput.py

clean:
	rm -rf $(VENV) .venv-pot out build *.egg-info
