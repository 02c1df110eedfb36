# Two commands: `make run` (set up and scan this host) and `make test` (set up and pass all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-waf setup setup-test lint bench clean

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

# The WAF's web-server tests (real nginx and Apache with ModSecurity, PHP-FPM) run when their packages are here
# and we are root (setup-test installs them then); otherwise one line says why (and CI=true fails on it).
WAF_SERVER_PACKAGES := libnginx-mod-http-modsecurity libapache2-mod-security2

test: setup-test
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not waf_server"
	@if [ "$$(id -u)" = 0 ] && [ "$$(dpkg-query -W -f='$${Status}\n' $(WAF_SERVER_PACKAGES) 2>/dev/null | \
	      grep -c 'install ok installed')" = 2 ]; then $(MAKE) --no-print-directory test-waf; \
	 else echo "make test: WAF server tests not run (they need root and $(WAF_SERVER_PACKAGES): make test-waf)" >&2; \
	      [ "$$CI" != true ]; fi

test-waf: setup-test
	$(BIN)/python -m pytest -q -m waf_server

bench: setup-test
	$(BIN)/python benchmarks/scan.py
	$(BIN)/python benchmarks/integrity.py --base --cold
	$(BIN)/python benchmarks/vulns.py
	$(BIN)/python benchmarks/waf.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
