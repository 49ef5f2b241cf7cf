#!/usr/bin/env bash
# Wait until an update of a dataset is complete (exit 0) or failed (exit 1, its reason shown).
#
#   utils/wait-for-update.sh DATASET UPDATE_ID
#
# Polls `edl-api update DATASET UPDATE_ID` every WAIT_INTERVAL seconds (default 2) for at most
# WAIT_TIMEOUT seconds (default 900; exit 124 when it runs out). The instance and the caller come
# from the environment as for edl-api: EDL_INSTANCE, AWS_PROFILE or the AWS_* variables;
# EDL_API names the command (default edl-api).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 DATASET UPDATE_ID" >&2; exit 2; }
dataset=$1 update_id=$2
interval=${WAIT_INTERVAL:-2} timeout=${WAIT_TIMEOUT:-900}
read -r -a api <<< "${EDL_API:-edl-api}"
python=${EDL_PYTHON:-python3}

started=$SECONDS
while :; do
    record=$("${api[@]}" update "$dataset" "$update_id" --json)
    status=$(printf '%s' "$record" | "$python" -c 'import json, sys; print(json.load(sys.stdin).get("status", ""))')
    case $status in
        complete)
            echo "update $update_id of $dataset is complete" >&2
            exit 0 ;;
        failed)
            reason=$(printf '%s' "$record" | "$python" -c 'import json, sys; r = json.load(sys.stdin); print(r.get("reason") or r.get("error") or "no reason given")')
            echo "Error: update $update_id of $dataset failed: $reason" >&2
            exit 1 ;;
    esac
    if (( SECONDS - started >= timeout )); then
        echo "Error: update $update_id of $dataset still ${status:-unknown} after ${timeout}s" >&2
        exit 124
    fi
    sleep "$interval"
done
