"""Benchmark 6: the credential broker among 50,000 grants.

With 50,000 grants in the grants table (`edl-local-grants`, in the item shapes the server
writes: `Grant.to_item()`, the open lock and the active pointer beside each open grant, spread
over 2,000 datasets and 5,000 grantees, 5,000 of them on the measured dataset itself), vending
read credentials through the local API - `GET /datasets/<d>/credentials?level=read`, signed by
`edl_api.client.ApiClient` as the demo user bob, who holds one real active grant on the
sensitive dataset made through the API (bob requests, alice approves) - takes at most 2x a bare
`sts:AssumeRole` of the same dataset read role on the same moto endpoint by the platform admin
(break-glass trust), with the broker's parameters (session name, source identity, 1 h). Both
p50 and p99 are held to the target. Requests alternate vend / bare (which goes first
alternates too) after warm-ups. The grant check is one keyed GetItem of the active pointer, so
the table's size must not show.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench._common import EDL, LOCAL, BenchError, Line, LocalCloud, log, percentile, run

GROUP = "grants"
GRANTS = 50_000
DATASETS = 2_000
GRANTEES = 5_000
ON_BENCH_DATASET = 5_000
REQUESTS = 200
WARM_UPS = 10
RATIO = 2.0
OWNER, USER = "alice", "bob"
DATASET = "bench_grants_sensitive"


def _grant_items(account: str, now: float):
    """50,000 grants and the items beside them, as the grant store writes them: 60% active
    (grant, open lock, active pointer, an entry in the expiry schedule), 10% requested (grant,
    open lock), 30% ended (grant); and the schedule's cursor and items."""
    from edl.utils.grants import (
        EXPIRY_CURSOR,
        EXPIRY_PARTITION,
        expiry_hour,
        expiry_key,
        expiry_shard,
        format_time,
        pointer_key,
        requested_grant,
        transition,
    )

    # The cursor first: a sweep meanwhile must not take the table for a lake without a schedule.
    yield {"dataset": EXPIRY_PARTITION, "grant_id": EXPIRY_CURSOR,
           "hour": expiry_hour(format_time(now))}
    schedule: dict[tuple[str, int], set[str]] = {}
    for n in range(GRANTS):
        dataset = DATASET if n < ON_BENCH_DATASET else f"bench_grant_ds_{n % DATASETS:04d}"
        grantee = f"arn:aws:iam::{account}:user/bench_user_{n % GRANTEES:05d}"
        level = "read" if n % 3 else "write"
        grant = requested_grant(f"{dataset}.{n:012x}", dataset=dataset, tier="sensitive",
                                grantee=grantee, level=level, requester=grantee, now=now,
                                justification="bench", duration_seconds=30 * 86400)
        kind = n % 10
        if kind < 9:
            grant = transition(grant, "approve", actor=f"arn:aws:iam::{account}:user/{OWNER}",
                               now=now)
        if kind >= 6 and kind < 9:
            grant = transition(grant, "revoke" if kind < 8 else "expire",
                               actor=f"arn:aws:iam::{account}:user/{OWNER}", now=now)
        yield grant.to_item()
        if grant.state in ("requested", "active"):
            yield {"dataset": dataset, "grant_id": pointer_key("open", level, grantee),
                   "points_to": grant.grant_id, "at": int(now)}
        if grant.state == "active":
            yield {"dataset": dataset, "grant_id": pointer_key("active", level, grantee),
                   "points_to": grant.grant_id, "expires_at": grant.expires_at}
            assert grant.expires_at is not None
            schedule.setdefault((expiry_hour(grant.expires_at), expiry_shard(grant.grant_id)),
                                set()).add(grant.grant_id)
    for (hour, shard), ids in schedule.items():
        yield {**expiry_key(hour, shard), "grants": ids}


def _bulk_load(cloud: LocalCloud) -> tuple[float, int]:
    """The grants, written with batch_write_item as the CloudFormation role."""
    from edl import naming
    from edl.aws import LOCAL_ADMIN_PROFILE, AwsSessions, Identity

    instance = cloud.instance
    dynamodb = AwsSessions(instance, Identity(LOCAL_ADMIN_PROFILE)).deploy_resource("dynamodb")
    table = dynamodb.Table(naming.table_name(instance.name, "grants"))
    started = time.perf_counter()
    items = 0
    with table.batch_writer() as batch:
        for item in _grant_items(instance.account_id, time.time()):
            batch.put_item(Item=item)
            items += 1
    seconds = time.perf_counter() - started
    # The item count rather than a scan: moto sorts the whole table for each page of a scan.
    total = table.meta.client.describe_table(TableName=table.name)["Table"]["ItemCount"]
    if total < GRANTS:   # fewer than written: grants of one (dataset, grantee) share locks
        raise BenchError(f"the grants table holds {total} items after the bulk load, "
                         f"expected at least the {GRANTS} grants")
    return seconds, items


def _bob_grant() -> str:
    """bob's real grant: requested by bob, approved by alice, through the local API."""
    from edl_api.client import ApiClient
    from edl_api.lake_api import LakeApi

    bob = LakeApi(ApiClient.for_instance(LOCAL, USER))
    alice = LakeApi(ApiClient.for_instance(LOCAL, OWNER))
    grant = bob.request_grant(DATASET, "read", duration="30d", justification="bench")
    approved = alice.approve_grant(grant["grant_id"])
    if approved["state"] != "active":
        raise BenchError(f"bob's grant {grant['grant_id']} is {approved['state']}, not active")
    return grant["grant_id"]


def _measure(cloud: LocalCloud) -> dict[str, list[float]]:
    import boto3

    from edl import naming
    from edl.aws import read_local_profile
    from edl_api.client import ApiClient
    from edl_api.lake_api import LakeApi

    instance = cloud.instance
    bob = LakeApi(ApiClient.for_instance(LOCAL, USER))
    key, secret = read_local_profile("admin")
    sts = boto3.client("sts", region_name=instance.default_region, endpoint_url=cloud.endpoint,
                       aws_access_key_id=key, aws_secret_access_key=secret)
    role_arn = naming.role_arn(instance.account_id,
                               naming.dataset_role(instance.name, DATASET, "read"))

    def vend() -> str:
        answer = bob.get_credentials(DATASET, "read")
        if answer["basis"] != "grant":
            raise BenchError(f"bob's credentials came on basis {answer['basis']}, not grant")
        return answer["access_key_id"]

    def bare() -> str:
        return sts.assume_role(RoleArn=role_arn, RoleSessionName=USER, SourceIdentity=USER,
                               DurationSeconds=3600)["Credentials"]["AccessKeyId"]

    for _ in range(WARM_UPS):
        vend()
        bare()
    runs: dict[str, list[float]] = {"vend": [], "bare": []}
    order = (("vend", vend), ("bare", bare))
    for i in range(REQUESTS):
        for side, call in (order if i % 2 == 0 else order[::-1]):
            started = time.perf_counter()
            call()
            runs[side].append(time.perf_counter() - started)
    return runs


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    details: dict[str, Any] = {"grants": GRANTS, "requests": REQUESTS, "rounds": []}
    all_runs: dict[str, list[float]] = {"vend": [], "bare": []}
    with LocalCloud(GROUP) as cloud:
        details["start_s"] = cloud.start(spark=False)
        details["deploy_core_s"] = run([EDL, "deploy-core", "--instance", LOCAL], cloud.env())[0]
        run([EDL, "deploy-dataset", DATASET, "--tier", "sensitive", "--owner", OWNER,
             "--instance", LOCAL], cloud.env())
        details["bulk_load_s"], details["items"] = _bulk_load(cloud)
        log(f"loaded {GRANTS} grants ({details['items']} items) in "
            f"{details['bulk_load_s']:.1f} s")
        details["grant_id"] = _bob_grant()
        cpu_before = cloud.server_cpu_seconds()
        for n in range(1, rounds + 1):
            runs = _measure(cloud)
            stats = {side: {"p50_ms": percentile(v, 50) * 1e3,
                            "p99_ms": percentile(v, 99) * 1e3,
                            "mean_ms": statistics.fmean(v) * 1e3} for side, v in runs.items()}
            details["rounds"].append(stats)
            log(f"round {n}/{rounds}: vend p50 {stats['vend']['p50_ms']:.1f} ms, p99 "
                f"{stats['vend']['p99_ms']:.1f} ms; bare AssumeRole p50 "
                f"{stats['bare']['p50_ms']:.1f} ms, p99 {stats['bare']['p99_ms']:.1f} ms")
            for side in all_runs:
                all_runs[side] += runs[side]
        details["server_cpu_s"] = cloud.server_cpu_seconds() - cpu_before
    count = len(all_runs["vend"])
    lines = []
    for q in (50, 99):
        lines.append(Line(
            GROUP, f"GET /datasets/{{d}}/credentials as {USER} among {GRANTS} grants, p{q} of "
            f"{count}", percentile(all_runs["vend"], q) * 1e3, RATIO,
            baseline=percentile(all_runs["bare"], q) * 1e3,
            baseline_name=f"bare sts:AssumeRole of the read role as the admin, p{q}", unit="ms",
            runs={"vend_ms": [t * 1e3 for t in all_runs["vend"]],
                  "bare_ms": [t * 1e3 for t in all_runs["bare"]]} if q == 50 else {}))
    return lines, details


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main(["grants", *sys.argv[1:]]))
