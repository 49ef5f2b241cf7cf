# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job on the embedded default (local cloud): start, deploy, show, stop
#   make test   - the whole test suite
# Both create or refresh .venv from this repo's own files first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# KEEP=1 leaves the local cloud running after `make demo`.
KEEP   ?= 0
# `make test` runs the suite on this many processes (pytest-xdist; a test file stays on one).
WORKERS ?= 2

.PHONY: demo test venv java bench checkov clean lock lint

venv: $(STAMP)

# Exact versions come from constraints.txt (`make lock` refreshes it from setup.cfg).
$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

lock:
	scripts/lock.sh

java:
	@scripts/ensure-java.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv java lint
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

demo: venv java
	EDL_DEMO_KEEP=$(KEEP) PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo.sh

bench: venv java
	$(BIN)/python -m bench

# checkov over `edl render --instance dev01` (its own venv, .venv-checkov/; INSTANCE=uat for another)
checkov: venv
	scripts/checkov.sh $(or $(INSTANCE),dev01)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
