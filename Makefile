# `make demo` runs the main job, `make test` the whole suite (modern + legacy POT environments, and the
# browser test of `synthcalib serve`). Each target creates what it needs: .venv (openvino 2026.4, nncf 3.4,
# torch CPU, the web extra), .venv-pot, and the system Chromium (Debian's package, installed when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0: an exact pin takes the CPU wheel where one is on disk; a loose spec may pull CUDA.
MODERN_PINS := "openvino==2026.4.1" "nncf==3.4.0" "torch==2.13.0"
STAMP := $(VENV)/.synthcalib-stamp

.PHONY: demo test test-modern pot-env browser lint bench-stream clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(MODERN_PINS) -e ".[train,dev,web]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m openvino_synthcalib.demo

pot-env:
	bash scripts/setup_pot_env.sh

# Playwright (the dev extra) drives the system Chromium: its own browser downloads are not used.
browser:
	bash scripts/setup_browser.sh

# SYNTHCALIB_REQUIRE_BROWSER=1: the browser test fails instead of skipping when it cannot run.
test: $(STAMP) pot-env browser
	SYNTHCALIB_REQUIRE_BROWSER=1 $(PY) -m pytest -q -p no:cacheprovider

test-modern: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench-stream: $(STAMP)
	$(PY) benchmarks/stream_throughput.py

clean:
	rm -rf $(VENV) .venv-pot out build *.egg-info
