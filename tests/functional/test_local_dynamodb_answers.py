"""The local runtime writes moto's DynamoDB item answers with json.dumps instead of moto's generic
serializer (`edl.local.runtime._lighten_moto`): every answer must be the one moto gives."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb import responses as dynamodb

from edl.local.runtime import _lighten_moto

ITEM = {"k": {"S": "Zürich"}, "r": {"N": "1"}, "n": {"N": "-12.500"}, "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["a", "é"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"l": {"L": [{"BOOL": True}, {"NULL": True}, {"S": ""}]}}},
        "long": {"S": "x" * 5000}}


def workload() -> list:
    """Item calls of every kind the runtime makes; → what boto3 parsed of each."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"},
                                   {"AttributeName": "r", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"},
                                              {"AttributeName": "r", "AttributeType": "N"}])
    out: list = []
    for r in range(1, 4):
        out.append(client.put_item(TableName="t", Item={**ITEM, "r": {"N": str(r)}},
                                   ReturnConsumedCapacity="TOTAL"))
    key = {"k": {"S": "Zürich"}, "r": {"N": "1"}}
    out.append(client.get_item(TableName="t", Key=key, ConsistentRead=True))
    out.append(client.get_item(TableName="t", Key={"k": {"S": "none"}, "r": {"N": "0"}}))
    out.append(client.query(TableName="t", KeyConditionExpression="k = :k", Limit=2,
                            ExpressionAttributeValues={":k": {"S": "Zürich"}}))
    out.append(client.scan(TableName="t", ProjectionExpression="k, r, m"))
    out.append(client.batch_get_item(RequestItems={"t": {"Keys": [key]}}))
    out.append(client.update_item(TableName="t", Key=key, UpdateExpression="ADD c :one",
                                  ExpressionAttributeValues={":one": {"N": "1"}},
                                  ReturnValues="ALL_NEW"))
    out.append(client.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": key}}]))
    out.append(client.batch_write_item(RequestItems={"t": [{"DeleteRequest": {"Key": key}}]}))
    out.append(client.delete_item(TableName="t", Key={**key, "r": {"N": "2"}},
                                  ReturnValues="ALL_OLD"))
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName="t", Item={**ITEM, "r": {"N": "3"}},
                        ConditionExpression="attribute_not_exists(k)")
    out.append(refused.value.response["Error"])
    for answer in out:
        answer.pop("ResponseMetadata", None)
    return out


def motos_own():
    """moto's serializer, whether or not a runtime of this process has replaced it."""
    current = dynamodb.DynamoHandler.serialized
    return getattr(current, "edl_generic", current)


def raw_bodies(monkeypatch) -> list:
    bodies: list = []
    serialized = dynamodb.DynamoHandler.serialized

    def spy(self, action_result):
        status, headers, body = serialized(self, action_result)
        bodies.append((self._get_action(), status, headers.get("Content-Type"),
                       json.loads(body) if body else body))
        return status, headers, body

    monkeypatch.setattr(dynamodb.DynamoHandler, "serialized", spy)
    return bodies


def test_item_answers_are_the_ones_moto_gives(aws_credentials, monkeypatch):
    from moto import mock_aws

    _lighten_moto()   # as a runtime started in this process leaves it (the other tests' way)
    before = dynamodb.DynamoHandler.serialized
    assert getattr(before, "edl_fast", False)
    with monkeypatch.context() as patch:
        patch.setattr(dynamodb.DynamoHandler, "serialized", motos_own())
        moto_bodies = raw_bodies(patch)
        with mock_aws():
            by_moto = workload()
    generic_calls: list[str] = []
    with monkeypatch.context() as patch:
        moto_serialized = motos_own()

        def generic(self, action_result):
            generic_calls.append(self._get_action())
            return moto_serialized(self, action_result)

        patch.setattr(dynamodb.DynamoHandler, "serialized", generic)
        _lighten_moto()
        assert getattr(dynamodb.DynamoHandler.serialized, "edl_fast", False)
        fast_bodies = raw_bodies(patch)
        with mock_aws():
            by_runtime = workload()
    assert by_runtime == by_moto
    assert [b[:3] for b in fast_bodies] == [b[:3] for b in moto_bodies]
    items = [(i, b) for i, b in enumerate(moto_bodies) if b[0] != "CreateTable"]  # no clock
    assert len(items) == 12
    # moto's serializer still writes: tables, errors (the refused put), and BatchWriteItem
    # (not a DynamoResult); every read takes the short way
    assert set(generic_calls) <= {"CreateTable", "PutItem", "BatchWriteItem"}
    assert generic_calls.count("PutItem") <= 1
    assert [fast_bodies[i][3] for i, _ in items] == [b[3] for _, b in items]
    assert dynamodb.DynamoHandler.serialized is before   # put back
