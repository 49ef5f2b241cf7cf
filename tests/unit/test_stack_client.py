"""StackClient against a hand-written fake CloudFormation: change sets, "no changes" as success,
ROLLBACK_COMPLETE recovery, large templates, errors that name the stack and the first failure,
the live event view and outputs (DESIGN §2, §8). An injected clock and sleep: nothing waits.

The fakes live in `fakes.py`, shared with `test_stack_manager.py` and `test_packaging.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from edl.cloudformation.stack_client import TEMPLATE_BODY_LIMIT, StackClient
from edl.errors import DeployError
from tests.unit.fakes import (
    STACK_TYPE,
    FakeClock,
    FakeCloudFormation,
    FakeS3,
    FakeStack,
    client_error,
    physical_id,
)

# -- fixtures --------------------------------------------------------------------------------------

NAME = "edl-test-buckets-internal-us-east-1"
BODY = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Tier:
    Type: String
Resources:
  DataBucket:
    Type: AWS::S3::Bucket
  Key:
    Type: AWS::KMS::Key
Outputs:
  Data:
    Value: !Ref DataBucket
"""


@pytest.fixture
def cfn():
    return FakeCloudFormation()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def events():
    return []


@pytest.fixture
def s3():
    return FakeS3()


@pytest.fixture
def client(cfn, s3, clock, events):
    # s3 is a factory: the client is made only when a template needs the artifacts bucket.
    return StackClient(cfn, "us-east-1", s3=lambda: s3, artifacts_bucket="edl-artifacts",
                       on_event=lambda *event: events.append(event), sleep=clock.sleep,
                       clock=clock, max_wait=600)


def deploy(client, parameters=None, body=BODY, name=NAME):
    return client.deploy(name, body, parameters or {"Tier": "internal"},
                         current=client.describe(name))


# -- create, update, no changes --------------------------------------------------------------------

def test_a_new_stack_is_created_through_a_create_change_set(client, cfn, clock):
    result = deploy(client)
    assert result.changed and result.status == "CREATE_COMPLETE" and result.name == NAME
    [created] = cfn.called("create_change_set")
    assert created["ChangeSetType"] == "CREATE"
    assert created["TemplateBody"] == BODY and "TemplateURL" not in created
    assert created["Parameters"] == [{"ParameterKey": "Tier", "ParameterValue": "internal"}]
    assert "CAPABILITY_NAMED_IAM" in created["Capabilities"]
    [executed] = cfn.called("execute_change_set")
    assert executed["ChangeSetName"].split("/")[1] == created["ChangeSetName"]
    assert cfn.stacks[NAME].status == "CREATE_COMPLETE"
    assert cfn.stacks[NAME].parameters == {"Tier": "internal"}
    assert clock.sleeps and max(clock.sleeps) <= 5.0  # it polled, on the fake clock only


def test_an_existing_stack_is_updated_through_an_update_change_set(client, cfn):
    cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    result = deploy(client, {"Tier": "restricted"})
    assert result.changed and result.status == "UPDATE_COMPLETE"
    assert [c["ChangeSetType"] for c in cfn.called("create_change_set")] == ["UPDATE"]
    assert cfn.stacks[NAME].parameters == {"Tier": "restricted"}


def test_a_stack_left_in_review_is_created(client, cfn):
    """A CREATE change set that was never executed leaves REVIEW_IN_PROGRESS: still a create."""
    cfn.add_stack(NAME, "REVIEW_IN_PROGRESS")
    assert deploy(client).status == "CREATE_COMPLETE"
    assert [c["ChangeSetType"] for c in cfn.called("create_change_set")] == ["CREATE"]


@pytest.mark.parametrize("status", ["CREATE_COMPLETE", "UPDATE_COMPLETE",
                                    "UPDATE_ROLLBACK_COMPLETE", None])
def test_change_set_type_is_always_given(client, cfn, status):
    if status:
        cfn.add_stack(NAME, status, {"Tier": "internal"}, BODY)
    deploy(client, {"Tier": "sensitive"})
    [created] = cfn.called("create_change_set")
    assert created["ChangeSetType"] == ("CREATE" if status is None else "UPDATE")


def test_no_updates_from_create_change_set_is_success(client, cfn):
    cfn.add_stack(NAME, "UPDATE_COMPLETE", {"Tier": "internal"}, BODY)
    cfn.fail["create_change_set"] = client_error("CreateChangeSet",
                                                 "No updates are to be performed.")
    result = deploy(client)
    assert not result.changed and result.status == "UPDATE_COMPLETE"
    assert not cfn.called("execute_change_set")
    assert cfn.stacks[NAME].status == "UPDATE_COMPLETE"


def test_a_change_set_that_found_no_changes_is_success_and_is_removed(client, cfn):
    cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    cfn.change_set_statuses = ["CREATE_PENDING", "FAILED"]
    cfn.change_set_reason = ("The submitted information didn't contain changes. "
                             "Submit different information to create a change set.")
    result = deploy(client)
    assert not result.changed and result.status == "CREATE_COMPLETE"
    assert not cfn.called("execute_change_set")
    assert len(cfn.called("delete_change_set")) == 1


def test_a_change_set_that_fails_otherwise_names_the_stack_and_reason(client, cfn):
    cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    cfn.change_set_statuses = ["FAILED"]
    cfn.change_set_reason = "Parameters: [Tier] must have values"
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message and "[Tier] must have values" in caught.value.message
    assert not cfn.called("execute_change_set")


# -- recovery and refusal --------------------------------------------------------------------------

def failed_first_create(cfn: FakeCloudFormation, *, once_complete: bool = False,
                        left: str = "DELETE_COMPLETE") -> FakeStack:
    """A stack whose create failed and rolled back, as CloudFormation leaves it: its events, and
    its resources in `left` (DELETE_COMPLETE, or DELETE_SKIPPED for a retained one)."""
    stack = cfn.add_stack(NAME, "ROLLBACK_COMPLETE", {"Tier": "internal"}, BODY)
    start = datetime.now(UTC) - timedelta(minutes=10)
    history = [(NAME, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated")]
    if once_complete:  # not possible in AWS today, but then the stack held something once
        history += [(NAME, STACK_TYPE, "CREATE_COMPLETE", None),
                    (NAME, STACK_TYPE, "UPDATE_IN_PROGRESS", "User Initiated")]
    history += [("DataBucket", "AWS::S3::Bucket", "CREATE_FAILED", "bucket name taken"),
                (NAME, STACK_TYPE, "ROLLBACK_COMPLETE", None)]
    for i, (logical, rtype, status, reason) in enumerate(history):
        cfn.add_event(stack, logical, rtype, status, reason, when=start + timedelta(seconds=i))
    stack.resource_status = {logical: left for logical in stack.resources}
    return stack


def test_rollback_complete_is_deleted_then_created(client, cfn):
    failed_first_create(cfn)
    result = deploy(client)
    assert result.changed and result.status == "CREATE_COMPLETE"
    ops = [op for op in cfn.operations() if op in ("delete_stack", "create_change_set",
                                                   "execute_change_set")]
    assert ops == ["delete_stack", "create_change_set", "execute_change_set"]
    assert cfn.called("create_change_set")[0]["ChangeSetType"] == "CREATE"
    assert cfn.stacks[NAME].status == "CREATE_COMPLETE"


@pytest.mark.parametrize("once_complete, left", [(True, "DELETE_COMPLETE"),
                                                (False, "DELETE_SKIPPED")])
def test_a_rolled_back_stack_that_held_something_is_never_deleted(client, cfn, once_complete,
                                                                  left):
    failed_first_create(cfn, once_complete=once_complete, left=left)
    assert not client.safe_to_recreate(NAME)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message and "does not delete it" in caught.value.message
    assert not cfn.called("delete_stack") and not cfn.called("create_change_set")
    assert cfn.stacks[NAME].status == "ROLLBACK_COMPLETE"


@pytest.mark.parametrize("status", ["DELETE_FAILED", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED",
                                    "CREATE_FAILED"])
def test_a_stack_in_a_failed_state_is_refused_and_left_as_it_is(client, cfn, status):
    cfn.add_stack(NAME, status, {"Tier": "internal"}, BODY)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message and status in caught.value.message
    assert not cfn.called("delete_stack") and not cfn.called("create_change_set")
    assert cfn.stacks[NAME].status == status


def test_the_last_failure_is_that_of_the_last_operation(client, cfn):
    stack = cfn.add_stack(NAME, "UPDATE_ROLLBACK_FAILED", {"Tier": "internal"}, BODY)
    start = datetime.now(UTC) - timedelta(hours=1)
    for i, (logical, status, reason) in enumerate([
            (NAME, "UPDATE_IN_PROGRESS", "User Initiated"),
            ("Key", "UPDATE_FAILED", "an old failure"),
            (NAME, "UPDATE_ROLLBACK_COMPLETE", None),
            (NAME, "UPDATE_IN_PROGRESS", "User Initiated"),
            ("DataBucket", "UPDATE_FAILED", "Access Denied"),
            ("DropBucket", "UPDATE_FAILED", "Resource update cancelled"),
            (NAME, "UPDATE_ROLLBACK_FAILED", None)]):
        cfn.add_event(stack, logical, "AWS::S3::Bucket", status, reason,
                      when=start + timedelta(seconds=i))
    assert client.last_failure(NAME) == ("DataBucket: Access Denied", ("DataBucket", "DropBucket"))


@pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "CREATE_IN_PROGRESS",
                                    "UPDATE_ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS"])
def test_a_busy_stack_is_refused_by_name(client, cfn, status):
    cfn.add_stack(NAME, status, {"Tier": "internal"}, BODY)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message and status in caught.value.message
    assert not cfn.called("create_change_set") and not cfn.called("delete_stack")


# -- failures --------------------------------------------------------------------------------------

def failing(kind: str, final: str) -> list[tuple]:
    return [
        (f"{kind}_IN_PROGRESS", [(NAME, STACK_TYPE, f"{kind}_IN_PROGRESS", "User Initiated"),
                                 ("DataBucket", "AWS::S3::Bucket", f"{kind}_IN_PROGRESS", None)]),
        (final.replace("COMPLETE", "IN_PROGRESS"), [
            ("DataBucket", "AWS::S3::Bucket", f"{kind}_FAILED",
             "sanofi-datalake-test-internal-us-east-1 already exists"),
            ("Key", "AWS::KMS::Key", f"{kind}_FAILED", "Resource creation cancelled"),
            (NAME, STACK_TYPE, final.replace("COMPLETE", "IN_PROGRESS"),
             "The following resource(s) failed: [DataBucket, Key]")]),
        (final, [(NAME, STACK_TYPE, final, None)]),
    ]


@pytest.mark.parametrize("existing, kind, final", [
    (None, "CREATE", "ROLLBACK_COMPLETE"),
    ("CREATE_COMPLETE", "UPDATE", "UPDATE_ROLLBACK_COMPLETE"),
])
def test_a_failed_deploy_names_the_stack_and_the_first_failure(client, cfn, existing, kind, final):
    if existing:
        stack = cfn.add_stack(NAME, existing, {"Tier": "internal"}, BODY)
        # A failure of an earlier deploy is not this deploy's reason.
        cfn.add_event(stack, "DataBucket", "AWS::S3::Bucket", "UPDATE_FAILED", "an old failure",
                      when=datetime.now(UTC) - timedelta(hours=1))
    cfn.outcomes[NAME] = failing(kind, final)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    message = caught.value.message
    assert NAME in message and final in message
    assert "DataBucket: sanofi-datalake-test-internal-us-east-1 already exists" in message
    assert "an old failure" not in message and "cancelled" not in message


def test_a_stack_that_never_settles_is_given_up_on_the_clock(client, cfn, clock):
    cfn.outcomes[NAME] = [("CREATE_IN_PROGRESS", [])]
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message and "still CREATE_IN_PROGRESS" in caught.value.message
    assert clock.now - 1000.0 >= 600


@pytest.mark.parametrize("code", ["", "InternalFailure"])
@pytest.mark.parametrize("operation, api", [("ExecuteChangeSet", "execute_change_set"),
                                            ("CreateChangeSet", "create_change_set")])
def test_http_500_from_the_endpoint_is_a_deploy_error_naming_the_stack(client, cfn, code,
                                                                       operation, api):
    cfn.fail[api] = client_error(operation, "", code=code, status=500)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert not isinstance(caught.value, ClientError)
    message = caught.value.message
    assert NAME in message and "HTTP 500" in message and operation in message
    if api == "create_change_set":
        assert not cfn.called("execute_change_set")


def test_a_client_error_names_the_stack_and_the_code(client, cfn):
    cfn.fail["create_change_set"] = client_error("CreateChangeSet", "User is not authorized",
                                                 code="AccessDenied", status=403)
    with pytest.raises(DeployError) as caught:
        deploy(client)
    assert NAME in caught.value.message
    assert "AccessDenied: User is not authorized" in caught.value.message


# -- large templates -------------------------------------------------------------------------------

def padded(size: int, filler: str = "#") -> str:
    """BODY padded with a comment line to exactly `size` bytes."""
    missing = size - len(BODY.encode()) - 1
    return BODY + filler * (missing // len(filler.encode())) + "\n"


def test_a_template_over_51200_bytes_goes_through_the_artifacts_bucket(client, cfn, s3):
    body = padded(TEMPLATE_BODY_LIMIT + 1)
    assert len(body.encode()) == TEMPLATE_BODY_LIMIT + 1
    deploy(client, body=body)
    [(bucket, key)] = s3.objects
    assert bucket == "edl-artifacts" and NAME in key
    assert s3.objects[(bucket, key)] == body.encode()
    [created] = cfn.called("create_change_set")
    assert "TemplateBody" not in created
    assert created["TemplateURL"] == f"https://edl-artifacts.s3.us-east-1.amazonaws.com/{key}"


def test_a_template_of_exactly_51200_bytes_is_sent_inline(client, cfn, s3):
    body = padded(TEMPLATE_BODY_LIMIT)
    assert len(body.encode()) == TEMPLATE_BODY_LIMIT
    deploy(client, body=body)
    assert not s3.objects
    assert cfn.called("create_change_set")[0]["TemplateBody"] == body


def test_no_s3_client_is_made_for_a_template_under_the_limit(cfn, clock):
    made = []
    client = StackClient(cfn, "us-east-1", s3=lambda: made.append(1) or FakeS3(),
                         artifacts_bucket="edl-artifacts", sleep=clock.sleep, clock=clock)
    deploy(client)
    assert not made
    deploy(client, body=padded(TEMPLATE_BODY_LIMIT + 1), parameters={"Tier": "restricted"})
    assert made == [1]


def test_the_limit_counts_bytes_not_characters(client, cfn, s3):
    body = padded(TEMPLATE_BODY_LIMIT + 1, filler="é")  # 2 bytes each
    assert len(body) <= TEMPLATE_BODY_LIMIT < len(body.encode())
    deploy(client, body=body)
    assert s3.objects and "TemplateURL" in cfn.called("create_change_set")[0]


def test_a_large_template_without_an_artifacts_bucket_is_refused(cfn, clock):
    client = StackClient(cfn, "us-east-1", sleep=clock.sleep, clock=clock)
    with pytest.raises(DeployError) as caught:
        deploy(client, body=padded(TEMPLATE_BODY_LIMIT + 100))
    assert NAME in caught.value.message and str(TEMPLATE_BODY_LIMIT) in caught.value.message
    assert not cfn.called("create_change_set")


# -- reading ---------------------------------------------------------------------------------------

def test_outputs_resolve_refs_to_resources_and_parameters(client, cfn):
    cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    template = {"Outputs": {
        "Data": {"Value": {"Ref": "DataBucket"}},
        "KeyId": {"Value": {"Ref": "Key"}},
        "Tier": {"Value": {"Ref": "Tier"}},
        "Fixed": {"Value": "literal"},
    }}
    assert client.outputs(NAME, template) == {
        "Data": physical_id(NAME, "DataBucket"),
        "KeyId": physical_id(NAME, "Key"),
        "Tier": "internal",
        "Fixed": "literal",
    }


def test_a_template_without_outputs_costs_no_call(client, cfn):
    cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    assert client.outputs(NAME, {"Resources": {}}) == {}
    assert not cfn.calls


def test_describe_and_list(client, cfn):
    assert client.describe(NAME) is None
    for name in ("edl-test-a", "edl-test-b", "edl-other-c", "edl-test-d", "edl-test-e"):
        cfn.add_stack(name, "CREATE_COMPLETE", {"EdlFingerprint": "f" + name[-1]})
    listed = client.list_stacks("edl-test-")
    assert sorted(listed) == ["edl-test-a", "edl-test-b", "edl-test-d", "edl-test-e"]
    assert listed["edl-test-d"].fingerprint == "fd" and listed["edl-test-d"].region == "us-east-1"


# -- the live view ---------------------------------------------------------------------------------

def test_on_event_receives_each_new_event_once(client, cfn, events):
    stack = cfn.add_stack(NAME, "CREATE_COMPLETE", {"Tier": "internal"}, BODY)
    cfn.add_event(stack, NAME, STACK_TYPE, "CREATE_COMPLETE",
                  when=datetime.now(UTC) - timedelta(hours=1))
    deploy(client, {"Tier": "restricted"})
    seen = [(stack_name, resource, status) for stack_name, _, resource, _, status, _ in events]
    assert seen == [
        (NAME, NAME, "UPDATE_IN_PROGRESS"),
        (NAME, "DataBucket", "UPDATE_IN_PROGRESS"),
        (NAME, "Key", "UPDATE_IN_PROGRESS"),
        (NAME, "DataBucket", "UPDATE_COMPLETE"),
        (NAME, "Key", "UPDATE_COMPLETE"),
        (NAME, NAME, "UPDATE_COMPLETE"),
    ]
    assert len(cfn.called("describe_stack_events")) >= 3  # polled repeatedly, shown once each
    assert events[0][5] == "User Initiated" and events[1][3] == "AWS::S3::Bucket"
