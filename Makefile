# A newcomer's two commands: `make run` and `make test`. Both set up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# TF.js exports are verified in real TF.js under Node (tfbuild/runtimes/tfjs_run.js).
HAVE_NPM := $(shell command -v npm 2>/dev/null)

# ... and in headless Chromium (tfbuild/runtimes/tfjs_browser.py): the system's browser,
# never a downloaded one; these are the names tfbuild/runtimes/chromium.py looks for.
CHROMIUM_NAMES := chromium chromium-browser google-chrome google-chrome-stable

.PHONY: setup run test test-fast bench clean node-missing chromium sshd

ifneq ($(HAVE_NPM),)
setup: $(STAMP) $(NODE_STAMP) chromium sshd
else
# Without Node the Python part still installs; only TF.js verification is unavailable, and a
# build that asks for it says so then.
setup: $(STAMP) node-missing chromium sshd
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

# Chromium is installed where we may (root with apt-get); elsewhere a note. Never fails setup:
# everything but browser verification works without it, and a build that asks says so.
chromium:
	@for name in $(CHROMIUM_NAMES); do command -v $$name >/dev/null 2>&1 && exit 0; done; \
	if [ -n "$$TFBUILD_CHROMIUM" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium (apt-get install chromium) for browser verification of TF.js exports"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "note: apt-get install chromium failed; TF.js browser verification is unavailable until Chromium is installed"; \
	else \
		echo "note: Chromium is needed for TF.js browser verification (e.g. sudo apt-get install chromium, or set TFBUILD_CHROMIUM=/path/to/chromium)"; \
	fi

# sshd (Debian's openssh-server) for the remote-cache tests, which start their own on a loopback
# port; installed where we may, a note elsewhere. Never fails setup: only those tests need it.
sshd:
	@.ci/install-sshd || true

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
