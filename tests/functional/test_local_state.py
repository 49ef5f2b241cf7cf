"""The local cloud's state (`edl.local.state`): what moto holds comes back after a restart.

moto runs in this process behind the recorder, as in the runtime, on a free port; a "restart"
empties moto's backends and opens the state folder again in a new `MotoService`. A clean stop
leaves a snapshot; a kill (the service dropped without `stop()`) leaves only the journal, which
the next start replays. Every service the issue lists is checked through boto3, as a user would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from edl.local.runtime import MotoService
from edl.local.state.recorder import set_iam_enforced
from edl.local.state.store import LakeState, LocalStateError
from tests.functional.deploy_helpers import free_port

REGION = "us-east-1"
BIG_BODY = bytes(range(256)) * 1024  # 256 KB: kept in a blob, not inline in the journal
TEMPLATE = {
    "Resources": {
        "Param": {"Type": "AWS::SSM::Parameter",
                  "Properties": {"Name": "/edl/from-stack", "Type": "String", "Value": "v1"}},
        "Queue": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "stack-bucket"}},
    },
    "Outputs": {"BucketName": {"Value": {"Ref": "Queue"}}},
}



class Lake:
    """moto with its state in `folder`; `restart(clean)` as `edl local stop/start` or a kill."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.service: MotoService | None = None
        self.key: tuple[str, str] | None = None

    def start(self) -> MotoService:
        self.service = MotoService(free_port(), state=LakeState.open(self.folder))
        self.service.start()
        return self.service

    def kill(self) -> None:
        """What SIGKILL leaves: the files as they are, no final snapshot."""
        service, self.service = self.service, None
        assert service is not None and service.state is not None
        service.state, state = None, service.state
        service.stop()
        state._journal.close()
        import os
        os.close(state._lock_fd)

    def restart(self, clean: bool) -> MotoService:
        from moto.core.base_backend import BackendDict

        if clean:
            assert self.service is not None
            self.service.stop()
        else:
            self.kill()
        BackendDict.reset()
        set_iam_enforced(False)
        return self.start()

    def client(self, name: str):
        assert self.service is not None
        key, secret = self.key or ("bootstrap", "bootstrap")
        return boto3.client(name, endpoint_url=self.service.url, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def restartable_lake(tmp_path) -> Iterator[Lake]:
    """A lake bootstrapped the way `bootstrap.py` does it: an admin with a key, then IAM on."""
    from moto.core.base_backend import BackendDict

    # moto's backends are process-wide: whatever a module run before in this worker left (a
    # bootstrapped admin, say) is not part of this lake
    BackendDict.reset()
    set_iam_enforced(False)
    restartable_lake = Lake(tmp_path / "state")
    restartable_lake.start()
    iam = restartable_lake.client("iam")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    created = iam.create_access_key(UserName="admin")["AccessKey"]
    restartable_lake.key = (created["AccessKeyId"], created["SecretAccessKey"])
    set_iam_enforced(True)
    try:
        yield restartable_lake
    finally:
        if restartable_lake.service is not None:
            restartable_lake.service.stop()
        set_iam_enforced(False)
        BackendDict.reset()


def _fill(restartable_lake: Lake) -> dict:
    """One of everything the issue lists; what a user would look at afterwards."""
    s3 = restartable_lake.client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="data", Key="a.csv", Body=b"id\n1\n")["VersionId"]
    s3.put_object(Bucket="data", Key="a.csv", Body=b"id\n1\n2\n")
    s3.put_object(Bucket="data", Key="big.bin", Body=BIG_BODY)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadersRead", "Effect": "Allow",
         "Principal": {"AWS": ["arn:aws:iam::123456789012:role/reader"]},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]}
    s3.put_bucket_policy(Bucket="data", Policy=json.dumps(policy))

    ddb = restartable_lake.client("dynamodb")
    ddb.create_table(TableName="datasets", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}])
    for n in range(5):
        ddb.put_item(TableName="datasets", Item={"name": {"S": f"ds{n}"}, "n": {"N": str(n)}})
    ddb.update_item(TableName="datasets", Key={"name": {"S": "ds0"}},
                    UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": {"N": "10"}})

    iam = restartable_lake.client("iam")
    iam.create_group(GroupName="readers")
    iam.create_user(UserName="alice")
    iam.add_user_to_group(GroupName="readers", UserName="alice")
    alice_key = iam.create_access_key(UserName="alice")["AccessKey"]
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:user/admin"]},
         "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))
    policy_arn = iam.create_policy(PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="reader", PolicyArn=policy_arn)
    session = restartable_lake.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/reader",
                                             RoleSessionName="reader-session")["Credentials"]

    kms = restartable_lake.client("kms")
    key_id = kms.create_key(Description="internal tier")["KeyMetadata"]["KeyId"]
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")

    glue = restartable_lake.client("glue")
    glue.create_database(DatabaseInput={"Name": "lake"})
    glue.create_table(DatabaseName="lake", TableInput={
        "Name": "sites", "PartitionKeys": [{"Name": "update", "Type": "string"}],
        "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "int"}],
                              "Location": "s3://data/sites/"}})
    glue.create_partition(DatabaseName="lake", TableName="sites", PartitionInput={
        "Values": ["00000001"], "StorageDescriptor": {"Location": "s3://data/sites/00000001/"}})

    restartable_lake.client("ssm").put_parameter(Name="/edl/setting", Value="on", Type="String")
    restartable_lake.client("cloudformation").create_stack(StackName="edl-local-test",
                                               TemplateBody=json.dumps(TEMPLATE))
    return {"first_version": first, "alice_key": alice_key, "session": session,
            "key_id": key_id, "ciphertext": ciphertext, "signing": signing,
            "signature": signature["Signature"]}


def _check(restartable_lake: Lake, made: dict) -> None:
    s3 = restartable_lake.client("s3")
    assert s3.get_object(Bucket="data", Key="a.csv")["Body"].read() == b"id\n1\n2\n"
    old = s3.get_object(Bucket="data", Key="a.csv", VersionId=made["first_version"])
    assert old["Body"].read() == b"id\n1\n"
    assert s3.get_object(Bucket="data", Key="big.bin")["Body"].read() == BIG_BODY
    assert "ReadersRead" in s3.get_bucket_policy(Bucket="data")["Policy"]
    versions = s3.list_object_versions(Bucket="data")["Versions"]
    assert sorted(v["Key"] for v in versions if v["Key"] != "after.txt") == [
        "a.csv", "a.csv", "big.bin"]

    ddb = restartable_lake.client("dynamodb")
    items = ddb.scan(TableName="datasets")["Items"]
    assert sorted(i["name"]["S"] for i in items) == [f"ds{n}" for n in range(5)]
    assert ddb.get_item(TableName="datasets", Key={"name": {"S": "ds0"}})["Item"]["n"] == {
        "N": "10"}

    iam = restartable_lake.client("iam")
    assert [u["UserName"] for u in iam.get_group(GroupName="readers")["Users"]] == ["alice"]
    alice = made["alice_key"]
    whoami = boto3.client("sts", endpoint_url=restartable_lake.service.url, region_name=REGION,
                          aws_access_key_id=alice["AccessKeyId"],
                          aws_secret_access_key=alice["SecretAccessKey"])
    assert whoami.get_caller_identity()["Arn"].endswith(":user/alice")
    assert iam.list_attached_role_policies(RoleName="reader")["AttachedPolicies"][0][
        "PolicyName"] == "read"
    session = made["session"]
    as_role = boto3.client("s3", endpoint_url=restartable_lake.service.url, region_name=REGION,
                           aws_access_key_id=session["AccessKeyId"],
                           aws_secret_access_key=session["SecretAccessKey"],
                           aws_session_token=session["SessionToken"])
    assert as_role.get_object(Bucket="data", Key="a.csv")["Body"].read() == b"id\n1\n2\n"

    kms = restartable_lake.client("kms")
    assert kms.decrypt(CiphertextBlob=made["ciphertext"])["Plaintext"] == b"secret"
    assert kms.verify(KeyId=made["signing"], Message=b"m", Signature=made["signature"],
                      SigningAlgorithm="RSASSA_PSS_SHA_256")["SignatureValid"]

    glue = restartable_lake.client("glue")
    assert glue.get_table(DatabaseName="lake", Name="sites")["Table"]["Name"] == "sites"
    partitions = glue.get_partitions(DatabaseName="lake", TableName="sites")["Partitions"]
    assert [p["Values"] for p in partitions] == [["00000001"]]

    assert restartable_lake.client("ssm").get_parameter(Name="/edl/setting")["Parameter"]["Value"] == "on"
    assert restartable_lake.client("ssm").get_parameter(Name="/edl/from-stack")["Parameter"]["Value"] == "v1"
    stack = restartable_lake.client("cloudformation").describe_stacks(StackName="edl-local-test")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    resources = restartable_lake.client("cloudformation").list_stack_resources(StackName="edl-local-test")
    assert {r["LogicalResourceId"] for r in resources["StackResourceSummaries"]} == {
        "Param", "Queue"}
    assert "stack-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("clean", [True, False], ids=["stop-start", "kill-start"])
def test_every_service_keeps_its_data_across_a_restart(restartable_lake, clean):
    made = _fill(restartable_lake)
    restartable_lake.restart(clean)
    _check(restartable_lake, made)
    # and the lake goes on: writes after the restart are kept by the next one
    restartable_lake.client("s3").put_object(Bucket="data", Key="after.txt", Body=b"later")
    restartable_lake.restart(clean)
    _check(restartable_lake, made)
    assert restartable_lake.client("s3").get_object(Bucket="data", Key="after.txt")["Body"].read() == b"later"


def test_a_clean_stop_leaves_a_snapshot_and_bodies_as_blob_files(restartable_lake):
    _fill(restartable_lake)
    restartable_lake.restart(clean=True)
    assert restartable_lake.service.load_report.replayed == 0
    blobs = [p for p in (restartable_lake.folder / "blobs").rglob("*") if p.is_file()]
    assert BIG_BODY in {p.read_bytes() for p in blobs}
    snapshot = next(restartable_lake.folder.glob("snapshot-*.bin")).read_bytes()
    assert BIG_BODY[:4096] not in snapshot


def test_a_torn_last_journal_record_is_dropped_and_the_rest_kept(restartable_lake):
    restartable_lake.client("s3").create_bucket(Bucket="kept")
    journal = next(restartable_lake.folder.glob("journal-*.log"))
    restartable_lake.kill()
    with open(journal, "ab") as out:
        out.write(b"\x00\x00\x10\x00\x12\x34")  # a frame whose payload never made it
    from moto.core.base_backend import BackendDict
    BackendDict.reset()
    set_iam_enforced(False)
    restartable_lake.start()
    assert restartable_lake.service.load_report.torn_bytes == 6
    assert "kept" in [b["Name"] for b in restartable_lake.client("s3").list_buckets()["Buckets"]]


def test_a_corrupt_snapshot_is_refused_naming_the_folder_and_left_as_it_was(restartable_lake):
    restartable_lake.client("s3").create_bucket(Bucket="kept")
    restartable_lake.restart(clean=True)
    restartable_lake.service.stop()
    restartable_lake.service = None
    path = next(restartable_lake.folder.glob("snapshot-*.bin"))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    from moto.core.base_backend import BackendDict
    BackendDict.reset()
    with pytest.raises(LocalStateError) as refused:
        restartable_lake.start()
    assert str(restartable_lake.folder) in refused.value.message
    assert "--fresh" in refused.value.hint and "restore" in refused.value.hint
    assert path.read_bytes() == bytes(data)


def test_a_second_runtime_on_the_same_folder_is_refused(restartable_lake):
    with pytest.raises(LocalStateError, match="in use by pid"):
        LakeState.open(restartable_lake.folder)


def test_state_written_by_another_moto_version_is_refused(restartable_lake):
    restartable_lake.client("s3").create_bucket(Bucket="kept")
    restartable_lake.kill()
    journal = next(restartable_lake.folder.glob("journal-*.log"))
    text = journal.read_bytes()
    header_end = text.index(b"\n", 9)
    header = json.loads(text[9:header_end])
    header["moto"] = "4.0.0"
    journal.write_bytes(text[:9] + json.dumps(header).encode() + text[header_end:])
    before = journal.read_bytes()
    from moto.core.base_backend import BackendDict
    BackendDict.reset()
    with pytest.raises(LocalStateError, match=r"moto 4\.0\.0"):
        restartable_lake.start()
    assert journal.read_bytes() == before



def test_a_snapshot_tar_of_a_running_lake_restores_it_elsewhere(restartable_lake, tmp_path):
    from edl.local.state.archive import restore_archive, write_archive
    from edl.local.state.store import write_users

    made = _fill(restartable_lake)
    write_users(restartable_lake.folder, {"users": [], "cfn_role_arn": "arn:aws:iam::123456789012:role/r"})
    archive = tmp_path / "lake.tar"
    write_archive(restartable_lake.folder, archive)           # while it runs: the journal as it stands
    restartable_lake.service.stop()
    restartable_lake.service = None
    from moto.core.base_backend import BackendDict
    BackendDict.reset()
    set_iam_enforced(False)
    restartable_lake.folder = tmp_path / "elsewhere" / "state"
    restore_archive(archive, restartable_lake.folder)
    restartable_lake.start()
    _check(restartable_lake, made)
