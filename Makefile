# edgeamp developer entry points. `make demo` and `make test` are the README's two commands:
# each sets up everything it needs on a fresh Debian machine (as root: system packages too).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# pytest options, e.g. make test PYTEST_ARGS="-k bundle -x"
PYTEST_ARGS ?=

.PHONY: help setup system-deps demo test lint bench report gpu-check clean

help:
	@echo "make demo    set up .venv and run the end-to-end demo on the built-in demo data"
	@echo "make test    set up .venv and run lint + the whole test suite"
	@echo "make bench   run the benchmarks in benchmarks/ (pytest-benchmark)"
	@echo "make report  regenerate README's performance table from benchmarks/results/latest.json"
	@echo "make gpu-check  short seed and stateful trainings on a GPU (cuDNN), steps/s against the CPU"

system-deps:
	@bash .ci/system-deps

$(BIN)/.installed: pyproject.toml setup.py edge_runtime/native/kernel.cpp
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $@

setup: system-deps $(BIN)/.installed

demo: setup
	$(BIN)/edgeamp demo --out-dir demo-out

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	mkdir -p benchmarks/results
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-json=benchmarks/results/latest.json $(PYTEST_ARGS)

report: setup
	$(BIN)/python benchmarks/report.py benchmarks/results/latest.json --readme README.md --png docs/latency.png

gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --steps 50

clean:
	rm -rf $(VENV) demo-out build *.egg-info
