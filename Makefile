# Two commands: `make run` (set up and scan this host) and `make test` (set up and pass all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup setup-test lint bench clean

run: setup
	@# Exit 1 means "findings at or above --fail-on": that is the report, not a failed make.
	@$(BIN)/hostguard scan $(ARGS) || [ $$? -eq 1 ]

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-system-deps.sh
	@bash scripts/install-system-deps.sh run
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || { echo "cannot create $(VENV): install python3-venv (apt-get install python3-venv)" >&2; exit 2; }
	@$(BIN)/pip install -q --disable-pip-version-check -e . 
	@touch $@

setup-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	@bash scripts/install-system-deps.sh test
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

test: setup-test
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: setup-test
	$(BIN)/python benchmarks/scan.py
	$(BIN)/python benchmarks/integrity.py --base --cold
	$(BIN)/python benchmarks/vulns.py
	$(BIN)/python benchmarks/waf.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
