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

.PHONY: demo test venv java bench checkov clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

java:
	@scripts/ensure-java.sh

test: venv java
	$(BIN)/python -m pytest -q

demo: venv java
	EDL_DEMO_KEEP=$(KEEP) PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo.sh

bench: venv java
	$(BIN)/python -m bench

# checkov over `edl render --instance dev01` (its own venv, .venv-checkov/; INSTANCE=uat for another)
checkov: venv
	scripts/checkov.sh $(or $(INSTANCE),dev01)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
