"""Benchmark 1: a second `edl deploy-core` with nothing changed costs at most 0.25x the first, and
creates no change set.

Per round, on a fresh local cloud of the bench's own with an empty EDL home (cold lint cache),
its CloudFormation endpoint warmed up untimed (moto's first CloudFormation call costs about 1 s
of emulator start-up, which would flatter the ratio; see `LocalCloud.warm_up`), the plain
command `edl deploy-core --instance local` is timed as a subprocess, as a user runs it, twice:
the first deploy (creates every core stack) and the second (nothing changed). Then an identical
third deploy runs under a wrapper that counts the AWS API calls the command makes (every botocore
call passes through `BaseClient._make_api_call`), so the change-set count comes from what the
command actually sent, not from moto's list_change_sets (unreliable after execution). The wrapper
is not timed against the target: patching the client is not the plain command.

For information, each round also times a first deploy as a user's first deploy right after
`edl local start` runs: the endpoint not warmed up and the runtime's Spark session starting in
the background (the bench switches that warm-up off everywhere else).

A round during which a file under edl/ changed is not counted (and says so): deploy-core ships
edl/ as the ingest job's code package, so such an edit is a real change for the next deploy.

Once, as a control, the same counting wrapper runs a first deploy on a fresh cloud: it must count
one CreateChangeSet per core stack, or the counter is not seeing the calls.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._common import (
    EDL,
    LOCAL,
    BenchError,
    Line,
    LocalCloud,
    check_core_deployed,
    core_stack_names,
    log,
    median,
    run,
    source_digest,
)

GROUP = "deploy"
TARGET_RATIO = 0.25
DEPLOY_ARGS = ("deploy-core", "--instance", LOCAL)

# Runs `edl` in-process with every AWS API call counted; writes the counts to argv[1].
_COUNTING = r"""
import json, sys, threading, time
from collections import Counter
import botocore.client

calls, lock = Counter(), threading.Lock()
original = botocore.client.BaseClient._make_api_call

def counted(self, operation_name, api_params):
    with lock:
        calls[f"{self.meta.service_model.service_name}:{operation_name}"] += 1
    return original(self, operation_name, api_params)

botocore.client.BaseClient._make_api_call = counted
from edl.installed_scripts.dl import main

started = time.perf_counter()
code = main(sys.argv[2:])
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"exit": code, "seconds": seconds, "calls": dict(calls)}, out)
sys.exit(code)
"""


def _counted_deploy(cloud: LocalCloud) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        run([sys.executable, "-c", _COUNTING, out, *DEPLOY_ARGS], cloud.env())
        result = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    result["change_sets"] = result["calls"].get("cloudformation:CreateChangeSet", 0)
    return result


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    firsts, seconds_, unwarmed, change_sets, api_calls = [], [], [], [], []
    skipped: list[int] = []  # rounds during which edl/ was edited
    cpu: dict[str, list[float]] = {"first": [], "second": []}  # CPU seconds of the timed runs
    stacks = len(core_stack_names())
    with LocalCloud(GROUP) as cloud:  # started (and warmed up) by the first reset()
        run([EDL, "--version"], cloud.env())  # warm the file cache; not timed
        for n in range(1, rounds + 1):
            cloud.reset()
            cloud.clear_lint_cache()
            source = source_digest()
            first, done = run([EDL, *DEPLOY_ARGS], cloud.env())
            cpu_first = done.cpu_seconds
            check_core_deployed(cloud.inventory(), "the first deploy-core")
            second, done = run([EDL, *DEPLOY_ARGS], cloud.env())
            counted = _counted_deploy(cloud)
            if source_digest() != source:
                # Someone edited edl/ meanwhile: the job's code package changed, so the later
                # deploys had something to do. Such a round says nothing about an unchanged one.
                log(f"round {n}/{rounds}: edl/ changed during the round; round not counted "
                    f"(first {first:.2f} s, second {second:.2f} s, counted deploy created "
                    f"{counted['change_sets']} change set(s))")
                skipped.append(n)
                continue
            output = done.stdout + done.stderr
            if "up to date" not in output:  # measured all the same: the lines below show it
                changed = [ln for ln in output.splitlines()
                           if any(f" {a} " in ln for a in ("create", "update", "recreate"))]
                log("WARNING: the second deploy-core was not a no-op:\n    "
                    + "\n    ".join(changed or output.splitlines()[-5:]))
            firsts.append(first)
            seconds_.append(second)
            cpu["first"].append(cpu_first)
            cpu["second"].append(done.cpu_seconds)
            change_sets.append(counted["change_sets"])
            api_calls.append(counted["calls"])
            # The same first deploy as a user runs it right after `edl local start`: the
            # endpoint cold and the runtime's Spark warming up in the background.
            cloud.reset(warm=False, spark=True)
            cloud.clear_lint_cache()
            unwarmed.append(run([EDL, *DEPLOY_ARGS], cloud.env())[0])
            log(f"round {n}/{rounds}: first {first:.2f} s ({cpu_first:.2f} CPU-s), second "
                f"{second:.2f} s ({done.cpu_seconds:.2f} CPU-s); "
                f"a third identical deploy (counted) created {counted['change_sets']} change "
                f"set(s) in {sum(counted['calls'].values())} API calls; a first deploy right "
                f"after start (cold endpoint, Spark starting) {unwarmed[-1]:.2f} s")
        # Control: the counter must see the change sets of a deploy that does create stacks.
        cloud.reset()
        control = _counted_deploy(cloud)
        log(f"control: a counted first deploy created {control['change_sets']} change set(s) "
            f"for {stacks} core stacks")
    if not firsts:
        raise BenchError(f"edl/ changed during every one of the {rounds} rounds: nothing to "
                         "measure an unchanged deploy with; run again when nobody edits edl/")
    if control["change_sets"] != stacks:
        raise BenchError(f"the change-set counter saw {control['change_sets']} CreateChangeSet "
                         f"calls on a first deploy of {stacks} stacks: it is not counting")

    lines = [
        Line(GROUP, f"second deploy-core, nothing changed (median of {len(firsts)})",
             median(seconds_), TARGET_RATIO, baseline=median(firsts),
             baseline_name="first deploy-core, cold lint cache, endpoint warmed up",
             runs={"first": firsts, "second": seconds_}),
        Line(GROUP, f"second deploy-core vs a first one right after `edl local start` "
             f"(median of {len(unwarmed)})", median(seconds_), None, baseline=median(unwarmed),
             baseline_name="first deploy-core, cold lint cache, cold endpoint, Spark starting",
             runs={"first_unwarmed": unwarmed, "second": seconds_}),
        Line(GROUP, f"change sets created by an unchanged deploy-core (max of {len(change_sets)})",
             max(change_sets), 0, kind="count", unit="",
             runs={"change_sets": change_sets, "control_first_deploy": control["change_sets"]}),
    ]
    details = {"first_deploy_s": firsts, "second_deploy_s": seconds_,
               "first_deploy_cpu_s": cpu["first"], "second_deploy_cpu_s": cpu["second"],
               "first_deploy_endpoint_not_warmed_s": unwarmed,
               "unchanged_deploy_change_sets": change_sets,
               "unchanged_deploy_api_calls": dict(sorted(api_calls[-1].items())),
               "control_first_deploy_change_sets": control["change_sets"],
               "control_first_deploy_api_calls": dict(sorted(control["calls"].items())),
               "core_stacks": stacks, "endpoint_warm_up_s": cloud.warm_ups,
               "rounds_not_counted_edl_changed": skipped}
    return lines, details
