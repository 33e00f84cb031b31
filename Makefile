# The README's commands. Each one makes the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: demo demo-prod test test-pythons lint type docs bench bench-server clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 9) and "flask-observe needs Python 3.9 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[example]'
	touch $@

$(VENV)/.installed-test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,docs,example]'
	touch $@

$(VENV)/.installed-bench: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench,example]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python -m example_app --host $(HOST) --port $(PORT)

# The production shape: gunicorn, 4 workers sharing their metrics through prometheus_client's
# multiprocess files, in a directory made for this run and removed after it.
demo-prod: $(VENV)/.installed-demo
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/flask-observe-metrics.XXXXXX") && \
	trap 'rm -rf "$$dir"' EXIT && \
	echo "prometheus_client multiprocess files: $$dir" && \
	PROMETHEUS_MULTIPROC_DIR="$$dir" $(BIN)/gunicorn -c example_app/gunicorn.conf.py \
		--bind $(HOST):$(PORT)

test: lint type
	$(BIN)/python -m pytest
	$(MAKE) docs

# The suite on every supported Python this machine has (under pyenv, or on the PATH as
# python3.X: the last of those that runs), each in a .venv-3.X of its own with what pip resolves there; fails on the first
# failure. A version not found is named and left out.
PYTHONS ?= 3.9 3.10 3.11 3.12 3.13
test-pythons:
	@for v in $(PYTHONS); do \
		py=; for c in $$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$$v.*/bin/python 2>/dev/null) \
			$$(command -v python$$v); do "$$c" -c '' 2>/dev/null && py=$$c; done; \
		if [ -z "$$py" ]; then echo "== Python $$v: not found, left out"; continue; fi; \
		echo "== Python $$v: $$py"; \
		[ -x .venv-$$v/bin/python ] || $$py -m venv .venv-$$v || exit 1; \
		.venv-$$v/bin/python -m pip install --quiet --upgrade pip || exit 1; \
		.venv-$$v/bin/python -m pip install --quiet -e '.[test,example]' || exit 1; \
		.venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

lint: $(VENV)/.installed-test
	$(BIN)/ruff check flask_observe tests example_app bench
	$(BIN)/ruff format --check flask_observe tests example_app bench

type: $(VENV)/.installed-test
	$(BIN)/mypy --strict flask_observe

docs: $(VENV)/.installed-test
	$(BIN)/sphinx-build -W -q -b html docs docs/_build/html

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/signals.py

# Needs wrk (Debian package wrk) on the PATH.
bench-server: $(VENV)/.installed-bench
	$(BIN)/python bench/server.py
	$(BIN)/python bench/recycle.py

clean:
	rm -rf $(VENV) .venv-* docs/_build build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
