"""Updates on the real local cloud when ingests race (issue #7 §4).

An ingest killed mid-way is test_local_state_e2e.py's: it SIGKILLs the runtime itself during an
ingest and starts it again (the update ends failed, nothing of it readable, a rerun succeeds);
that staged files are out of every user-facing role's reach is checked on the rendered policies
(tests/unit/test_templates.py).

Ten concurrent ingests into one dataset run in this process on the session's Spark, as the
ingest job role: ten distinct ids, all complete, and every "as of" read made during the run
returns the same rows at the end.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from edl.utils import lake
from tests.e2e.helpers import DATA, DROP, client, deploy, ingest_in_process, reader, rows

KILLED, RACED = "e2e_killed", "e2e_raced"
FILES = 40


def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=DATA, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def wait_for(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.2)
    return value


def test_ten_concurrent_ingests_get_distinct_ids_and_reads_as_of_each_are_stable(
        local_cloud, spark):
    deploy(RACED)
    s3 = client(local_cloud, "s3")
    assert ingest_in_process(spark, RACED, _put(s3, "raced/base.csv", b"id,val\n0,base\n")) == 0
    sources = [_put(s3, f"raced/d{n}.csv", f"id,val,op\n{n % 3},d{n},U\n{10 + n},new,I\n"
                    .encode()) for n in range(10)]
    as_reader = reader(RACED)
    seen: dict[str, list[tuple]] = {}

    def ingest_and_read(source: str) -> None:
        assert ingest_in_process(spark, RACED, source, "--kind", "delta") == 0
        newest = lake.list_updates(RACED, instance="local")
        mine = max((u for u in newest if u.source == source), key=lambda u: u.update_id)
        seen[mine.update_id] = rows(spark, as_reader, RACED, as_of=mine.update_id)

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(ingest_and_read, sources))

    updates = lake.list_updates(RACED, instance="local")
    assert len({u.update_id for u in updates}) == 11
    assert all(u.status == "complete" for u in updates)
    assert sorted(u.commit_seq for u in updates) == list(range(1, 12))
    for update_id, then in seen.items():
        assert rows(spark, as_reader, RACED, as_of=update_id) == then, f"as of {update_id}"
    # "as of" follows commit order: each delta's keys 10+n appear exactly from its commit on
    by_commit = sorted(updates[1:], key=lambda u: u.commit_seq)
    for position, update in enumerate(by_commit):
        added = {int(u.source.rsplit("d", 1)[1].split(".")[0]) + 10
                 for u in by_commit[:position + 1]}
        assert {k for k, _ in seen[update.update_id] if k >= 10} == added


def _put(s3, key: str, body: bytes) -> str:
    s3.put_object(Bucket=DROP, Key=key, Body=body)
    return f"s3://{DROP}/{key}"
