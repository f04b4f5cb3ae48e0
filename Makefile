# softlab: one entry point.
#   make book     the main job: set up, fetch data, execute the notebooks (PARAMS=default), build the HTML book
#   make test     the test suite (what CI runs): make lint, fetch data, pytest (incl. smoke notebooks + nbval + book build)
#   make lint     ruff (lint + format check), mypy --strict, the import-layer contracts
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?= default
PYTEST_ARGS ?=

.PHONY: book test lint setup system data notebooks html expected bench clean
book: setup data notebooks html

# nbval re-executes the smoke notebooks committed with their outputs (tests/expected/) and
# compares outputs; regenerate them with `make expected` after editing a notebook.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 900

# Tests and expected outputs compute from an empty results cache, so they never depend on what
# an earlier run left in ~/.cache (cached teachers, generators and runs).
TEST_CACHE := $(CURDIR)/.cache/test

test: lint data
	rm -rf $(TEST_CACHE)
	SOFTLAB_CACHE_DIR=$(TEST_CACHE) $(PY) -m pytest -n 2 --dist loadfile --durations=15 $(NBVAL) $(PYTEST_ARGS)

# Gates before any test runs (configuration in pyproject.toml; .pre-commit-config.yaml runs the
# same ruff checks and strips notebook outputs at commit time).
LINT_PATHS := softlab tests benchmarks

lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

setup: $(VENV)/.installed system

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,annotate,test,dist,dev]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (softlab)" >/dev/null
	touch $@

system:
	bash scripts/setup-system.sh

data: setup
	$(VENV)/bin/softlab data fetch

notebooks: setup
	$(VENV)/bin/softlab run --params $(PARAMS)

html: setup
	$(VENV)/bin/softlab book

expected: setup data
	rm -rf $(TEST_CACHE)
	SOFTLAB_CACHE_DIR=$(TEST_CACHE) $(PY) -c "from softlab.pipeline import run_notebooks; from pathlib import Path; run_notebooks('smoke', out_dir=Path('tests/expected'), progress=False)"

bench: setup
	$(PY) benchmarks/bench_trainer.py --quick

clean:
	rm -rf _build book/*.ipynb book/failed-*.ipynb
