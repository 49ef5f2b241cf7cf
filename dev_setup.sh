#!/usr/bin/env bash
# For work on EDL itself: everything pipeline_setup.sh installs, then the linters (ruff, mypy) run
# once, so that a fresh clone starts clean. `make test` runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
make venv java lint
cat <<'TXT'

EDL is installed in .venv for development (editable: your changes are live). Next:
  source .venv/bin/activate
  make test        # ruff, mypy and the whole test suite
  make demo        # the main job on the local cloud
  make bench       # the benchmarks (bench/README.md)
TXT
