# gtool: `make demo` runs gtool on the bundled graphs, `make test` runs the tests.
# Both create a virtualenv in .venv on first use; nothing needs to be installed beforehand.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
GTOOL   = $(VENV)/bin/gtool
EXTRAS ?= dev,numba,explain,precision,render,onnx,dask,zarr
DEMO_OUT ?= build/demo

.PHONY: help install demo test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(DEMO_OUT):
	mkdir -p $@

demo: | $(DEMO_OUT)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed  ## create .venv with gtool and the extras in EXTRAS (dev, numba, explain, precision, render, onnx, dask, zarr)

demo: $(VENV)/.installed  ## validate, run, differentiate, check, lint, fix and draw the bundled graphs
	$(GTOOL) validate graphs/
	$(GTOOL) shapes graphs/mlp.yaml
	$(GTOOL) run graphs/fanout.yaml
	$(GTOOL) grad graphs/fanout.yaml --wrt x,y
	$(GTOOL) explain graphs/fanout.yaml
	$(GTOOL) grad graphs/mlp.yaml --random-inputs --dim batch=8
	$(GTOOL) grad-check graphs/
	$(GTOOL) lint graphs/ --fail-on never
	$(GTOOL) rewrite graphs/softmax_logprob_naive.yaml --all --verify -o $(DEMO_OUT)/softmax_logprob_fixed.yaml
	$(GTOOL) grad-check $(DEMO_OUT)/softmax_logprob_fixed.yaml
	$(GTOOL) render graphs/fanout.yaml --values --grads -o $(DEMO_OUT)/fanout.svg
	@echo "demo outputs are in $(DEMO_OUT)/"

test: $(VENV)/.installed  ## run the test suite and the linter
	$(PY) -m pytest -n auto --dist worksteal  # one worker per core; idle workers take tests from busy ones
	$(VENV)/bin/ruff check gtool tests bench

lint: $(VENV)/.installed  ## ruff
	$(VENV)/bin/ruff check gtool tests bench

bench: $(VENV)/.installed  ## benchmarks (not tests): see bench/, and the peers run (bench/peers.py)
	$(PY) bench/validate_scale.py
	$(PY) bench/run_bench.py
	$(PY) bench/peers.py  # gtool beside torch, JAX, autograd, PyTensor (the shared peers harness; missing peers skipped)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
