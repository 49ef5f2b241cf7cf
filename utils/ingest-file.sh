#!/usr/bin/env bash
# Upload a local file, ingest it as a new update of DATASET and wait until the update is complete.
#
#   utils/ingest-file.sh DATASET FILE [snapshot|delta]     (KIND defaults to snapshot)
#
# Progress goes to stderr; the new update's id is printed on stdout, so scripts can chain:
#   id=$(utils/ingest-file.sh sales ./sales.csv) && utils/wait-for-update.sh sales "$id"
# Exit: 0 complete, 1 the ingest failed (the job's error is shown), 2 bad usage.
#
# The instance and the caller come from the environment, as for edl-api itself: EDL_INSTANCE
# (default local), AWS_PROFILE or the AWS_* variables. EDL_API names the command (default edl-api);
# EDL_API_OPTS adds options (for example "--timeout 1800 --format csv").
set -euo pipefail

usage() { echo "usage: $0 DATASET FILE [snapshot|delta]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
dataset=$1 file=$2 kind=${3:-snapshot}
[[ $kind == snapshot || $kind == delta ]] || { echo "Error: KIND must be snapshot or delta" >&2; usage; }
[[ -f $file ]] || { echo "Error: no such file: $file" >&2; exit 2; }

read -r -a api <<< "${EDL_API:-edl-api}"
read -r -a extra <<< "${EDL_API_OPTS:-}"
python=${EDL_PYTHON:-python3}

# --json prints the finished job; the errors of a failed one still go to stderr.
job=$("${api[@]}" ingest "$dataset" --source "$file" --kind "$kind" --wait --json ${extra[@]+"${extra[@]}"})
update_id=$(printf '%s' "$job" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["update_id"])')
echo "update $update_id of $dataset is complete" >&2
echo "$update_id"
