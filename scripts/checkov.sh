#!/usr/bin/env bash
# `make checkov`: checkov over the templates as `edl render` writes them for an instance
# (default dev01; `scripts/checkov.sh uat`). Every failed check is either fixed in the template or
# suppressed there, on the resource, with a `checkov: skip:` entry and a reason a reviewer would
# accept; so any failure here is new and fails the run.
#
# checkov lives in its own venv (.venv-checkov/), not in .venv: it pins its own versions of
# libraries that cfn-lint and moto also use. Its version is pinned here so that a new release
# (with new checks) does not fail the build unannounced: raise it on purpose.
set -euo pipefail

CHECKOV_VERSION=3.3.30
INSTANCE="${1:-dev01}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-checkov"
EDL="$ROOT/.venv/bin/edl"

if [ ! -x "$EDL" ]; then
    echo "scripts/checkov.sh: $EDL is missing; run 'make venv' first" >&2
    exit 2
fi
if [ "$("$VENV/bin/checkov" --version 2>/dev/null || true)" != "$CHECKOV_VERSION" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$EDL" render --instance "$INSTANCE" --out "$OUT" >/dev/null
# --skip-download: no calls home for guidelines; the checks themselves ship in the package.
"$VENV/bin/checkov" --directory "$OUT" --framework cloudformation --quiet --compact \
    --skip-download
