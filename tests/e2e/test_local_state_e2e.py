"""The local lake keeps its data: `edl local stop` / `start`, a SIGKILL (right after an
acknowledged ingest, and in the middle of one), a corrupt state file.

Each test has its own EDL home and starts its own persistent local cloud with the real commands
(`edl local start`, `edl-api ... --wait`, `kill -9`), as a user would in a terminal; what it
compares is what a user would look at: the datasets and updates `edl-api` lists, the bytes in
the data bucket and the rows `lake.read` returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3

from edl import naming, paths
from edl.aws import read_local_profile
from edl.config import get_config
from edl.local import control
from edl.utils import lake
from edl.utils.context import LakeContext
from tests.e2e.helpers import run_tool as run

DATASET = "kept_trials"
DATA = "sanofi-datalake-local-restricted-us-east-1"
SNAPSHOT = "trial_id,site,enrolled\nT1,Lyon,10\nT2,Paris,20\nT3,Nice,30\n"
DELTA = "trial_id,site,enrolled,op\nT2,Paris,25,U\nT3,,,D\nT4,Lille,40,I\n"
LATER = "trial_id,site,enrolled,op\nT5,Metz,50,I\n"


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(port: int, *flags: str, spark: bool = True) -> None:
    """`edl local start`; without `spark` the runtime starts no Spark (no ingest follows)."""
    ok(run("edl", "local", "start", "--port", str(port), *flags,
           EDL_LOCAL_SPARK_WARMUP="1" if spark else "0"))


def ingest(tmp_path: Path, name: str, body: str, kind: str) -> None:
    source = tmp_path / f"{name}.csv"
    source.write_text(body)
    ok(run("edl-api", "ingest", DATASET, "--source", str(source), "--kind", kind, "--wait",
           user="alice"))


def as_deploy_role(service: str):
    """A client acting as the CloudFormation role, which may look anywhere in the lake."""
    key, secret = read_local_profile("admin")
    endpoint = control.status().endpoint_url
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id=key, aws_secret_access_key=secret)
    role = get_config().instance("local").cfn_role_arn
    creds = sts.assume_role(RoleArn=role, RoleSessionName="e2e")["Credentials"]
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def what_a_user_sees(spark) -> dict:
    """Datasets and updates (edl-api, as bob), the data bucket's bytes, and lake.read's rows."""
    datasets = json.loads(ok(run("edl-api", "datasets", "--json", user="bob")))["items"]
    updates = json.loads(ok(run("edl-api", "updates", DATASET, "--json", user="bob")))["items"]
    s3 = as_deploy_role("s3")
    listing = s3.list_objects_v2(Bucket=DATA, Prefix=f"{DATASET}/")["Contents"]
    objects = {o["Key"]: s3.get_object(Bucket=DATA, Key=o["Key"])["Body"].read()
               for o in listing}
    context = LakeContext.for_instance(
        "local", role_arn=naming.role_arn("123456789012", naming.ingest_job_role("local")))
    rows = sorted(tuple(r) for r in lake.read(spark, DATASET, context=context).collect())
    return {"datasets": sorted(d.get("dataset") or d.get("name") for d in datasets),
            "updates": [(u["update_id"], u["kind"], u["status"], u.get("rows")) for u in updates],
            "objects": objects, "rows": rows}


def kill_runtime() -> None:
    pid = control.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while control.status().pid is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_lake_survives_stop_start_and_a_kill_right_after_an_ingest(
        free_port_number, stop_local_cloud, spark, tmp_path):
    port = free_port_number
    start(port)
    for command in (("deploy-core",),
                    ("deploy-dataset", DATASET, "--tier", "restricted", "--owner", "alice",
                     "--key", "trial_id", "--op-column", "op", "--delete-marker", "D")):
        ok(run("edl", *command))
    ingest(tmp_path, "snapshot", SNAPSHOT, "snapshot")
    ingest(tmp_path, "delta", DELTA, "delta")
    before = what_a_user_sees(spark)
    assert before["rows"] == [("T1", "Lyon", 10), ("T2", "Paris", 25), ("T4", "Lille", 40)]
    assert [u[1:] for u in before["updates"]] == [("snapshot", "complete", 3),
                                                   ("delta", "complete", 3)]

    saved_keys = paths.local_credentials_file().read_text()
    ok(run("edl", "local", "stop"))
    assert paths.local_credentials_file().read_text() == saved_keys  # kept while stopped
    start(port)
    assert what_a_user_sees(spark) == before      # bob's and alice's saved keys still work
    assert paths.local_credentials_file().read_text() == saved_keys
    status = run("edl", "local", "status")
    assert status.returncode == 0
    assert str(paths.local_state_dir()) in status.stderr and "last saved" in status.stderr

    ingest(tmp_path, "later", LATER, "delta")   # acknowledged: --wait saw it complete
    acknowledged = what_a_user_sees(spark)
    kill_runtime()
    start(port)
    after_kill = what_a_user_sees(spark)
    assert after_kill == acknowledged
    assert ("T5", "Metz", 50) in after_kill["rows"]

    # The runtime killed in the middle of an ingest, then started again: the update ends
    # failed, nothing of it is readable or left behind, and a rerun succeeds.
    big = tmp_path / "big.csv"
    with big.open("w") as out:
        out.write("trial_id,site,enrolled,op\n")
        out.writelines(f"B{n},Site{n % 97},{n},I\n" for n in range(300_000))
    answer = json.loads(ok(run("edl-api", "ingest", DATASET, "--source", str(big), "--kind",
                               "delta", "--json", user="alice")))
    update_id = answer["update_id"]
    s3 = as_deploy_role("s3")
    staging = f"{naming.STAGING_ROOT}/{DATASET}/{update_id}/"
    deadline = time.monotonic() + 120
    while not s3.list_objects_v2(Bucket=DATA, Prefix=staging).get("KeyCount"):
        assert time.monotonic() < deadline, "the ingest staged nothing within 120 s"
        time.sleep(0.05)
    kill_runtime()
    start(port)
    deadline = time.monotonic() + 60
    while (update := json.loads(ok(run("edl-api", "update", DATASET, update_id, "--json",
                                       user="bob"))))["status"] == "pending":
        assert time.monotonic() < deadline, "the start-up sweep failed no update within 60 s"
        time.sleep(0.5)
    assert update["status"] == "failed" and "runner" in update["reason"]
    # The sweep marks the update failed first, then removes its files (a crash in between
    # leaves them to the next sweep): they are gone shortly after.
    for prefix in (staging, f"{DATASET}/raw/{update_id}/", f"{DATASET}/data/{update_id}/"):
        while s3.list_objects_v2(Bucket=DATA, Prefix=prefix).get("KeyCount"):
            assert time.monotonic() < deadline, f"{prefix} still holds files"
            time.sleep(0.5)
    assert what_a_user_sees(spark)["rows"] == after_kill["rows"]
    ingest(tmp_path, "rerun", "trial_id,site,enrolled,op\nT6,Caen,60,I\n", "delta")
    assert ("T6", "Caen", 60) in what_a_user_sees(spark)["rows"]


def test_a_corrupt_state_file_is_a_clear_error_and_stays_as_it_was(free_port_number,
                                                                  stop_local_cloud):
    port = free_port_number
    start(port, spark=False)
    ok(run("edl", "local", "stop"))
    folder = paths.local_state_dir()
    [snapshot] = folder.glob("snapshot-*.bin")
    data = bytearray(snapshot.read_bytes())
    data[-5] ^= 0xFF
    snapshot.write_bytes(bytes(data))

    refused = run("edl", "local", "start", "--port", str(port), EDL_LOCAL_SPARK_WARMUP="0")
    assert refused.returncode != 0
    assert str(folder) in refused.stderr and "checksum" in refused.stderr
    assert "--fresh" in refused.stderr and "Traceback" not in refused.stderr
    assert snapshot.read_bytes() == bytes(data)
    assert not control.status().running

    start(port, "--fresh", "--yes", spark=False)     # the way out: an empty lake
    assert not list(folder.glob("snapshot-*.bin"))
