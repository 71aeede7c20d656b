# A newcomer's two commands: `make run` and `make test`. Both set up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# TF.js exports are verified in real TF.js under Node (tfbuild/runtimes/tfjs_run.js).
HAVE_NPM := $(shell command -v npm 2>/dev/null)

.PHONY: setup run test test-fast bench clean node-missing

ifneq ($(HAVE_NPM),)
setup: $(STAMP) $(NODE_STAMP)
else
# Without Node the Python part still installs; only TF.js verification is unavailable, and a
# build that asks for it says so then.
setup: $(STAMP) node-missing
endif

# Re-installs only when the dependency list changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

# Exactly the versions in package-lock.json; --ignore-scripts because nothing needed runs an
# install script, and none may download binaries. npm ci empties node_modules first, so the
# stamp is written after it.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

node-missing:
	@echo "note: Node.js 18+ and npm are needed for TF.js verification (e.g. apt install nodejs npm), then run make setup again"

run: setup
	$(BIN)/tfbuild recipe=digits

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python benchmarks/build_speed.py
	$(BIN)/python benchmarks/sweep_speed.py
	$(BIN)/python benchmarks/bench_repeatability.py
	$(BIN)/python benchmarks/realistic_model.py

clean:
	rm -rf outputs/runs outputs/sweeps outputs/cache
