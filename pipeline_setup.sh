#!/usr/bin/env bash
# For pipeline developers: installs EDL (the `edl` and `edl-api` commands and the helper library
# pipelines import) into .venv, with Java for Spark, from this repo's own files.
set -euo pipefail
cd "$(dirname "$0")"
make venv java
cat <<'TXT'

EDL is installed in .venv. Next:
  source .venv/bin/activate
  edl local start                                   # the whole lake on this machine
  edl deploy-core && edl deploy-dataset ...         # see README.md, "Pipelines"
  edl deploy-pipeline pipelines/example             # your pipeline: a folder like this one
  edl run-pipeline trials_by_site --wait
TXT
