# BeatSync — the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

# Debian packages the test media is built from: real music and a speech synthesiser.
SYSTEM_PACKAGES := extremetuxracer-data espeak-ng

.PHONY: serve test lint typecheck imports pytest sysdeps venv bench bench-accuracy bench-speed clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# The web service (API, job runner, web page) is the next layer to be built on the engine; until
# it lands, this target prepares the environment and says what is there today.
serve: venv
	@echo "The BeatSync web service is not part of this build yet."
	@echo "The engine and its command line are installed: $(VENV)/bin/beatsync sync --help"
	@exit 1

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

pytest: venv sysdeps
	$(VENV)/bin/pytest -n 2 --dist loadfile

test: lint typecheck imports pytest

bench: bench-accuracy bench-speed

bench-accuracy: venv sysdeps
	$(PY) bench/accuracy.py

bench-speed: venv sysdeps
	$(PY) bench/speed.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/.media
