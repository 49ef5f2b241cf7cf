"""Three users work with `edl-api` on the real local cloud, as they would in a terminal.

alice owns a dataset and ingests a local file into it; bob lists and reads its metadata; carol
may not write it. Every command is a separate `edl-api` process talking HTTP to the local
runtime's API server, signed as its user.
"""

from __future__ import annotations

import json

import boto3
import pytest

from edl.aws import read_local_profile
from tests.e2e.helpers import run_tool as run

DATASET = "api_users_trials"


@pytest.fixture
def dataset(local_cloud):
    for command in (("deploy-core",),
                    ("deploy-dataset", DATASET, "--tier", "restricted", "--owner", "alice",
                     "--key", "trial_id")):
        done = run("edl", *command)
        assert done.returncode == 0, done.stderr
    return DATASET


def test_owner_ingests_others_read_and_may_not_write(dataset, tmp_path):
    batch = tmp_path / "batch.csv"
    batch.write_text("trial_id,site,enrolled\nT1,Lyon,10\nT2,Paris,20\nT3,Nice,30\n")

    ingest = run("edl-api", "ingest", dataset, "--source", str(batch), "--kind", "snapshot",
                 "--wait", user="alice")
    assert ingest.returncode == 0, ingest.stderr
    assert "complete" in ingest.stderr + ingest.stdout

    listing = run("edl-api", "datasets", "--json", user="bob")
    assert listing.returncode == 0, listing.stderr
    names = [d.get("dataset") or d.get("name") for d in json.loads(listing.stdout)["items"]]
    assert dataset in names

    updates = run("edl-api", "updates", dataset, "--json", user="bob")
    assert updates.returncode == 0, updates.stderr
    items = json.loads(updates.stdout)["items"]
    complete = [u for u in items if u["status"] == "complete"]
    assert complete and complete[-1]["rows"] == 3 and complete[-1]["kind"] == "snapshot"

    table = run("edl-api", "updates", dataset, user="carol")
    assert table.returncode == 0 and complete[-1]["update_id"] in table.stdout

    refused = run("edl-api", "ingest", dataset, "--source", str(batch), "--kind", "snapshot",
                  user="carol")
    assert refused.returncode == 1
    assert "403" in refused.stderr and "carol" in refused.stderr
    assert "Traceback" not in refused.stderr
    after = json.loads(run("edl-api", "updates", dataset, "--json", user="bob").stdout)["items"]
    assert len(after) == len(items), "a refused ingest must create no update"


def test_unknown_dataset_and_unknown_user_are_clear_errors(dataset):
    missing = run("edl-api", "dataset", "no_such_dataset", user="bob")
    assert missing.returncode == 3
    assert "no_such_dataset" in missing.stderr and "Traceback" not in missing.stderr

    stranger = run("edl-api", "datasets", user="mallory")
    assert stranger.returncode != 0
    assert "mallory" in stranger.stderr and "Traceback" not in stranger.stderr


PARTNER_BUCKET = "partner-feed-e2e"


def as_admin(local_cloud, service: str):
    """A client of the platform admin working through the privileged CloudFormation role, as
    the account team would set up a partner's bucket and a user's rights."""
    key, secret = read_local_profile("admin")
    kwargs = dict(endpoint_url=local_cloud.status.endpoint_url, region_name="us-east-1")
    creds = boto3.client("sts", aws_access_key_id=key, aws_secret_access_key=secret, **kwargs) \
        .assume_role(RoleArn=local_cloud.instance.cfn_role_arn,
                     RoleSessionName="e2e")["Credentials"]
    return boto3.client(service, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], **kwargs)


def test_an_s3_prefix_outside_the_lake_is_ingested_with_the_callers_own_rights(
        dataset, local_cloud):
    s3, iam = as_admin(local_cloud, "s3"), as_admin(local_cloud, "iam")
    s3.create_bucket(Bucket=PARTNER_BUCKET)
    for name, row in (("a.csv", "T8,Lille,8"), ("eu/b.csv", "T9,Nantes,9")):
        s3.put_object(Bucket=PARTNER_BUCKET, Key=f"feed/2026/{name}",
                      Body=f"trial_id,site,enrolled\n{row}\n".encode())
    source = f"s3://{PARTNER_BUCKET}/feed/2026"
    before = json.loads(run("edl-api", "updates", dataset, "--json", user="bob").stdout)["items"]

    refused = run("edl-api", "ingest", dataset, "--source", source, "--kind", "snapshot",
                  user="alice")
    assert refused.returncode == 1, refused.stderr
    assert f"you cannot read s3://{PARTNER_BUCKET}/feed/2026 (AccessDenied)" in refused.stderr
    assert "Traceback" not in refused.stderr
    after = json.loads(run("edl-api", "updates", dataset, "--json", user="bob").stdout)["items"]
    assert after == before, "a source alice cannot read must create no update"

    iam.put_user_policy(UserName="alice", PolicyName="read-partner-feed", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{PARTNER_BUCKET}/*"},
            {"Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:aws:s3:::{PARTNER_BUCKET}"}]}))
    try:
        done = run("edl-api", "ingest", dataset, "--source", source, "--kind", "snapshot",
                   "--wait", "--json", user="alice")
    finally:
        iam.delete_user_policy(UserName="alice", PolicyName="read-partner-feed")
    assert done.returncode == 0, done.stderr
    newest = json.loads(run("edl-api", "updates", dataset, "--json", user="bob").stdout)["items"][-1]
    update_id = newest["update_id"]
    record = json.loads(run("edl-api", "update", dataset, update_id, "--json", user="bob").stdout)
    assert record["status"] == "complete" and record["rows"] == 2
    assert sorted(f["path"] for f in record["files"]) == ["a.csv", "eu/b.csv"]
