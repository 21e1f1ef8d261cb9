# promod: `make run` starts a demo daemon, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= var/demo
STAMP  := $(VENV)/.installed
# pytest runs on both cores (pytest-xdist): the end-to-end tests spend most of their
# time waiting on a daemon subprocess, so one worker leaves a core idle. `--dist
# loadgroup` keeps the tests marked xdist_group (one module-scoped build) on one
# worker. WORKERS=0 runs in a single process.
WORKERS ?= 2

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The distributions were once called promod and promod-partner-voucher.
	$(BIN)/python -m pip uninstall --quiet --yes promod promod-partner-voucher 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e '.[test,dev]' $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	test -f $(DEMO)/promod.toml || $(BIN)/promod init $(DEMO) --demo
	$(BIN)/promod run --config $(DEMO)/promod.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy promod

pytest: $(STAMP)
	$(BIN)/pytest -q -n $(WORKERS) --dist loadgroup

test: lint typecheck pytest

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
