# cryofm: the two commands of the README.
#   make demo   set up (venv + install) and run the end-to-end demo on built-in data
#   make test   set up and run ruff + the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= outputs/demo
# test processes (pytest-xdist); the suite takes ~13 min in one process on 2 cores, ~8 min in two
JOBS ?= 2

.PHONY: demo test lint bench setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

demo: setup
	$(PY) -m cryofm.demo out=$(OUT) $(ARGS)

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(JOBS) $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
