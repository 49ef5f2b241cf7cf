"""The commit step's `EDL Update Complete` event: put on EventBridge in the cloud (moto
in-process, with a rule and a queue as the target to see it arrive), never on the local cloud,
and a failed put never fails the commit."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3

from edl.utils.events import publish_update_complete
from edl.utils.updates import UpdateRecord
from tests.functional.ingest_helpers import REGION

UPDATE = UpdateRecord(dataset="visits", update_id="0000000007", kind="delta", status="complete",
                      source="s3://drop/visits.csv", bucket="data", rows=12)


class Context:
    def __init__(self, events, is_local: bool = False) -> None:
        self.events = events
        self.is_local = is_local
        self.instance = "dev01"


def test_a_complete_update_reaches_a_rule_on_the_lakes_events(aws):
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name="on-visits", EventPattern=json.dumps({
        "source": ["edl.lake"], "detail-type": ["EDL Update Complete"],
        "detail": {"instance": ["dev01"], "dataset": ["visits"]}}))
    events.put_targets(Rule="on-visits", Targets=[{"Id": "q", "Arn": queue_arn}])

    assert publish_update_complete(Context(lambda region: events), UPDATE, REGION)
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    event = json.loads(message["Body"])
    assert event["detail"] == {"instance": "dev01", "dataset": "visits",
                               "update_id": "0000000007", "kind": "delta", "rows": 12}

    # Another dataset's update does not match the rule.
    assert publish_update_complete(Context(lambda region: events),
                                   replace(UPDATE, dataset="sites"), REGION)
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages")


def test_nothing_is_put_on_the_local_cloud_and_a_failed_put_is_only_logged(aws, caplog):
    def no_client(region):
        raise AssertionError("the local cloud puts no event")

    assert publish_update_complete(Context(no_client, is_local=True), UPDATE, REGION) is False

    class Refusing:
        def put_events(self, **kwargs):
            raise RuntimeError("AccessDenied")

    assert publish_update_complete(Context(lambda region: Refusing()), UPDATE, REGION) is False
    assert "could not put its EDL Update Complete event" in caplog.text
