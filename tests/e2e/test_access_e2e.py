"""Access control on the real local cloud, under IAM enforcement, as users work in a terminal.

Every command is an `edl-api` process signed as its user; every data access is a real S3 call
with the credentials the broker vended. Per tier: sensitive (a second person approves, with a
justification and an expiry), internal (everyone reads; writing needs a grant), restricted (a
short grant that expires and is swept). A user created while the test runs, not a demo user,
goes through the whole sensitive flow, and the AWS CLI itself lists a dataset through the
`credential_process` profile `edl-api profile` writes.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from edl import naming
from edl.paths import local_credentials_file
from tests.e2e.conftest import LocalCloud
from tests.e2e.helpers import BIN, PREFIX, client, edl_api, ok, refused

SENSITIVE = "acc_trials"
NEIGHBOUR = "acc_other"
INTERNAL = "acc_stats"
RESTRICTED = "acc_plans"
CSV = "trial_id,site,enrolled,started\nT1,Lyon,10,2026-01-05\nT2,Zürich,20,2026-02-11\n"


def as_json(done: subprocess.CompletedProcess) -> dict:
    return json.loads(ok(done).stdout)


def data_bucket(tier: str) -> str:
    return naming.data_bucket(PREFIX, "local", tier, "us-east-1")


def drop_bucket(tier: str) -> str:
    return naming.drop_bucket(PREFIX, "local", tier, "us-east-1")


def s3_with(cloud, credentials: dict):
    """An S3 client holding nothing but what the broker vended."""
    return boto3.client("s3", endpoint_url=cloud.status.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=credentials["access_key_id"],
                        aws_secret_access_key=credentials["secret_access_key"],
                        aws_session_token=credentials["session_token"])


def denied(call) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] in ("AccessDenied", "403")


def new_user(cloud, name: str) -> None:
    """What the account team does for a new employee: an IAM user in `edl-users`, with a key,
    here written where the local cloud's profiles live."""
    iam = client(cloud, "iam")
    iam.create_user(UserName=name)
    iam.add_user_to_group(GroupName="edl-users", UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    path = local_credentials_file()
    profiles = configparser.ConfigParser()
    profiles.read(path)
    profiles[name] = {"aws_access_key_id": key["AccessKeyId"],
                      "aws_secret_access_key": key["SecretAccessKey"]}
    with path.open("w") as out:
        profiles.write(out)


def grant_id(done: subprocess.CompletedProcess) -> str:
    return as_json(done)["grant_id"]


@pytest.fixture(scope="module")
def _access_cloud(_session_local_cloud):
    """The session's local cloud, with the core and four datasets of alice's (one per case, and a
    neighbour), each with data. Their names (`acc_*`) and the user the test creates are this
    module's own, so no other test's grants or users meet them (starting a cloud of its own
    would cost a runtime and a Spark)."""
    cloud = _session_local_cloud
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDL_HOME", str(cloud.home))
        edl = str(BIN / "edl")
        subprocess.run([edl, "deploy-core"], check=True, capture_output=True, timeout=300)
        batch = cloud.home / "acc_batch.csv"
        batch.write_text(CSV, encoding="utf-8")
        for name, tier in ((SENSITIVE, "sensitive"), (NEIGHBOUR, "sensitive"),
                           (INTERNAL, "internal"), (RESTRICTED, "restricted")):
            subprocess.run([edl, "deploy-dataset", name, "--tier", tier, "--owner", "alice",
                            "--key", "trial_id"], check=True, capture_output=True, timeout=300)
            ok(edl_api("ingest", name, "--source", str(batch), "--kind", "snapshot", "--wait",
                       user="alice"))
    return cloud


@pytest.fixture
def lake(_access_cloud, edl_home, monkeypatch) -> LocalCloud:
    monkeypatch.setenv("EDL_HOME", str(_access_cloud.home))
    return _access_cloud


def test_a_new_user_is_refused_asks_is_approved_by_a_second_person_reads_and_is_revoked(
        lake):
    new_user(lake, "dana")

    refused(edl_api("credentials", SENSITIVE, "--json", user="dana"), "no", "grant", SENSITIVE)
    refused(edl_api("grant", "request", SENSITIVE, "--level", "read", "--for", "30d",
                    user="dana"), "justification")
    refused(edl_api("grant", "request", SENSITIVE, "--level", "read", "--for", "365d",
                    "--justification", "Q3 safety review", user="dana"))
    grant = grant_id(edl_api("grant", "request", SENSITIVE, "--level", "read", "--for", "30d",
                             "--justification", "Q3 safety review", "--json", user="dana"))
    pending = as_json(edl_api("grants", "--pending", "--json", user="alice"))["grants"]
    assert grant in [g["grant_id"] for g in pending]

    refused(edl_api("grant", "approve", grant, user="dana"), "your own")
    refused(edl_api("grant", "approve", grant, user="carol"), "owner")
    assert as_json(edl_api("grant", "approve", grant, "--json", user="alice"))["state"] == "active"
    refused(edl_api("grant", "approve", grant, user="alice"), "active")     # 409: wrong state

    credentials = as_json(edl_api("credentials", SENSITIVE, "--level", "read", "--format",
                                  "json", user="dana"))
    assert credentials["basis"] == "grant" and credentials["grant_id"] == grant
    s3 = s3_with(lake, credentials)
    bucket = data_bucket("sensitive")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{SENSITIVE}/data/")
            .get("Contents", [])]
    assert keys and all(k.startswith(f"{SENSITIVE}/data/") for k in keys)
    assert s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    # Listing is scoped by an `s3:prefix` condition, which moto does not evaluate (DESIGN §8):
    # the rendered-template tests check that one; reading the neighbour's objects is refused.
    denied(lambda: s3.get_object(Bucket=bucket, Key=keys[0].replace(SENSITIVE, NEIGHBOUR, 1)))
    denied(lambda: s3.put_object(Bucket=bucket, Key=f"{SENSITIVE}/data/9/x.parquet", Body=b"x"))

    ok(edl_api("grant", "revoke", grant, "--reason", "review done", user="alice"))
    refused(edl_api("credentials", SENSITIVE, "--json", user="dana"), "grant")
    assert as_json(edl_api("grant", "show", grant, "--json", user="dana"))["state"] == "revoked"

    events = as_json(edl_api("audit", "--dataset", SENSITIVE, "--since", "1h", "--json",
                             user="alice"))["events"]
    mine = [(e["action"], e["decision"]) for e in events if e["actor"].endswith("user/dana")
            or e.get("grant_id") == grant]
    for expected in (("refuse", "refused"), ("request", "allowed"), ("approve", "allowed"),
                     ("vend", "allowed"), ("revoke", "allowed")):
        assert expected in mine, mine
    assert sum(1 for e in events if e["action"] == "refuse" and e["actor"].endswith("user/carol")
               and e.get("grant_id") == grant) == 1
    refused(edl_api("audit", "--dataset", SENSITIVE, user="dana"))        # not dana's to read


def test_everyone_reads_the_internal_tier_and_writing_needs_the_owners_grant(lake,
                                                                            tmp_path):
    read = as_json(edl_api("credentials", INTERNAL, "--format", "json", user="carol"))
    assert read["basis"] == "default"
    s3 = s3_with(lake, read)
    assert s3.list_objects_v2(Bucket=data_bucket("internal"), Prefix=f"{INTERNAL}/data/")["KeyCount"]

    batch = tmp_path / "more.csv"
    batch.write_text("trial_id,site,enrolled,started\nT9,Genève,5,2026-03-01\n", encoding="utf-8")
    refused(edl_api("ingest", INTERNAL, "--source", str(batch), "--kind", "snapshot",
                    user="carol"), "may not write")
    refused(edl_api("credentials", INTERNAL, "--level", "write", user="carol"), "grant")
    grant = grant_id(edl_api("grant", "request", INTERNAL, "--level", "write", "--json",
                             user="carol"))
    ok(edl_api("grant", "approve", grant, user="alice"))

    ok(edl_api("ingest", INTERNAL, "--source", str(batch), "--kind", "snapshot", "--wait",
               user="carol"))
    write = as_json(edl_api("credentials", INTERNAL, "--level", "write", "--format", "json",
                            user="carol"))
    s3 = s3_with(lake, write)
    s3.put_object(Bucket=drop_bucket("internal"), Key=f"{INTERNAL}/drop.csv", Body=CSV.encode())
    denied(lambda: s3.put_object(Bucket=data_bucket("internal"),
                                 Key=f"{INTERNAL}/data/0000000009/part.parquet", Body=b"x"))
    denied(lambda: s3.put_object(Bucket=drop_bucket("internal"), Key=f"{NEIGHBOUR}/drop.csv",
                                 Body=b"x"))


def test_a_grant_that_expires_is_refused_at_once_and_swept_as_expired(lake):
    grant = grant_id(edl_api("grant", "request", RESTRICTED, "--level", "read", "--for", "8s",
                             "--json", user="bob"))
    ok(edl_api("grant", "approve", grant, user="alice"))
    ok(edl_api("credentials", RESTRICTED, "--json", user="bob"))
    time.sleep(9)
    refused(edl_api("credentials", RESTRICTED, "--json", user="bob"), "grant")
    deadline = time.monotonic() + 30                     # the runtime sweeps every 3 s here
    while as_json(edl_api("grant", "show", grant, "--json", user="bob"))["state"] != "expired":
        assert time.monotonic() < deadline, "the sweep never marked the grant expired"
        time.sleep(1)
    events = as_json(edl_api("audit", "--dataset", RESTRICTED, "--json", user="alice"))["events"]
    ended = [e["action"] for e in events if e.get("grant_id") == grant]
    assert "expire" in ended and "revoke" not in ended


def test_the_aws_cli_lists_a_dataset_through_a_credential_process_profile(lake,
                                                                           tmp_path):
    grant = grant_id(edl_api("grant", "request", SENSITIVE, "--level", "read", "--for", "1d",
                             "--justification", "CLI check", "--json", user="bob"))
    ok(edl_api("grant", "approve", grant, user="alice"))
    config = tmp_path / "aws-config"
    ok(edl_api("profile", SENSITIVE, "--level", "read", "--config-file", str(config),
               user="bob"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(config)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-credentials")
    profile = f"edl-{SENSITIVE}-read"
    listing = subprocess.run(
        [str(BIN / "aws"), "s3", "ls", f"s3://{data_bucket('sensitive')}/{SENSITIVE}/data/",
         "--recursive", "--profile", profile], capture_output=True, text=True, env=env,
        timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert ".parquet" in listing.stdout
    neighbour = listing.stdout.split()[-1].replace(SENSITIVE, NEIGHBOUR, 1)
    other = subprocess.run(
        [str(BIN / "aws"), "s3", "cp", f"s3://{data_bucket('sensitive')}/{neighbour}", "-",
         "--profile", profile], capture_output=True, text=True, env=env, timeout=120)
    assert other.returncode != 0, other.stdout
    assert "Forbidden" in other.stderr or "AccessDenied" in other.stderr, other.stderr
    ok(edl_api("grant", "revoke", grant, user="alice"))
