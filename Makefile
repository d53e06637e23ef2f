# BeatSync — the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the tests need: real music and a speech synthesiser to build the test media
# from, the Chromium that drives the web page in the browser tests, and Compose and nginx, which
# check the files in deploy/.
SYSTEM_PACKAGES := extremetuxracer-data sonic-pi-samples espeak-ng chromium docker-compose nginx pgbouncer

.PHONY: serve package docs test lint typecheck imports pytest sysdeps venv node assembly-copy bench bench-accuracy bench-speed bench-scaling bench-load bench-phone bench-scale clean

HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
# Two stamps in one virtual environment: the package alone (what serving needs) and the package
# with the test, lint and benchmark tools (what everything else needs).
PACKAGE_STAMP := $(VENV)/.package-$(HASH)
STAMP := $(VENV)/.installed-$(HASH)

package: $(PACKAGE_STAMP)

venv: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(PACKAGE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	rm -f $(VENV)/.package-*
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* $(VENV)/.package-*
	touch $@ $(PACKAGE_STAMP)

# The web service on its embedded default: SQLite, files and worker processes under ./data.
# BEATSYNC_* variables configure it (docs/configuration.md); HOST/PORT/WORKERS are shortcuts.
serve: package
	$(VENV)/bin/beatsync serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) \
		$(if $(WORKERS),--workers $(WORKERS))

sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

# The mini-program's Node packages (Jest, miniprogram-simulate, ws), installed from its lock file
# again whenever the lock changes; `npm ci` starts node_modules afresh, old stamps included.
NODE_STAMP := miniprogram/node_modules/.installed-$(shell cat miniprogram/package-lock.json | sha256sum | cut -c1-12)

node: $(NODE_STAMP)

$(NODE_STAMP): miniprogram/package-lock.json
	cd miniprogram && npm ci --no-audit --no-fund
	touch $@

# The mini-program's copy of the page's assembly module (src/beatsync/web/assemble) is generated:
# this fails when it was not regenerated after a change (`cd miniprogram && npm run assemble-sync`).
assembly-copy: node
	cd miniprogram && node scripts/assemble-sync.js --check

pytest: venv sysdeps node
	$(VENV)/bin/pytest -n 2 --dist loadfile

test: lint typecheck imports assembly-copy pytest

bench: bench-accuracy bench-speed bench-scaling bench-load bench-phone bench-scale

bench-accuracy: venv sysdeps
	$(PY) bench/accuracy.py

bench-speed: venv sysdeps
	$(PY) bench/speed.py

bench-scaling: venv sysdeps
	$(PY) bench/scaling.py

bench-load: venv sysdeps
	$(PY) bench/load.py

bench-phone: venv sysdeps
	$(PY) bench/phone.py

# Needs PostgreSQL on 127.0.0.1:5432 (BEATSYNC_BENCH_POSTGRES) and redis-server.
bench-scale: venv sysdeps
	$(PY) bench/scale.py

docs: venv
	$(PY) -m beatsync.service.docs docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/.media
