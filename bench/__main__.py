"""`python -m bench [GROUP ...] [--rounds N]`: run EDL's benchmarks and check them against their
targets. Groups: deploy, sceptre, validate, ingest, api, grants, state, query, pipelines (default: all, in
that order).
Prints every measurement with the baseline measured in the same run, the ratio and PASS/FAIL,
and writes bench/results/latest.json. Exit code: 0 all passed, 1 a target was missed, 2 a benchmark could
not be measured."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from bench import (
    api_bench,
    deploy,
    grants_bench,
    ingest_bench,
    local_state,
    pipeline_bench,
    query_bench,
    sceptre_compare,
    validate,
)
from bench._common import (
    LOAD_AT_START,
    REPO,
    BenchError,
    Line,
    check_tools,
    take_snapshot,
    write_results,
)

GROUPS = {
    "deploy": (deploy.measure, "an unchanged deploy-core vs the first, and its change sets"),
    "sceptre": (sceptre_compare.measure, "deploy-core vs Sceptre 4 on the same templates"),
    "validate": (validate.measure, "edl validate vs the cfn-lint CLI"),
    "ingest": (ingest_bench.measure, "conversion, end to end, memory growth, lake.read scaling"),
    "api": (api_bench.measure, "local REST API reads vs boto3; warm vs cold ingest"),
    "grants": (grants_bench.measure, "credential vends among 50,000 grants vs a bare AssumeRole"),
    "state": (local_state.measure, "the kept local lake: write overhead, start-up of a big lake"),
    "query": (query_bench.measure, "edl-api query vs DuckDB over the same files; vs datasets"),
    "pipelines": (pipeline_bench.measure, "run-pipeline vs the same job by hand; reads after "
                  "compact"),
}


def _terminate(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so every `finally` runs and local clouds are stopped.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"one or more of: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--live", action="store_true",
                        help="run edl/ where it is instead of a snapshot taken at the start "
                             "(a round during which edl/ changes is then not counted)")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown or args.rounds < 1:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}"
                     if unknown else "--rounds must be at least 1")
    groups = list(dict.fromkeys(args.groups)) or list(GROUPS)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    try:
        check_tools()
        snapshot = None if args.live else take_snapshot()
    except BenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_groups(groups, args.rounds, snapshot)
    finally:
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)


def _run_groups(groups: list[str], rounds: int, snapshot: Path | None) -> int:
    print(f"benchmarking edl/ {'as a snapshot taken now' if snapshot else 'in place'} "
          f"({snapshot / 'edl' if snapshot else REPO / 'edl'})", flush=True)
    lines: list[Line] = []
    details: dict[str, dict] = {}
    failed: list[str] = []
    started = time.perf_counter()
    for name in groups:
        measure, title = GROUPS[name]
        print(f"== {name}: {title}", flush=True)
        group_started = time.perf_counter()
        try:
            group_lines, group_details = measure(rounds)
        except BenchError as exc:
            print(f"  ERROR: {exc}", flush=True)
            failed.append(name)
            details[name] = {"error": str(exc)}
            continue
        except Exception:  # noqa: BLE001 - report, and go on with the next group
            traceback.print_exc()
            failed.append(name)
            details[name] = {"error": traceback.format_exc()}
            continue
        group_details["seconds"] = time.perf_counter() - group_started
        details[name] = group_details
        lines.extend(group_lines)
        for line in group_lines:
            print("  " + line.render(), flush=True)

    out = write_results(details, lines, failed)
    load = " / ".join(f"{a:.1f}" for a in LOAD_AT_START[:1] + os.getloadavg()[:1])
    print(f"\n== summary ({time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs, load "
          f"average {load} at start / end; results in {out})")
    for line in lines:
        print(line.render())
    for name in failed:
        print(f"[{name}] could not be measured: see the error above  FAIL")
    if failed:
        return 2
    return 0 if all(line.passed is not False for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
